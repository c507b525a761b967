using System.Collections.Concurrent;

namespace StateMesh.Storage;

/// <summary>
/// Records held in this process's memory: the store of a single node (or of the nodes of one process that share it,
/// with an <see cref="Cluster.InProcessClusterHub"/>).
/// </summary>
public sealed class MemoryRecordStore : IRecordStore
{
    private readonly ConcurrentDictionary<string, RecordState> _records = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RecordState> _shown = new(StringComparer.Ordinal);

    /// <summary>How many records the store holds.</summary>
    public int Count => _records.Count;

    /// <inheritdoc />
    public ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken) =>
        ValueTask.FromResult<RecordState?>(_records.TryGetValue(name, out var state) ? state : null);

    /// <inheritdoc />
    public ValueTask<CompareAndSetResult> CompareAndSetAsync(string name, RecordState? expected, RecordState next, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_records.TryGetValue(name, out var current))
            {
                if (expected is not { } e || !current.IsSameAs(e))
                {
                    return ValueTask.FromResult(new CompareAndSetResult(false, current));
                }
                if (_records.TryUpdate(name, next, current))
                {
                    return ValueTask.FromResult(new CompareAndSetResult(true, null));
                }
            }
            else
            {
                if (expected is not null)
                {
                    return ValueTask.FromResult(new CompareAndSetResult(false, null));
                }
                if (_records.TryAdd(name, next))
                {
                    return ValueTask.FromResult(new CompareAndSetResult(true, null));
                }
            }
        }
    }

    /// <inheritdoc />
    public ValueTask RemoveAsync(string name, CancellationToken cancellationToken)
    {
        _records.TryRemove(name, out _);
        _shown.TryRemove(name, out _);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<RecordState?> GetShownAsync(string name, CancellationToken cancellationToken) =>
        ValueTask.FromResult<RecordState?>(_shown.TryGetValue(name, out var state) ? state : null);

    /// <inheritdoc />
    public ValueTask MarkShownAsync(string name, RecordState state, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (!_records.ContainsKey(name))
            {
                return ValueTask.CompletedTask; // removed meanwhile: nothing to show
            }
            if (_shown.TryGetValue(name, out var current))
            {
                if (current.Version >= state.Version || _shown.TryUpdate(name, state, current))
                {
                    return ValueTask.CompletedTask;
                }
            }
            else if (_shown.TryAdd(name, state))
            {
                return ValueTask.CompletedTask;
            }
        }
    }

    /// <inheritdoc />
    public ValueTask ForgetAsync(string name, CancellationToken cancellationToken) => RemoveAsync(name, cancellationToken);
}

/// <summary>Storage in memory: for tests, and for nodes that need no durability.</summary>
public sealed class MemoryRecordStorage : IRecordStorage
{
    private readonly ConcurrentDictionary<string, RecordState> _records = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken) =>
        ValueTask.FromResult<RecordState?>(_records.TryGetValue(name, out var state) ? state : null);

    /// <inheritdoc />
    public ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken)
    {
        _records[name] = state;
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask DeleteAsync(string name, CancellationToken cancellationToken)
    {
        _records.TryRemove(name, out _);
        return ValueTask.CompletedTask;
    }
}
