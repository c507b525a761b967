using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using StateMesh.Deepstream;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Tests.Integration;

/// <summary>
/// The node's own RFC 6455 framing on /deepstream, spoken byte by byte: masking rules, fragments, control frames and
/// malformed frames. Each bad frame closes only its own connection.
/// </summary>
public sealed class WebSocketUpgradeTests(DeepstreamEndpointTests.Fixture fixture) : IClassFixture<DeepstreamEndpointTests.Fixture>
{
    private sealed class RawSocket(TcpClient tcp) : IDisposable
    {
        private readonly NetworkStream _stream = tcp.GetStream();
        private byte[] _pending = [];

        public static async Task<(RawSocket Socket, string Head)> ConnectAsync(int port, string version = "13")
        {
            var tcp = new TcpClient();
            await tcp.ConnectAsync("127.0.0.1", port);
            var socket = new RawSocket(tcp);
            var request = $"GET /deepstream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                          $"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n";
            await socket._stream.WriteAsync(Encoding.ASCII.GetBytes(request));
            var head = new StringBuilder();
            var buffer = new byte[4096];
            while (true)
            {
                var n = await socket._stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                Assert.NotEqual(0, n);
                head.Append(Encoding.ASCII.GetString(buffer, 0, n));
                var end = head.ToString().IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    socket._pending = Encoding.ASCII.GetBytes(head.ToString()[(end + 4)..]);
                    return (socket, head.ToString()[..end]);
                }
            }
        }

        public Task SendAsync(byte opcode, byte[] payload, bool fin = true, uint? mask = 0x11223344, byte extraBits = 0)
        {
            var output = new ArrayBufferWriter<byte>();
            WebSocketFraming.WriteFrame(output, opcode, new ReadOnlySequence<byte>(payload), mask);
            var bytes = output.WrittenSpan.ToArray();
            bytes[0] = (byte)((fin ? bytes[0] : bytes[0] & 0x7F) | extraBits);
            return _stream.WriteAsync(bytes).AsTask();
        }

        /// <summary>The next frame from the node, or null when it closed the connection.</summary>
        public async Task<(byte Opcode, byte[] Payload)?> ReceiveAsync()
        {
            var buffer = new byte[1 << 16];
            while (true)
            {
                var status = WebSocketFraming.TryReadHeader(new ReadOnlySequence<byte>(_pending), 1 << 20, out var header);
                if (status == WebSocketFraming.ReadStatus.Frame)
                {
                    Assert.False(header.Masked); // a server never masks
                    var payload = _pending.AsSpan(header.HeaderLength, (int)header.PayloadLength).ToArray();
                    _pending = _pending[(header.HeaderLength + (int)header.PayloadLength)..];
                    return (header.Opcode, payload);
                }
                Assert.Equal(WebSocketFraming.ReadStatus.NeedMore, status);
                var n = await _stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                if (n == 0)
                {
                    return null;
                }
                _pending = [.. _pending, .. buffer.AsSpan(0, n)];
            }
        }

        public async Task<ushort> ExpectCloseAsync()
        {
            var frame = await ReceiveAsync();
            Assert.NotNull(frame);
            Assert.Equal(WebSocketFraming.Close, frame.Value.Opcode);
            return BinaryPrimitives.ReadUInt16BigEndian(frame.Value.Payload);
        }

