using System.Buffers;
using StateMesh.Transport;

namespace StateMesh.Tests.Protocol;

public class FramingTests
{
    [Fact]
    public void An_oversized_frame_is_refused_from_its_header_alone()
    {
        var header = new byte[] { 0x7F, 0xFF, 0xFF, 0xFF };
        var buffer = new ReadOnlySequence<byte>(header);
        var status = Framing.TryReadFrame(ref buffer, 1024, out _, out var declared);
        Assert.Equal(Framing.Status.TooLarge, status);
        Assert.Equal(0x7FFFFFFF, declared);
    }

    [Fact]
    public void Frames_split_across_segments_are_reassembled()
    {
        var bytes = new byte[] { 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 9 };
        for (var split = 1; split < bytes.Length; split++)
        {
            var buffer = SequenceOf(bytes[..split], bytes[split..]);
            Assert.Equal(Framing.Status.Frame, Framing.TryReadFrame(ref buffer, 100, out var first, out _));
            Assert.Equal(new byte[] { 1, 2, 3 }, first.ToArray());
            Assert.Equal(Framing.Status.Frame, Framing.TryReadFrame(ref buffer, 100, out var second, out _));
            Assert.Equal(new byte[] { 9 }, second.ToArray());
            Assert.Equal(Framing.Status.NeedMore, Framing.TryReadFrame(ref buffer, 100, out _, out _));
        }
    }

    [Fact]
    public void A_partial_frame_needs_more()
    {
        var buffer = new ReadOnlySequence<byte>(new byte[] { 0, 0, 0, 5, 1, 2 });
        Assert.Equal(Framing.Status.NeedMore, Framing.TryReadFrame(ref buffer, 100, out _, out _));
        Assert.Equal(6, buffer.Length);
    }

    private static ReadOnlySequence<byte> SequenceOf(byte[] a, byte[] b)
    {
        var first = new Segment(a, 0);
        var last = first.Append(b);
        return new ReadOnlySequence<byte>(first, 0, last, b.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(byte[] memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
