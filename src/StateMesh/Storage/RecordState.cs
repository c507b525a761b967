namespace StateMesh.Storage;

/// <summary>A record's version and its data: UTF-8 JSON of an object or an array. Immutable.</summary>
/// <param name="Version">0 when created empty, then one more per write.</param>
/// <param name="Data">The JSON bytes; never modified once stored.</param>
public readonly record struct RecordState(int Version, ReadOnlyMemory<byte> Data)
{
    /// <summary>A record as it is created: version 0, <c>{}</c>.</summary>
    public static RecordState Empty { get; } = new(0, "{}"u8.ToArray());

    /// <summary>The same version and the same bytes (at once when both are the same memory, as a store's own state is).</summary>
    public bool IsSameAs(RecordState other) =>
        Version == other.Version && (Data.Equals(other.Data) || Data.Span.SequenceEqual(other.Data.Span));
}

/// <summary>The outcome of a compare-and-set.</summary>
/// <param name="Succeeded">True when the write was applied.</param>
/// <param name="Current">On failure, what the store holds now (null when the record does not exist).</param>
public readonly record struct CompareAndSetResult(bool Succeeded, RecordState? Current);

/// <summary>
/// The authoritative current version and data of live records. In one process it is memory; in a cluster a shared
/// store whose compare-and-set is one atomic step, so that two nodes can never both accept version N.
/// </summary>
public interface IRecordStore
{
    /// <summary>The record's state, or null when the store does not hold it (it may still be in storage).</summary>
    ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// Stores <paramref name="next"/> only if the record is <paramref name="expected"/>, its version and its data
    /// (null: only if the store does not hold the record). Comparing the data too is what lets a node build a write on
    /// one of its own that the store has not answered yet: if another node took that version, the data differs and the
    /// write fails, even when the versions match. A store answers the compare-and-sets of one caller in call order.
    /// </summary>
    ValueTask<CompareAndSetResult> CompareAndSetAsync(string name, RecordState? expected, RecordState next, CancellationToken cancellationToken);

    /// <summary>Forgets the record (deleted, or invalidated so that the next read goes to storage).</summary>
    ValueTask RemoveAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// The newest state that is durable and may be shown to readers: never a write still on its way to storage, which
    /// <see cref="GetAsync"/> may return (ADR 0005). Null when the store holds no shown state for the record.
    /// </summary>
    ValueTask<RecordState?> GetShownAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// Marks <paramref name="state"/> durable: <see cref="GetShownAsync"/> returns it from now on, unless a newer
    /// version is marked (an older one never replaces a newer one), or the record is removed.
    /// </summary>
    ValueTask MarkShownAsync(string name, RecordState state, CancellationToken cancellationToken);

    /// <summary>
    /// This node no longer needs the record in its memory (nobody here subscribes and it is durable). A store in the
    /// node's memory lets it go; a store shared by the cluster keeps it for the other nodes.
    /// </summary>
    ValueTask ForgetAsync(string name, CancellationToken cancellationToken);
}

/// <summary>The durable copy of records. Writes complete only once durable; writes to one record apply in call order.</summary>
public interface IRecordStorage
{
    /// <summary>The stored state, or null when the record is not stored.</summary>
    ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken);

    /// <summary>Stores the state; completes once it is durable.</summary>
    ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken);

    /// <summary>Deletes the record; completes once the deletion is durable.</summary>
    ValueTask DeleteAsync(string name, CancellationToken cancellationToken);
}
