using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StateMesh.AspNetCore;
using StateMesh.Deepstream;
using StateMesh.Protocol;
using StateMesh.Records;
using StateMesh.Transport;

namespace StateMesh.Fuzz;

/// <summary>
/// One parser under the fuzzer. <see cref="Run"/> feeds it one input; the parser must not throw (none of them has an
/// exception type that is part of its contract: codecs return a <see cref="CodecError"/>, paths and the HTTP API
/// return false or null), must stay within <see cref="AllocationBound"/>, and must keep the target's invariants.
/// Anything thrown out of <see cref="Run"/> is a finding.
/// </summary>
internal abstract class FuzzTarget
{
    public abstract string Name { get; }

    public abstract string Description { get; }

    public abstract void Run(ReadOnlySpan<byte> input);

    public static readonly FuzzTarget[] All =
    [
        new CodecTarget("deepstream", "DeepstreamCodec.ParseFrame: one deepstream v5+ frame (varint length, protobuf message)", DeepstreamCodec.Instance),
        new CodecTarget("native", "NativeCodec.ParseFrame with the untrusted-data limits: one MessagePack frame of messages", NativeCodec.Instance),
        new WebSocketTarget("websocket-node", "the node's RFC 6455 reader (masked frames required, pongs through the session)", isClient: false),
        new WebSocketTarget("websocket-client", "the ws:// client's RFC 6455 reader (unmasked frames required, pongs written back)", isClient: true),
        new RecordPathTarget(),
        new HttpApiTarget(),
    ];

    public static FuzzTarget? Find(string name) => All.FirstOrDefault(t => t.Name == name);
}

/// <summary>
/// A codec's ParseFrame, twice: over one segment and over two (split in the middle), which must agree. Every message
/// that parses must survive a round trip: written and framed by the same codec, it parses to the same bytes again.
/// </summary>
internal sealed class CodecTarget(string name, string description, IMessageCodec codec) : FuzzTarget
{
    private readonly SegmentedInput _input = new();
    private readonly List<Message> _messages = [];
    private ReadOnlySequence<byte> _frame;
    private CodecError? _error;

    public override string Name => name;

    public override string Description => description;

    public override void Run(ReadOnlySpan<byte> input)
    {
        _input.Load(input);
        _input.Segment(Math.Max(1, input.Length));
        _frame = _input.Slice(0, input.Length);
        AllocationBound.Check(this, static t => t.Parse(), input.Length, Name);
        var (error, encoded) = (_error, Encode(_messages));

        _input.Segment(Math.Max(1, (input.Length + 1) / 2));
        _frame = _input.Slice(0, input.Length);
        AllocationBound.Check(this, static t => t.Parse(), input.Length, Name + " (two segments)");
        if (!Same(error, _error) || !Same(encoded, Encode(_messages)))
        {
            throw new InvariantBrokenException($"{Name}: the frame parsed differently over one segment ({Describe(error, encoded)}) and over two ({Describe(_error, Encode(_messages))})");
        }
        if (error is null)
        {
            RoundTrip(encoded);
        }
    }

    private void Parse()
    {
        _messages.Clear();
        _error = codec.ParseFrame(_frame, _messages);
    }

    private void RoundTrip(List<byte[]> encoded)
    {
        var again = new List<byte[]>();
        for (var start = 0; start < encoded.Count; start += codec.MaxMessagesPerFrame)
        {
            var batch = encoded.Skip(start).Take(codec.MaxMessagesPerFrame).Select(e => (ReadOnlyMemory<byte>)e).ToArray();
            var frame = new ArrayBufferWriter<byte>();
            codec.WriteFrame(batch, frame);
            if (frame.WrittenCount != codec.GetFrameLength(batch))
            {
                throw new InvariantBrokenException($"{Name}: GetFrameLength says {codec.GetFrameLength(batch)} bytes, WriteFrame wrote {frame.WrittenCount}");
            }
            var messages = new List<Message>();
            if (codec.ParseFrame(new ReadOnlySequence<byte>(frame.WrittenMemory), messages) is { } error)
            {
                throw new InvariantBrokenException($"{Name}: a frame the codec wrote from parsed messages does not parse: {error.Action} {error.Description}; frame {Convert.ToHexString(frame.WrittenSpan)}");
            }
            again.AddRange(Encode(messages));
        }
        if (!Same(encoded, again))
        {
            throw new InvariantBrokenException($"{Name}: a round trip changed the messages: {Describe(null, encoded)} became {Describe(null, again)}");
        }
    }

