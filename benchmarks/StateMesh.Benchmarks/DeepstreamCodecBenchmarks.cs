using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using StateMesh.Deepstream;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Benchmarks;

/// <summary>The deepstream protobuf codec (one message per frame) and the WebSocket framing around it.</summary>
[MemoryDiagnoser]
public class DeepstreamCodecBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(4096);
    private readonly List<Message> _parsed = new(4);
    private Message _emit = null!;
    private Message _patch = null!;
    private byte[] _emitFrame = null!;
    private byte[] _patchFrame = null!;
    private ReadOnlySequence<byte> _payload;

    [GlobalSetup]
    public void Setup()
    {
        _emit = new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "prices/eurusd", Data = Encoding.UTF8.GetBytes("{\"bid\":1.0842,\"ask\":1.0844,\"t\":1764288000000}") };
        _patch = new Message { Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = "todos/42", Version = 17, Path = "items[3].done", Data = "true"u8.ToArray() };
        _emitFrame = Frame(_emit);
        _patchFrame = Frame(_patch);
        _payload = new ReadOnlySequence<byte>(_emitFrame);
    }

    private static byte[] Frame(Message message) => DeepstreamCodec.Instance.EncodeFrame(message);

    [Benchmark]
    public int WriteEmit()
    {
        _output.ResetWrittenCount();
        DeepstreamCodec.Instance.WriteMessage(_emit, _output);
        return _output.WrittenCount;
    }

    [Benchmark]
    public int WritePatch()
    {
        _output.ResetWrittenCount();
        DeepstreamCodec.Instance.WriteMessage(_patch, _output);
        return _output.WrittenCount;
    }

    [Benchmark]
    public int ParseEmit()
    {
        _parsed.Clear();
        DeepstreamCodec.Instance.ParseFrame(new ReadOnlySequence<byte>(_emitFrame), _parsed);
        return _parsed.Count;
    }

    [Benchmark]
    public int ParsePatch()
    {
        _parsed.Clear();
        DeepstreamCodec.Instance.ParseFrame(new ReadOnlySequence<byte>(_patchFrame), _parsed);
        return _parsed.Count;
    }

    /// <summary>What the node adds per message sent on /deepstream: an unmasked binary WebSocket frame.</summary>
    [Benchmark]
    public int WebSocketFrameOut()
    {
        _output.ResetWrittenCount();
        WebSocketFraming.WriteFrame(_output, WebSocketFraming.Binary, _payload, null);
        return _output.WrittenCount;
    }

    /// <summary>What the node does per message received: read the header and unmask the payload.</summary>
    [Benchmark]
    public long WebSocketFrameIn()
    {
        _output.ResetWrittenCount();
        WebSocketFraming.WriteFrame(_output, WebSocketFraming.Binary, _payload, 0x5A5A1234);
        WebSocketFraming.TryReadHeader(new ReadOnlySequence<byte>(_output.WrittenMemory), 1 << 20, out var header);
        return header.PayloadLength;
    }
}