        public void Dispose() => tcp.Dispose();
    }

    private static byte[] Challenge() => DeepstreamCodec.Instance.EncodeFrame(
        new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Challenge, Url = "ws://test", ProtocolVersion = "0.1a" });

    private static async Task ExpectAcceptAsync(RawSocket socket)
    {
        var frame = await socket.ReceiveAsync();
        Assert.NotNull(frame);
        Assert.Equal(WebSocketFraming.Binary, frame.Value.Opcode);
        var messages = new List<Message>();
        Assert.Null(DeepstreamCodec.Instance.ParseFrame(new ReadOnlySequence<byte>(frame.Value.Payload), messages));
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Accept), (messages[0].Topic, messages[0].Action));
    }

    private Task<(RawSocket Socket, string Head)> ConnectAsync(string version = "13") => RawSocket.ConnectAsync(fixture.Server.HttpPort, version);

    [Fact]
    public async Task The_upgrade_answers_101_with_the_accept_key_and_a_challenge_is_accepted()
    {
        var (socket, head) = await ConnectAsync();
        using var _ = socket;
        Assert.StartsWith("HTTP/1.1 101", head);
        Assert.Contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head);
        await socket.SendAsync(WebSocketFraming.Binary, Challenge());
        await ExpectAcceptAsync(socket);
    }

    [Fact]
    public async Task A_message_in_fragments_is_put_together()
    {
        var (socket, _) = await ConnectAsync();
        using var s = socket;
        var challenge = Challenge();
        await socket.SendAsync(WebSocketFraming.Binary, challenge[..3], fin: false);
        await socket.SendAsync(WebSocketFraming.Ping, "between"u8.ToArray()); // control frames may come between fragments
        await socket.SendAsync(WebSocketFraming.Continuation, challenge[3..7], fin: false);
        await socket.SendAsync(WebSocketFraming.Continuation, challenge[7..]);
        var pong = await socket.ReceiveAsync();
        Assert.Equal(WebSocketFraming.Pong, pong!.Value.Opcode);
        Assert.Equal("between"u8.ToArray(), pong.Value.Payload);
        await ExpectAcceptAsync(socket);
    }

    [Fact]
    public async Task An_unmasked_client_frame_is_a_protocol_error_and_others_go_on()
    {
        var (good, _) = await ConnectAsync();
        using var g = good;
        var (socket, _) = await ConnectAsync();
        using var s = socket;
        await socket.SendAsync(WebSocketFraming.Binary, Challenge(), mask: null);
        Assert.Equal(WebSocketPump.ProtocolError, await socket.ExpectCloseAsync());
        Assert.Null(await socket.ReceiveAsync());
        await good.SendAsync(WebSocketFraming.Binary, Challenge());
        await ExpectAcceptAsync(good);
    }

    [Theory]
    [InlineData(0x40)] // RSV1: compression was never negotiated
    [InlineData(0x10)] // RSV3
    public async Task Reserved_bits_are_a_protocol_error(byte bits)
    {
        var (socket, _) = await ConnectAsync();
        using var s = socket;
        await socket.SendAsync(WebSocketFraming.Binary, Challenge(), extraBits: bits);
        Assert.Equal(WebSocketPump.ProtocolError, await socket.ExpectCloseAsync());
    }

    [Fact]
    public async Task A_continuation_without_a_start_is_a_protocol_error()
    {
        var (socket, _) = await ConnectAsync();
        using var s = socket;
        await socket.SendAsync(WebSocketFraming.Continuation, Challenge());
        Assert.Equal(WebSocketPump.ProtocolError, await socket.ExpectCloseAsync());
    }

    [Fact]
    public async Task Fragments_that_add_up_past_the_limit_close_with_message_too_big()
    {
        var (socket, _) = await ConnectAsync();
        using var s = socket;
        await socket.SendAsync(WebSocketFraming.Binary, new byte[40_000], fin: false);
        await socket.SendAsync(WebSocketFraming.Continuation, new byte[40_000]); // the fixture allows 65,536 bytes
        Assert.Equal(WebSocketPump.MessageTooBig, await socket.ExpectCloseAsync());
    }

    [Fact]
    public async Task A_close_from_the_client_is_answered_with_a_close()
    {
        var (socket, _) = await ConnectAsync();
        using var s = socket;
        await socket.SendAsync(WebSocketFraming.Close, [0x03, 0xE8]);
        Assert.Equal(WebSocketPump.NormalClosure, await socket.ExpectCloseAsync());
        Assert.Null(await socket.ReceiveAsync());
    }

    [Theory]
    [InlineData(new byte[] { 0x03 })] // one byte: half a status code
    [InlineData(new byte[] { 0x03, 0xED })] // 1005 may never be sent
    [InlineData(new byte[] { 0x00, 0x10 })] // 16 is not a close code
    public async Task A_malformed_close_is_answered_with_a_protocol_error(byte[] payload)
    {
        var (socket, _) = await ConnectAsync();
        using var s = socket;
        await socket.SendAsync(WebSocketFraming.Close, payload);
        Assert.Equal(WebSocketPump.ProtocolError, await socket.ExpectCloseAsync());
    }

    [Fact]
    public async Task A_flood_of_pings_is_answered_and_the_connection_still_works()
    {
        var (socket, _) = await ConnectAsync();
        using var s = socket;
        for (var i = 0; i < 200; i++)
        {
            await socket.SendAsync(WebSocketFraming.Ping, [(byte)i]);
        }
        await socket.SendAsync(WebSocketFraming.Binary, Challenge());
        var pongs = 0;
        while (true)
        {
            var frame = await socket.ReceiveAsync();
            Assert.NotNull(frame);
            if (frame.Value.Opcode == WebSocketFraming.Pong)
            {
                pongs++; // pending pongs may be merged into the latest one, never more than one per ping
                continue;
            }
            Assert.Equal(WebSocketFraming.Binary, frame.Value.Opcode);
            break;
        }
        Assert.InRange(pongs, 1, 200);
    }

    [Fact]
    public async Task A_wrong_websocket_version_is_refused_with_426_and_the_version_we_speak()
    {
        var (socket, head) = await ConnectAsync(version: "8");
        using var s = socket;
        Assert.StartsWith("HTTP/1.1 426", head);
        Assert.Contains("Sec-WebSocket-Version: 13", head);
    }
}
