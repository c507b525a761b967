using System.Buffers;
using System.IO.Pipelines;
using StateMesh.Deepstream;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Tests.Transport;

public class OutboundQueueTests
{
    private static Message Emit(string name) => new() { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = name, Data = "1"u8.ToArray() };

    /// <summary>Drains a completed queue into a pipe and returns everything written.</summary>
    private static async Task<byte[]> DrainAsync(OutboundQueue queue, Action<IBufferWriter<byte>, int>? header = null)
    {
        var pipe = new Pipe();
        queue.Complete();
        await queue.RunWriterAsync(pipe.Writer, null, CancellationToken.None, header);
        await pipe.Writer.CompleteAsync();
        var result = await pipe.Reader.ReadAsync();
        return result.Buffer.ToArray();
    }

    [Fact]
    public async Task With_a_websocket_header_each_message_is_one_unmasked_binary_frame_and_control_bytes_keep_their_place()
    {
        var queue = new OutboundQueue(DeepstreamCodec.Instance, 16);
        Assert.True(queue.TryEnqueue(queue.Encode(Emit("a"))));
        Assert.True(queue.TryEnqueueRaw(new byte[] { 0x8A, 0x00 })); // an empty pong
        Assert.True(queue.TryEnqueue(queue.Encode(Emit("b"))));

        var bytes = new ReadOnlySequence<byte>(await DrainAsync(queue, WebSocketFraming.WriteServerBinaryHeader));

        var names = new List<string>();
        var opcodes = new List<byte>();
        while (!bytes.IsEmpty)
        {
            Assert.Equal(WebSocketFraming.ReadStatus.Frame, WebSocketFraming.TryReadHeader(bytes, 1 << 20, out var header));
            Assert.False(header.Masked);
            opcodes.Add(header.Opcode);
            var payload = bytes.Slice(header.HeaderLength, header.PayloadLength);
            if (header.Opcode == WebSocketFraming.Binary)
            {
                var messages = new List<Message>();
                Assert.Null(DeepstreamCodec.Instance.ParseFrame(payload, messages));
                names.Add(Assert.Single(messages).Name!);
            }
            bytes = bytes.Slice(payload.End);
        }
        Assert.Equal([WebSocketFraming.Binary, WebSocketFraming.Pong, WebSocketFraming.Binary], opcodes);
        Assert.Equal(["a", "b"], names);
    }

    [Fact]
    public async Task Without_a_header_writer_frames_are_length_prefixed_and_batched()
    {
        var queue = new OutboundQueue(NativeCodec.Instance, 16);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(queue.TryEnqueue(queue.Encode(Emit("n" + i))));
        }

        var bytes = new ReadOnlySequence<byte>(await DrainAsync(queue));

        Assert.Equal(Framing.Status.Frame, Framing.TryReadFrame(ref bytes, int.MaxValue, out var frame, out _));
        var messages = new List<Message>();
        Assert.Null(NativeCodec.Instance.ParseFrame(frame, messages));
        Assert.Equal(["n0", "n1", "n2"], messages.Select(m => m.Name));
        Assert.True(bytes.IsEmpty); // one frame carried all three
    }

    [Fact]
    public async Task Control_items_never_pile_up_the_latest_replaces_one_still_pending()
    {
        var queue = new OutboundQueue(DeepstreamCodec.Instance, 16);
        for (var i = 0; i < 1000; i++)
        {
            Assert.True(queue.TryEnqueueRaw([0x8A, 0x01, (byte)i]));
        }
        Assert.Equal(1, queue.Count); // one marker, however many pings asked

        var bytes = await DrainAsync(queue, WebSocketFraming.WriteServerBinaryHeader);

        Assert.Equal(new byte[] { 0x8A, 0x01, unchecked((byte)999) }, bytes);
    }
}
