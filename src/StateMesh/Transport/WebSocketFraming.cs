using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace StateMesh.Transport;

/// <summary>
/// RFC 6455 frames on raw pipes. The node and the client speak WebSocket framing themselves (see ADR 0003) so that
/// every frame that is ready goes out in one write, and every frame that arrived in one read reaches the session in
/// one flush; a WebSocket API that sends and flushes one message per call costs a system call per message.
/// Extensions are never negotiated, so the reserved bits must be clear.
/// </summary>
internal static class WebSocketFraming
{
    public const byte Continuation = 0x0, Text = 0x1, Binary = 0x2, Close = 0x8, Ping = 0x9, Pong = 0xA;

    /// <summary>A frame header; the payload follows it in the buffer.</summary>
    public readonly record struct Header(bool Fin, byte Opcode, bool Masked, uint MaskKey, long PayloadLength, int HeaderLength);

    public enum ReadStatus { Frame, NeedMore, ProtocolError, TooLarge }

    /// <summary>Reads one frame header from the start of <paramref name="buffer"/>; NeedMore until header and payload are all there.</summary>
    public static ReadStatus TryReadHeader(in ReadOnlySequence<byte> buffer, long maxPayload, out Header header)
    {
        header = default;
        Span<byte> head = stackalloc byte[14];
        var available = (int)Math.Min(buffer.Length, head.Length);
        if (available < 2)
        {
            return ReadStatus.NeedMore;
        }
        buffer.Slice(0, available).CopyTo(head);
        var fin = (head[0] & 0x80) != 0;
        var opcode = (byte)(head[0] & 0x0F);
        var masked = (head[1] & 0x80) != 0;
        long length = head[1] & 0x7F;
        var headerLength = 2;
        if ((head[0] & 0x70) != 0 || opcode is > Binary and < Close or > Pong)
        {
            return ReadStatus.ProtocolError; // reserved bits without an extension, or an unknown opcode
        }
        if (length == 126)
        {
            if (available < 4)
            {
                return ReadStatus.NeedMore;
            }
            length = BinaryPrimitives.ReadUInt16BigEndian(head[2..]);
            headerLength = 4;
        }
        else if (length == 127)
        {
            if (available < 10)
            {
                return ReadStatus.NeedMore;
            }
            var wide = BinaryPrimitives.ReadUInt64BigEndian(head[2..]);
            if (wide > long.MaxValue)
            {
                return ReadStatus.ProtocolError;
            }
            length = (long)wide;
            headerLength = 10;
        }
        if (opcode >= Close && (!fin || length > 125))
        {
            return ReadStatus.ProtocolError; // control frames are never fragmented and carry at most 125 bytes
        }
        uint key = 0;
        if (masked)
        {
            if (available < headerLength + 4)
            {
                return ReadStatus.NeedMore;
            }
            key = BinaryPrimitives.ReadUInt32LittleEndian(head[headerLength..]);
            headerLength += 4;
        }
        if (length > maxPayload)
        {
            return ReadStatus.TooLarge;
        }
        if (buffer.Length < headerLength + length)
        {
            return ReadStatus.NeedMore;
        }
        header = new Header(fin, opcode, masked, key, length, headerLength);
        return ReadStatus.Frame;
    }

    /// <summary>The header of an unmasked, final binary frame: what a node writes before each message (ADR 0003).</summary>
    public static void WriteServerBinaryHeader(IBufferWriter<byte> output, int length)
    {
        var span = output.GetSpan(10);
        span[0] = 0x80 | Binary;
        int at;
        if (length < 126)
        {
            span[1] = (byte)length;
            at = 2;
        }
        else if (length <= ushort.MaxValue)
        {
            span[1] = 126;
            BinaryPrimitives.WriteUInt16BigEndian(span[2..], (ushort)length);
            at = 4;
        }
        else
        {
            span[1] = 127;
            BinaryPrimitives.WriteUInt64BigEndian(span[2..], (ulong)length);
            at = 10;
        }
        output.Advance(at);
    }

