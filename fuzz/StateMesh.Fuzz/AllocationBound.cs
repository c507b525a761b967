namespace StateMesh.Fuzz;

/// <summary>
/// "No input makes the node allocate more than a small multiple of its size": each target measures the bytes its
/// parser allocates on this thread and fails when they exceed <see cref="PerInputByte"/> bytes per input byte plus
/// <see cref="Fixed"/> bytes: what the costliest input of a bounded shape costs whatever its size (a record path of
/// RecordPath.MaxTokens steps that creates each of them is about 32 KB).
/// </summary>
internal static class AllocationBound
{
    public const int PerInputByte = 64;
    public const int Fixed = 64 * 1024;

    /// <summary>The most one measured call allocated since the last reset (for <c>measure</c>).</summary>
    public static long Largest { get; set; }

    public static long Limit(int inputLength) => (long)PerInputByte * inputLength + Fixed;

    /// <summary>Runs <paramref name="run"/> and throws when it allocated more than the bound; returns what it allocated.</summary>
    public static long Check<TState>(TState state, Action<TState> run, int inputLength, string what)
    {
        var allocated = Measure(state, run);
        if (allocated <= Limit(inputLength))
        {
            Largest = Math.Max(Largest, allocated);
            return allocated;
        }
        // A path reached for the first time may initialise statics (caches, encodings): only a second run counts.
        allocated = Measure(state, run);
        if (allocated > Limit(inputLength))
        {
            throw new AllocationBoundExceededException(
                $"{what} allocated {allocated} bytes for an input of {inputLength} bytes; the bound is {PerInputByte} x {inputLength} + {Fixed} = {Limit(inputLength)}");
        }
        Largest = Math.Max(Largest, allocated);
        return allocated;
    }

    public static long Measure<TState>(TState state, Action<TState> run)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        run(state);
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }
}

/// <summary>An input made a parser allocate more than <see cref="AllocationBound"/> allows.</summary>
internal sealed class AllocationBoundExceededException(string message) : Exception(message);

/// <summary>A parser broke one of its own invariants on an input (two ways of reading it disagreed, a round trip changed it).</summary>
internal sealed class InvariantBrokenException(string message) : Exception(message);
