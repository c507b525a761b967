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
