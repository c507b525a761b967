using System.Buffers;
using System.Buffers.Binary;

namespace StateMesh.Transport;

/// <summary>Length-prefixed frames: a 4-byte big-endian length, then the frame.</summary>
internal static class Framing
{
    public const int HeaderLength = 4;

    public enum Status { Frame, NeedMore, TooLarge }

    /// <summary>
    /// Takes one frame off the front of <paramref name="buffer"/>. The size limit is checked on the header,
    /// before the body is buffered.
    /// </summary>
    public static Status TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxFrameLength, out ReadOnlySequence<byte> frame, out long declaredLength)
    {
        frame = default;
        declaredLength = 0;
        if (buffer.Length < HeaderLength)
        {
            return Status.NeedMore;
        }
        Span<byte> header = stackalloc byte[HeaderLength];
        buffer.Slice(0, HeaderLength).CopyTo(header);
        declaredLength = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (declaredLength > maxFrameLength)
        {
            return Status.TooLarge;
        }
        if (buffer.Length < HeaderLength + declaredLength)
        {
            return Status.NeedMore;
        }
        frame = buffer.Slice(HeaderLength, declaredLength);
        buffer = buffer.Slice(frame.End);
        return Status.Frame;
    }

    public static void WriteHeader(IBufferWriter<byte> output, int length)
    {
        var span = output.GetSpan(HeaderLength);
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)length);
        output.Advance(HeaderLength);
    }
}
