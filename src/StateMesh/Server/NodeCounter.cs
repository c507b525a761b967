namespace StateMesh.Server;

/// <summary>A count of something the whole node holds, with its bound: taking past the bound fails and changes nothing.</summary>
internal sealed class NodeCounter(int max)
{
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public int Max => max;

    public bool TryTake()
    {
        if (Interlocked.Increment(ref _count) <= max)
        {
            return true;
        }
        Interlocked.Decrement(ref _count);
        return false;
    }

    /// <summary>Counts one past the bound check (for what is already held and must be counted).</summary>
    public void Add() => Interlocked.Increment(ref _count);

    public void Release(int count = 1) => Interlocked.Add(ref _count, -count);
}

/// <summary>The node-wide bounds of <see cref="LimitOptions"/>, counted.</summary>
internal sealed class NodeLimits(LimitOptions options)
{
    public NodeCounter Subscriptions { get; } = new(options.SubscriptionsPerNode);

    public NodeCounter ListenPatterns { get; } = new(options.ListenPatternsPerNode);

    public NodeCounter ProvidedNames { get; } = new(options.ProvidedNamesPerNode);

    public NodeCounter PendingRpcs { get; } = new(options.PendingRpcsPerNode);

    public NodeCounter Unauthenticated { get; } = new(options.UnauthenticatedConnections);
}

/// <summary>
/// A token bucket over the names a connection's messages carry (subscribe, listen, provide, presence queries and their
/// opposites): it fills at <c>rate</c> names per second up to <c>burst</c>. A message that takes more than is there
/// makes its connection wait, before the node does any of the message's work, until the bucket has caught up; its read
/// loop stops meanwhile, so the sender is slowed by TCP itself and nobody else waits. Touched only by the read loop.
/// </summary>
internal sealed class NameRate(double rate, double burst, TimeProvider time)
{
    private readonly double _burst = burst;
    private double _tokens = burst;
    private long _at = time.GetTimestamp();

    /// <summary>Takes <paramref name="names"/> (at most one burst) and returns how long the connection must wait first.</summary>
    public TimeSpan Take(int names)
    {
        var now = time.GetTimestamp();
        _tokens = Math.Min(_burst, _tokens + (now - _at) * rate / time.TimestampFrequency);
        _at = now;
        _tokens -= Math.Min(names, _burst);
        return _tokens >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_tokens / rate);
    }
}