    private List<byte[]> Encode(List<Message> messages)
    {
        var result = new List<byte[]>(messages.Count);
        foreach (var m in messages)
        {
            var output = new ArrayBufferWriter<byte>();
            codec.WriteMessage(m, output);
            result.Add(output.WrittenSpan.ToArray());
        }
        return result;
    }

    // The descriptions may differ: MessagePack's name the offset within the segment that held the bad bytes.
    private static bool Same(CodecError? a, CodecError? b) => a?.Action == b?.Action;

    private static bool Same(List<byte[]> a, List<byte[]> b) => a.Count == b.Count && a.Zip(b).All(p => p.First.AsSpan().SequenceEqual(p.Second));

    private static string Describe(CodecError? error, List<byte[]> encoded) =>
        $"error {(error is { } e ? $"{e.Action} '{e.Description}'" : "none")}, messages [{string.Join(", ", encoded.Select(Convert.ToHexString))}]";
}

/// <summary>
/// The WebSocket reader of a node (masked frames, pongs into the session's queue) or of a client (unmasked frames,
/// pongs and closes written back), reading the input as the peer's byte stream until it ends. It reads it twice:
/// in one piece and in pieces of 1 to 8 bytes (multi-segment buffers, headers split across reads), and both readings
/// must deliver the same messages, the same control frames and the same close status.
/// </summary>
internal sealed class WebSocketTarget : FuzzTarget
{
    /// <summary>The node's default <c>MaxMessageSize</c>.</summary>
    private const int MaxMessageSize = 1024 * 1024;

    private readonly bool _isClient;
    private readonly SegmentedInput _input = new();
    private readonly ChunkedPipeReader _raw;
    private readonly RecordingPipeWriter _messages = new(), _rawOutput = new(), _control = new();
    private readonly TransportConnection _session;
    private WebSocketPump? _pump;

    public WebSocketTarget(string name, string description, bool isClient)
    {
        Name = name;
        Description = description;
        _isClient = isClient;
        _raw = new ChunkedPipeReader(_input);
        _session = new TransportConnection(new ChunkedPipeReader(new SegmentedInput()), new RecordingPipeWriter(), "fuzz", "websocket")
        {
            ControlSink = frame =>
            {
                _control.Write(frame);
                return true;
            },
        };
    }

    public override string Name { get; }

    public override string Description { get; }

    public override void Run(ReadOnlySpan<byte> input)
    {
        _input.Load(input);
        var whole = Read(Math.Max(1, input.Length));
        var checksum = 0;
        foreach (var b in input)
        {
            checksum += b;
        }
        var pieces = Read(1 + (checksum & 7));
        if (!whole.Messages.AsSpan().SequenceEqual(pieces.Messages) || !whole.Control.AsSpan().SequenceEqual(pieces.Control) || whole.CloseStatus != pieces.CloseStatus)
        {
            throw new InvariantBrokenException($"{Name}: the stream read differently in one piece (close {whole.CloseStatus}, messages {Convert.ToHexString(whole.Messages)}, control {Convert.ToHexString(whole.Control)}) " +
                $"and in pieces of {1 + (checksum & 7)} bytes (close {pieces.CloseStatus}, messages {Convert.ToHexString(pieces.Messages)}, control {Convert.ToHexString(pieces.Control)})");
        }
        CheckMessages(whole.Messages);
    }

    private (byte[] Messages, byte[] Control, ushort? CloseStatus) Read(int chunk)
    {
        _chunk = chunk;
        AllocationBound.Check(this, static t => t.Receive(), _input.Length, Name);
        return (_messages.WrittenSpan.ToArray(), _control.WrittenSpan.ToArray(), _pump!.CloseStatus);
    }

    private int _chunk = 1;

    private void Receive()
    {
        // Each run reads with a fresh pump (a second run of the allocation check must not find the first one closed).
        _raw.Reset(_chunk);
        _messages.Reset();
        _rawOutput.Reset();
        _control.Reset();
        _pump = new WebSocketPump(_raw, _rawOutput, _messages, messagesOut: null, _isClient, MaxMessageSize);
        var receiving = _pump.ReceiveOnlyAsync(_isClient ? null : _session);
        if (!receiving.IsCompleted)
        {
            throw new InvariantBrokenException($"{Name}: the reader waited although all input was there and every write completed");
        }
        receiving.GetAwaiter().GetResult();
    }

    private static void CheckMessages(ReadOnlySpan<byte> messages)
    {
        var sequence = new ReadOnlySequence<byte>(messages.ToArray());
        while (Framing.TryReadFrame(ref sequence, MaxMessageSize, out _, out var declared) == Framing.Status.Frame)
        {
            _ = declared;
        }
        if (sequence.Length != 0)
        {
            throw new InvariantBrokenException($"the reader delivered {sequence.Length} bytes that are not a whole frame of at most {MaxMessageSize} bytes");
        }
    }
}