    /// <summary>A whole frame as bytes (control frames, which are small).</summary>
    public static byte[] Frame(byte opcode, ReadOnlySequence<byte> payload, uint? maskKey)
    {
        var output = new ArrayBufferWriter<byte>((int)payload.Length + 14);
        WriteFrame(output, opcode, payload, maskKey);
        return output.WrittenSpan.ToArray();
    }

    /// <summary>Writes a whole frame; <paramref name="maskKey"/> is set on frames a client sends.</summary>
    public static void WriteFrame(IBufferWriter<byte> output, byte opcode, ReadOnlySequence<byte> payload, uint? maskKey)
    {
        var length = payload.Length;
        var headerLength = (length < 126 ? 2 : length <= ushort.MaxValue ? 4 : 10) + (maskKey is null ? 0 : 4);
        var span = output.GetSpan(headerLength + (int)length);
        span[0] = (byte)(0x80 | opcode);
        var maskBit = (byte)(maskKey is null ? 0 : 0x80);
        int at;
        if (length < 126)
        {
            span[1] = (byte)(maskBit | length);
            at = 2;
        }
        else if (length <= ushort.MaxValue)
        {
            span[1] = (byte)(maskBit | 126);
            BinaryPrimitives.WriteUInt16BigEndian(span[2..], (ushort)length);
            at = 4;
        }
        else
        {
            span[1] = (byte)(maskBit | 127);
            BinaryPrimitives.WriteUInt64BigEndian(span[2..], (ulong)length);
            at = 10;
        }
        if (maskKey is { } key)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(span[at..], key);
            at += 4;
        }
        var body = span.Slice(at, (int)length);
        payload.CopyTo(body);
        if (maskKey is { } k)
        {
            Mask(body, k);
        }
        output.Advance(at + (int)length);
    }

    /// <summary>XORs <paramref name="data"/> with the mask key in place (masking and unmasking are the same).</summary>
    public static void Mask(Span<byte> data, uint key)
    {
        var wide = ((ulong)key << 32) | key;
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        for (var i = 0; i < words.Length; i++)
        {
            words[i] ^= wide;
        }
        var tail = words.Length * 8;
        Span<byte> keyBytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(keyBytes, key);
        for (var i = tail; i < data.Length; i++)
        {
            data[i] ^= keyBytes[i & 3];
        }
    }

    /// <summary>The Sec-WebSocket-Accept value for a Sec-WebSocket-Key.</summary>
    public static string AcceptKey(string key) =>
        Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key.Trim() + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));

    /// <summary>A close frame payload: the status code and a reason of at most 123 bytes, cut at a character boundary.</summary>
    public static ReadOnlySequence<byte> ClosePayload(ushort status, string reason)
    {
        var encoded = Encoding.UTF8.GetBytes(reason);
        var length = Math.Min(encoded.Length, 123);
        while (length > 0 && length < encoded.Length && (encoded[length] & 0xC0) == 0x80)
        {
            length--; // do not split a multi-byte character
        }
        var bytes = new byte[2 + length];
        BinaryPrimitives.WriteUInt16BigEndian(bytes, status);
        encoded.AsSpan(0, length).CopyTo(bytes.AsSpan(2));
        return new ReadOnlySequence<byte>(bytes);
    }
}

/// <summary>
/// Connects a WebSocket on raw pipes to a length-prefixed frame stream: each binary message becomes one frame of
/// <c>pump</c>'s output; all messages of one read reach it with one flush. A client (<see cref="RunAsync"/>) also pumps
/// the other way: each frame read from <c>pump</c>'s input goes out as one binary message, all that are ready before one
/// flush. A node (<see cref="RunServerAsync"/>) lets its session write WebSocket frames to the connection itself.
/// </summary>
internal sealed class WebSocketPump
{
    public const ushort NormalClosure = 1000, ProtocolError = 1002, UnsupportedData = 1003, MessageTooBig = 1009;

    private readonly PipeReader _rawInput;
    private readonly PipeWriter _rawOutput;
    private readonly PipeWriter _messagesIn;
    private readonly PipeReader? _messagesOut;
    private readonly bool _isClient;
    private readonly int _maxMessageSize;
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private bool _closeSent;
    private TransportConnection? _session;
    private string _closeReason = "";

