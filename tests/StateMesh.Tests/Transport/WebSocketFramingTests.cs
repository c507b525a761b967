using System.Buffers;
using StateMesh.Transport;

namespace StateMesh.Tests.Transport;

public class WebSocketFramingTests
{
    private static byte[] Write(byte opcode, byte[] payload, uint? mask)
    {
        var output = new ArrayBufferWriter<byte>();
        WebSocketFraming.WriteFrame(output, opcode, new ReadOnlySequence<byte>(payload), mask);
        return output.WrittenSpan.ToArray();
    }

    [Theory]
    [InlineData(0, null)]
    [InlineData(125, null)]
    [InlineData(126, 0x12345678u)]
    [InlineData(65535, null)]
    [InlineData(65536, 0xA1B2C3D4u)]
    [InlineData(7, 0xFFFFFFFFu)]
    public void A_written_frame_reads_back_with_its_length_and_payload(int length, uint? mask)
    {
        var payload = Enumerable.Range(0, length).Select(i => (byte)(i * 7)).ToArray();
        var bytes = Write(WebSocketFraming.Binary, payload, mask);

        Assert.Equal(WebSocketFraming.ReadStatus.Frame, WebSocketFraming.TryReadHeader(new ReadOnlySequence<byte>(bytes), 1 << 20, out var header));
        Assert.True(header.Fin);
        Assert.Equal(WebSocketFraming.Binary, header.Opcode);
        Assert.Equal(mask is not null, header.Masked);
        Assert.Equal(length, header.PayloadLength);
        Assert.Equal(bytes.Length, header.HeaderLength + length);
        var body = bytes.AsSpan(header.HeaderLength).ToArray();
        if (header.Masked)
        {
            Assert.True(length < 4 || !body.SequenceEqual(payload));
            WebSocketFraming.Mask(body, header.MaskKey);
        }
        Assert.Equal(payload, body);
    }

    [Fact]
    public void Every_prefix_of_a_frame_needs_more()
    {
        var bytes = Write(WebSocketFraming.Binary, new byte[300], 0x01020304u);
        for (var n = 0; n < bytes.Length; n++)
        {
            Assert.Equal(WebSocketFraming.ReadStatus.NeedMore, WebSocketFraming.TryReadHeader(new ReadOnlySequence<byte>(bytes, 0, n), 1 << 20, out _));
        }
    }

    [Theory]
    [InlineData("c200")] // RSV1 set: no extension was negotiated
    [InlineData("8300")] // opcode 3 is reserved
    [InlineData("8b00")] // opcode 0xB is reserved
    [InlineData("0900")] // a fragmented ping
    [InlineData("897e0080")] // a ping of 128 bytes
    [InlineData("827fffffffffffffffff")] // a length beyond 2^63
    public void Malformed_frames_are_protocol_errors(string hex) =>
        Assert.Equal(WebSocketFraming.ReadStatus.ProtocolError, WebSocketFraming.TryReadHeader(new ReadOnlySequence<byte>(Convert.FromHexString(hex)), 1 << 20, out _));

    [Fact]
    public void A_frame_over_the_limit_is_too_large_before_its_payload_arrives() =>
        Assert.Equal(WebSocketFraming.ReadStatus.TooLarge, WebSocketFraming.TryReadHeader(new ReadOnlySequence<byte>(Convert.FromHexString("827f0000000000100000")), 65536, out _));

    [Fact]
    public void The_accept_key_is_the_one_of_the_rfc_example() =>
        Assert.Equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", WebSocketFraming.AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="));

    [Fact]
    public void Masking_twice_gives_back_the_data_at_every_length_and_offset()
    {
        for (var length = 0; length < 40; length++)
        {
            var data = Enumerable.Range(0, length).Select(i => (byte)i).ToArray();
            var copy = data.ToArray();
            WebSocketFraming.Mask(copy, 0xDEADBEEF);
            WebSocketFraming.Mask(copy, 0xDEADBEEF);
            Assert.Equal(data, copy);
        }
        var one = new byte[] { 1, 2, 3, 4, 5 };
        WebSocketFraming.Mask(one, 0x04030201); // key bytes 01 02 03 04 in wire order
        Assert.Equal(new byte[] { 0, 0, 0, 0, 4 }, one);
    }
}