/// <summary>
/// A record path write as the node applies it: <c>RecordPath.TryParse</c>, then <c>RecordsTopic.TryApplyPath</c> on a
/// stored record. The input is <c>path 0xFF stored-record [0xFF value]</c> (0xFF never occurs in UTF-8); without the
/// second part the path is erased. A path that parses must parse again, to the same steps, from its own steps.
/// </summary>
internal sealed class RecordPathTarget : FuzzTarget
{
    /// <summary>The node's default <c>MaxDocumentSize</c>.</summary>
    private const int MaxDocumentSize = 1024 * 1024;


    private string _path = "";
    private ReadOnlyMemory<byte> _stored;
    private ReadOnlyMemory<byte>? _value;
    private bool _parsed, _applied;
    private PathToken[] _tokens = [];
    private ReadOnlyMemory<byte> _next;

    public override string Name => "record-path";

    public override string Description => "RecordPath.TryParse and RecordsTopic.TryApplyPath (set or erase) on a stored record";

    public override void Run(ReadOnlySpan<byte> input)
    {
        var first = input.IndexOf((byte)0xFF);
        var pathBytes = first < 0 ? input : input[..first];
        var rest = first < 0 ? [] : input[(first + 1)..];
        var second = rest.IndexOf((byte)0xFF);
        _path = Encoding.UTF8.GetString(pathBytes);
        _stored = (second < 0 ? rest : rest[..second]).ToArray();
        _value = second < 0 ? null : rest[(second + 1)..].ToArray();

        AllocationBound.Check(this, static t => t.Apply(), input.Length, Name);
        if (!_parsed)
        {
            return;
        }
        CheckTokens();
        if (_applied && !JsonValidation.TryValidate(_next.Span, out _, out var error))
        {
            throw new InvariantBrokenException($"{Name}: the patched record is not one JSON value ({error}): {Encoding.UTF8.GetString(_next.Span)}");
        }
    }

    private void Apply()
    {
        _applied = false;
        _parsed = RecordPath.TryParse(_path, out _tokens, out _);
        if (_parsed)
        {
            _applied = RecordsTopic.TryApplyPath(_stored, _tokens, _value, MaxDocumentSize, out _next, out _);
        }
    }

    private void CheckTokens()
    {
        if (_tokens.Length is 0 or > RecordPath.MaxTokens || _tokens.Any(t => t.IsIndex ? t.Index is < 0 or > RecordPath.MaxIndex : string.IsNullOrEmpty(t.Property)))
        {
            throw new InvariantBrokenException($"{Name}: '{_path}' parsed to steps outside the path rules: {string.Join(" ", _tokens)}");
        }
        var rebuilt = new StringBuilder();
        foreach (var t in _tokens)
        {
            rebuilt.Append(t.IsIndex ? $"[{t.Index}]" : rebuilt.Length == 0 ? t.Property : "." + t.Property);
        }
        if (!RecordPath.TryParse(rebuilt.ToString(), out var again, out var error) || !again.SequenceEqual(_tokens))
        {
            throw new InvariantBrokenException($"{Name}: '{_path}' parsed to {string.Join(" ", _tokens)}, but '{rebuilt}' does not parse to the same ({error})");
        }
    }
}

/// <summary>
/// The HTTP API's request JSON as POST /api and /api/auth read it: the body parsed from a stream, the request and
/// its operations read from it, the login data turned into the document the authentication chain gets.
/// </summary>
internal sealed class HttpApiTarget : FuzzTarget
{
    private byte[] _body = [];
    private int _length;

    public override string Name => "http-api";

    public override string Description => "HttpApi.ReadBodyAsync, HttpApiRequest.Parse and the login document of /api and /api/auth";

    public override void Run(ReadOnlySpan<byte> input)
    {
        if (_body.Length < input.Length)
        {
            _body = new byte[Math.Max(input.Length, _body.Length * 2)];
        }
        input.CopyTo(_body);
        _length = input.Length;
        AllocationBound.Check(this, static t => t.Read(), input.Length, Name);
    }

    private void Read()
    {
        using var stream = new MemoryStream(_body, 0, _length, writable: false);
        var reading = HttpApi.ReadBodyAsync(stream, CancellationToken.None);
        var body = reading.GetAwaiter().GetResult();
        if (HttpApiRequest.ParseLogin(body) is { } loginJson)
        {
            using var login = HttpApiRequest.LoginDocument(loginJson); // POST /api/auth
        }
        if (HttpApiRequest.Parse(body) is { } request)
        {
            using var login = HttpApiRequest.LoginDocument(request.LoginJson);
        }
    }
}