    /// <param name="rawInput">The connection's bytes in.</param>
    /// <param name="rawOutput">The connection's bytes out.</param>
    /// <param name="messagesIn">Where received messages go, each a length-prefixed frame.</param>
    /// <param name="messagesOut">A client's length-prefixed frames to send; a node's session writes for itself.</param>
    /// <param name="isClient">Clients mask what they send; nodes require masked frames.</param>
    /// <param name="maxMessageSize">Larger messages close the connection (1009).</param>
    public WebSocketPump(PipeReader rawInput, PipeWriter rawOutput, PipeWriter messagesIn, PipeReader? messagesOut, bool isClient, int maxMessageSize)
    {
        _rawInput = rawInput;
        _rawOutput = rawOutput;
        _messagesIn = messagesIn;
        _messagesOut = messagesOut;
        _isClient = isClient;
        _maxMessageSize = maxMessageSize;
    }

    /// <summary>Why the peer's input ended: its close status, or the one we closed with.</summary>
    public ushort? CloseStatus { get; private set; }

    /// <summary>Runs both directions until either ends; then closes the other.</summary>
    public async Task RunAsync()
    {
        var inbound = Task.Run(ReceiveAsync);
        var outbound = Task.Run(SendAsync);
        await Task.WhenAny(inbound, outbound).ConfigureAwait(false);
        // Say goodbye, then give the peer a moment to answer before the connection goes.
        await SendCloseAsync(CloseStatus is { } status && status != NormalClosure && IsSendable(status) ? status : NormalClosure, "").ConfigureAwait(false);
        await Task.WhenAny(inbound, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
        // Each loop completes what it writes; the other ends are stopped here, never completed under a running loop.
        _rawInput.CancelPendingRead();
        _messagesOut?.CancelPendingRead();
        await Task.WhenAny(Task.WhenAll(inbound, outbound), Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
        if (outbound.IsCompleted && _messagesOut is not null)
        {
            await _messagesOut.CompleteAsync().ConfigureAwait(false);
        }
        await _rawOutput.CompleteAsync().ConfigureAwait(false);
        if (inbound.IsCompleted)
        {
            await _rawInput.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The node side: <paramref name="session"/> writes its frames straight to the connection (its header writer makes
    /// them WebSocket frames) and completes <paramref name="sessionOutputDone"/> when it stops; this reads the peer's
    /// frames, answers pings through the session's queue, and ends with the close handshake. Returns false when the
    /// session did not stop writing in time: the caller must then abort the connection (no close frame can be written
    /// safely while the session may still write).
    /// </summary>
    public async Task<bool> RunServerAsync(TransportConnection session, Task sessionOutputDone)
    {
        _session = session;
        var inbound = Task.Run(ReceiveAsync);
        if (await Task.WhenAny(inbound, sessionOutputDone).ConfigureAwait(false) == inbound)
        {
            // The peer closed, or broke the protocol: the session sees its input end and stops writing.
            await Task.WhenAny(sessionOutputDone, Task.Delay(TimeSpan.FromSeconds(10))).ConfigureAwait(false);
            if (!sessionOutputDone.IsCompleted)
            {
                _rawInput.CancelPendingRead();
                return false;
            }
        }
        // The session no longer writes: the close frame is the last thing on the wire. Then wait a moment for the
        // peer's close, so that bytes still in flight from it do not turn the end into a reset.
        var status = CloseStatus ?? NormalClosure;
        await SendCloseAsync(IsSendable(status) ? status : ProtocolError, _closeReason).ConfigureAwait(false);
        await Task.WhenAny(inbound, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
        _rawInput.CancelPendingRead();
        await Task.WhenAny(inbound, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
        await _rawOutput.CompleteAsync().ConfigureAwait(false);
        if (inbound.IsCompleted)
        {
            await _rawInput.CompleteAsync().ConfigureAwait(false);
        }
        return true;
    }

    /// <summary>Close codes that may go on the wire (RFC 6455 7.4): 1005, 1006 and 1015 never do; below 1000 and from 5000 none exist.</summary>
    private static bool IsSendable(ushort status) =>
        status is (>= 1000 and <= 1003) or (>= 1007 and <= 1014) or (>= 3000 and <= 4999);

    /// <summary>
    /// Only the receiving half: reads the peer's frames until its input ends, as <see cref="RunServerAsync"/> does with
    /// <paramref name="session"/> (a node) or <see cref="RunAsync"/> without one (a client). For the fuzz targets.
    /// </summary>
    internal Task ReceiveOnlyAsync(TransportConnection? session)
    {
        _session = session;
        return ReceiveAsync();
    }

    private async Task ReceiveAsync()
    {
        ArrayBufferWriter<byte>? message = null; // only fragmented messages need it
        var fragmented = false;
        try
        {
            while (true)
            {
                var result = await _rawInput.ReadAsync().ConfigureAwait(false);
                var buffer = result.Buffer;
                var wrote = false;
                while (true)
                {
                    var status = WebSocketFraming.TryReadHeader(buffer, _maxMessageSize, out var header);
                    if (status == WebSocketFraming.ReadStatus.NeedMore)
                    {
                        break;
                    }
                    if (status != WebSocketFraming.ReadStatus.Frame)
                    {
                        await FailAsync(status == WebSocketFraming.ReadStatus.TooLarge ? MessageTooBig : ProtocolError,
                            status == WebSocketFraming.ReadStatus.TooLarge ? $"messages are limited to {_maxMessageSize} bytes" : "malformed frame").ConfigureAwait(false);
                        return;
                    }
                    if (header.Masked == _isClient)
                    {
                        await FailAsync(ProtocolError, _isClient ? "a server must not mask frames" : "client frames must be masked").ConfigureAwait(false);
                        return;
                    }
                    var payload = buffer.Slice(header.HeaderLength, header.PayloadLength);
                    buffer = buffer.Slice(payload.End);
                    switch (header.Opcode)
                    {
                        case WebSocketFraming.Binary when !fragmented && header.Fin:
                            WriteMessage(payload, header);
                            wrote = true;
                            break;
                        case WebSocketFraming.Binary when !fragmented:
                        case WebSocketFraming.Continuation when fragmented:
                            message ??= new ArrayBufferWriter<byte>(1024);
                            if (message.WrittenCount + payload.Length > _maxMessageSize)
                            {
                                await FailAsync(MessageTooBig, $"messages are limited to {_maxMessageSize} bytes").ConfigureAwait(false);
                                return;
                            }
                            var span = message.GetSpan((int)payload.Length)[..(int)payload.Length];
                            payload.CopyTo(span);
                            if (header.Masked)
                            {
                                WebSocketFraming.Mask(span, header.MaskKey);
                            }
                            message.Advance(span.Length);
                            fragmented = !header.Fin;
                            if (header.Fin)
                            {
                                WriteMessage(new ReadOnlySequence<byte>(message.WrittenMemory), default);
                                // A large message's buffer is not kept for the life of the connection.
                                message = message.Capacity > 64 * 1024 ? null : message;
                                message?.ResetWrittenCount();
                                wrote = true;
                            }
                            break;
                        case WebSocketFraming.Text:
                            await FailAsync(UnsupportedData, "binary frames only").ConfigureAwait(false);
                            return;
                        case WebSocketFraming.Ping when _session is not null:
                            // The session owns the connection's output: the pong takes its place in the session's queue.
                            _session.ControlSink?.Invoke(WebSocketFraming.Frame(WebSocketFraming.Pong, Unmasked(payload, header), null));
                            break;
                        case WebSocketFraming.Ping:
                            await WriteControlAsync(WebSocketFraming.Pong, Unmasked(payload, header)).ConfigureAwait(false);
                            break;
                        case WebSocketFraming.Pong:
                            break;
                        case WebSocketFraming.Close:
                            var close = Unmasked(payload, header);
                            var code = close.Length >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(close.FirstSpan.Length >= 2 ? close.FirstSpan : close.ToArray()) : NormalClosure;
                            // A close with one byte, or with a code that may not be sent, is itself a protocol error.
                            CloseStatus ??= close.Length == 1 || !IsSendable(code) ? ProtocolError : code;
                            _rawInput.AdvanceTo(buffer.Start);
                            return;
                        default:
                            await FailAsync(ProtocolError, "unexpected continuation").ConfigureAwait(false);
                            return;
                    }
                }
                _rawInput.AdvanceTo(buffer.Start, buffer.End);
                if (wrote && (await _messagesIn.FlushAsync().ConfigureAwait(false)).IsCompleted)
                {
                    return;
                }
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            await _messagesIn.CompleteAsync().ConfigureAwait(false);
        }
    }

    private static ReadOnlySequence<byte> Unmasked(ReadOnlySequence<byte> payload, WebSocketFraming.Header header)
    {
        if (!header.Masked)
        {
            return payload;
        }
        var copy = payload.ToArray();
        WebSocketFraming.Mask(copy, header.MaskKey);
        return new ReadOnlySequence<byte>(copy);
    }

    /// <summary>One message into the session's input, length-prefixed, unmasked on the way.</summary>
    private void WriteMessage(ReadOnlySequence<byte> payload, WebSocketFraming.Header header)
    {
        var length = (int)payload.Length;
        var span = _messagesIn.GetSpan(Framing.HeaderLength + length);
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)length);
        var body = span.Slice(Framing.HeaderLength, length);
        payload.CopyTo(body);
        if (header.Masked)
        {
            WebSocketFraming.Mask(body, header.MaskKey);
        }
        _messagesIn.Advance(Framing.HeaderLength + length);
    }

    private async Task FailAsync(ushort status, string reason)
    {
        CloseStatus = status;
        _closeReason = reason;
        if (_session is null)
        {
            await SendCloseAsync(status, reason).ConfigureAwait(false);
        }
        // A node closes once its session has stopped writing (RunServerAsync).
    }

    private async Task SendAsync()
    {
        var input = _messagesOut ?? throw new InvalidOperationException("a node's session writes its own frames");
        try
        {
            while (true)
            {
                var result = await input.ReadAsync().ConfigureAwait(false);
                var buffer = result.Buffer;
                await _writeGate.WaitAsync().ConfigureAwait(false);
                try
                {
                    if (_closeSent)
                    {
                        return;
                    }
                    while (Framing.TryReadFrame(ref buffer, int.MaxValue, out var frame, out _) == Framing.Status.Frame)
                    {
                        WebSocketFraming.WriteFrame(_rawOutput, WebSocketFraming.Binary, frame, MaskKey());
                    }
                    input.AdvanceTo(buffer.Start, buffer.End);
                    if ((await _rawOutput.FlushAsync().ConfigureAwait(false)).IsCompleted)
                    {
                        return;
                    }
                }
                finally
                {
                    _writeGate.Release();
                }
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    private uint? MaskKey()
    {
        if (!_isClient)
        {
            return null;
        }
        // RFC 6455 5.3: a fresh key from a strong source of entropy for each frame, drawn 64 keys at a time (one call to
        // the system's generator per frame costs more than the frame). Callers hold the write gate.
        _maskKeys ??= new byte[256];
        if (_maskKeysUsed >= _maskKeys.Length)
        {
            RandomNumberGenerator.Fill(_maskKeys);
            _maskKeysUsed = 0;
        }
        var key = BinaryPrimitives.ReadUInt32LittleEndian(_maskKeys.AsSpan(_maskKeysUsed, 4));
        _maskKeysUsed += 4;
        return key;
    }

    private byte[]? _maskKeys; // clients only
    private int _maskKeysUsed = 256;

    private async Task WriteControlAsync(byte opcode, ReadOnlySequence<byte> payload)
    {
        await _writeGate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_closeSent)
            {
                return;
            }
            _closeSent = opcode == WebSocketFraming.Close;
            WebSocketFraming.WriteFrame(_rawOutput, opcode, payload, MaskKey());
            if ((await _rawOutput.FlushAsync().ConfigureAwait(false)).IsCanceled)
            {
                // A cancel left over from the session's end fell on this flush: the frame is still to go.
                await _rawOutput.FlushAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private Task SendCloseAsync(ushort status, string reason) =>
        WriteControlAsync(WebSocketFraming.Close, WebSocketFraming.ClosePayload(status, reason));
}
