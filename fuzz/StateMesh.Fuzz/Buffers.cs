using System.Buffers;
using System.IO.Pipelines;

namespace StateMesh.Fuzz;

/// <summary>A reusable segment, so that a multi-segment sequence costs nothing per input.</summary>
internal sealed class Segment : ReadOnlySequenceSegment<byte>
{
    public Segment Set(ReadOnlyMemory<byte> memory, long runningIndex, Segment? next)
    {
        Memory = memory;
        RunningIndex = runningIndex;
        Next = next;
        return this;
    }
}

/// <summary>
/// The input bytes as a sequence of <c>chunk</c>-byte segments over one buffer, built from pooled segments: what a
/// pipe hands a reader when bytes arrive in pieces.
/// </summary>
internal sealed class SegmentedInput
{
    private readonly List<Segment> _pool = [];
    private byte[] _buffer = new byte[4096];
    private int _chunk;

    public int Length { get; private set; }

    public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, Length);

    public void Load(ReadOnlySpan<byte> input)
    {
        if (_buffer.Length < input.Length)
        {
            _buffer = new byte[Math.Max(input.Length, _buffer.Length * 2)];
        }
        input.CopyTo(_buffer);
        Length = input.Length;
    }

    /// <summary>Splits the loaded bytes into segments of <paramref name="chunk"/> bytes (at least one segment).</summary>
    public void Segment(int chunk)
    {
        _chunk = Math.Max(1, chunk);
        var count = Math.Max(1, (Length + _chunk - 1) / _chunk);
        while (_pool.Count < count)
        {
            _pool.Add(new Segment());
        }
        for (var i = count - 1; i >= 0; i--)
        {
            var start = i * _chunk;
            var length = Math.Min(_chunk, Length - start);
            _pool[i].Set(_buffer.AsMemory(start, Math.Max(0, length)), start, i + 1 < count ? _pool[i + 1] : null);
        }
        SegmentCount = count;
    }

    public int SegmentCount { get; private set; }

    /// <summary>Bytes [from, to) of the input as a sequence over the segments.</summary>
    public ReadOnlySequence<byte> Slice(long from, long to)
    {
        var (first, firstIndex) = Locate(from, atEnd: false);
        var (last, lastIndex) = Locate(to, atEnd: true);
        return new ReadOnlySequence<byte>(first, firstIndex, last, lastIndex);
    }

    public static long Offset(SequencePosition position) => ((Segment)position.GetObject()!).RunningIndex + position.GetInteger();

    private (Segment Segment, int Index) Locate(long position, bool atEnd)
    {
        var i = (int)(position / _chunk);
        if (atEnd && position > 0 && position % _chunk == 0)
        {
            i--; // the end of a segment, not the start of the next
        }
        i = Math.Clamp(i, 0, SegmentCount - 1);
        return (_pool[i], (int)(position - (long)i * _chunk));
    }
}

/// <summary>A connection's bytes in: delivers the input <c>chunk</c> bytes more per read, then completes.</summary>
internal sealed class ChunkedPipeReader(SegmentedInput input) : PipeReader
{
    private long _consumed, _examined, _available;
    private int _chunk;

    public void Reset(int chunk)
    {
        _chunk = Math.Max(1, chunk);
        input.Segment(_chunk);
        _consumed = _examined = _available = 0;
    }

    public override bool TryRead(out ReadResult result)
    {
        if (_examined >= _available && _available < input.Length)
        {
            _available = Math.Min(input.Length, _available + _chunk);
        }
        result = new ReadResult(input.Slice(_consumed, _available), isCanceled: false, isCompleted: _available == input.Length);
        return true;
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        TryRead(out var result);
        return new ValueTask<ReadResult>(result);
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        _consumed = SegmentedInput.Offset(consumed);
        _examined = Math.Max(_consumed, SegmentedInput.Offset(examined));
    }

    public override void CancelPendingRead()
    {
    }

    public override void Complete(Exception? exception = null)
    {
    }
}

/// <summary>Keeps what is written (reused from input to input); flushes complete at once.</summary>
internal sealed class RecordingPipeWriter : PipeWriter
{
    private byte[] _buffer = new byte[4096];

    public int Written { get; private set; }

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, Written);

    public void Reset() => Written = 0;

    public override void Advance(int bytes) => Written += bytes;

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(Written);
    }

    public override Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(Written);
    }

    public void Write(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(GetSpan(bytes.Length));
        Advance(bytes.Length);
    }

    private void Ensure(int sizeHint)
    {
        var needed = Written + Math.Max(sizeHint, 1);
        if (needed > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(needed, _buffer.Length * 2));
        }
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) =>
        new(new FlushResult(isCanceled: false, isCompleted: false));

    public override void CancelPendingFlush()
    {
    }

    public override void Complete(Exception? exception = null)
    {
    }
}
