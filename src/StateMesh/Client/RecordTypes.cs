using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;

namespace StateMesh.Client;

/// <summary>Records: named JSON documents with versions, observed and changed by every client.</summary>
public interface IRecordsClient
{
    /// <summary>The record's value now and after every change. The first observer subscribes; the last to dispose unsubscribes.</summary>
    IObservable<T> Observe<T>(string name, JsonTypeInfo<T>? typeInfo = null);

    /// <summary>The value at <paramref name="path"/> (for example <c>address.city</c>) now and after every change of the record.</summary>
    IObservable<T?> Observe<T>(string name, string path, JsonTypeInfo<T>? typeInfo = null);

    /// <summary>Subscribes to the record (creating it at version 0 as <c>{}</c> if missing) and returns a handle once it is loaded.</summary>
    Task<IRecord<T>> GetAsync<T>(string name, CancellationToken cancellationToken = default);

    /// <summary>Reads the record once without subscribing; null when it does not exist.</summary>
    Task<RecordSnapshot<T>?> SnapshotAsync<T>(string name, CancellationToken cancellationToken = default);

    /// <summary>The record's version, or -1 when it does not exist.</summary>
    Task<int> HeadAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>True when the record exists.</summary>
    Task<bool> HasAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Writes the whole record without subscribing (created if missing). Completes once sent.</summary>
    Task SetDataAsync<T>(string name, T value, CancellationToken cancellationToken = default);

    /// <summary>Writes one path of a record without subscribing (created if missing). Completes once sent.</summary>
    Task SetDataAsync<T>(string name, string path, T value, CancellationToken cancellationToken = default);

    /// <summary>Writes the whole record without subscribing and waits until the node has stored it durably.</summary>
    Task<RecordWriteResult> SetDataWithAckAsync<T>(string name, T value, CancellationToken cancellationToken = default);

    /// <summary>Writes one path without subscribing and waits until the node has stored it durably.</summary>
    Task<RecordWriteResult> SetDataWithAckAsync<T>(string name, string path, T value, CancellationToken cancellationToken = default);

    /// <summary>Tells the node that these records were changed in storage by someone else: it re-reads them and pushes the change.</summary>
    Task NotifyAsync(IEnumerable<string> names, CancellationToken cancellationToken = default);

    /// <summary>A list: a record holding an array of record names.</summary>
    Task<IRecordList> GetListAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>A handle whose underlying record can be switched by name.</summary>
    IAnonymousRecord<T> CreateAnonymous<T>();

    /// <summary>
    /// Offers of record names matching <paramref name="pattern"/> (a regular expression) that gained subscribers: accept
    /// to become their provider (subscribers hear SUBSCRIPTION_HAS_PROVIDER). Listens again after a reconnect.
    /// </summary>
    IObservable<ListenOffer> Listen(string pattern);
}

/// <summary>A subscribed record. Dispose releases it; the last release unsubscribes.</summary>
public interface IRecord<T> : IAsyncDisposable
{
    /// <summary>The record's name.</summary>
    string Name { get; }

    /// <summary>The current version (0 when created empty).</summary>
    int Version { get; }

    /// <summary>The current value.</summary>
    T? Value { get; }

    /// <summary>The current data as JSON.</summary>
    JsonNode? Data { get; }

    /// <summary>False once the record was deleted.</summary>
    bool Exists { get; }

    /// <summary>True while a listening client provides this record (it accepted a listen offer for it).</summary>
    bool HasProvider { get; }

    /// <summary>How conflicts are resolved for this record (the client's default unless set).</summary>
    MergeStrategy MergeStrategy { get; set; }

    /// <summary>The value now and after every change (local or remote). Completes when the record is deleted.</summary>
    IObservable<T> Changes { get; }

    /// <summary>The value at a path now and after every change.</summary>
    IObservable<TValue?> Observe<TValue>(string path);

    /// <summary>Sets the whole value (applied locally at once). Completes once sent.</summary>
    Task SetAsync(T value, CancellationToken cancellationToken = default);

    /// <summary>Sets a path (applied locally at once). Completes once sent.</summary>
    Task SetAsync<TValue>(string path, TValue value, CancellationToken cancellationToken = default);

    /// <summary>Erases a path. Completes once sent.</summary>
    Task EraseAsync(string path, CancellationToken cancellationToken = default);

    /// <summary>Sets the whole value and waits until it is durable; a conflict is a result, not an exception.</summary>
    Task<RecordWriteResult> SetWithAckAsync(T value, CancellationToken cancellationToken = default);

    /// <summary>Sets a path and waits until it is durable.</summary>
    Task<RecordWriteResult> SetWithAckAsync<TValue>(string path, TValue value, CancellationToken cancellationToken = default);

    /// <summary>Erases a path and waits until it is durable.</summary>
    Task<RecordWriteResult> EraseWithAckAsync(string path, CancellationToken cancellationToken = default);

    /// <summary>Deletes the record for everyone; completes when the node confirms.</summary>
    Task DeleteAsync(CancellationToken cancellationToken = default);
}

/// <summary>A record read once.</summary>
/// <param name="Name">The record name.</param>
/// <param name="Version">Its version.</param>
/// <param name="Value">Its value.</param>
public sealed record RecordSnapshot<T>(string Name, int Version, T Value);

/// <summary>The outcome of a write that asked for an acknowledgement.</summary>
public sealed record RecordWriteResult
{
    /// <summary>True when the node stored the write durably.</summary>
    public bool Succeeded { get; init; }

    /// <summary>Set when another write won: what the node holds, and what the merge strategy did about it.</summary>
    public RecordConflict? Conflict { get; init; }

    /// <summary>Set when the node refused the write for another reason (the error action and its description).</summary>
    public string? Error { get; init; }
}

/// <summary>A write that lost to another: the node's version and data at that moment.</summary>
/// <param name="RemoteVersion">The node's version.</param>
/// <param name="RemoteData">The node's data.</param>
/// <param name="Resolution">What the merge strategy did.</param>
public sealed record RecordConflict(int RemoteVersion, JsonNode? RemoteData, ConflictResolution Resolution);

/// <summary>What happened after a conflict.</summary>
public enum ConflictResolution
{
    /// <summary>The node's data was adopted.</summary>
    AdoptedRemote,
    /// <summary>The merged (or local) data was written again on top of the node's version.</summary>
    Rewrote,
}

/// <summary>What a merge function sees.</summary>
/// <param name="Name">The record.</param>
/// <param name="Local">The client's data (with its unconfirmed write).</param>
/// <param name="Remote">The node's data.</param>
/// <param name="RemoteVersion">The node's version.</param>
public sealed record MergeContext(string Name, JsonNode? Local, JsonNode? Remote, int RemoteVersion);

/// <summary>How a record resolves a conflict between the client's write and the node's newer version.</summary>
public sealed class MergeStrategy
{
    private MergeStrategy(Func<MergeContext, JsonNode?> merge, string name)
    {
        Merge = merge;
        _name = name;
    }

    private readonly string _name;

    internal Func<MergeContext, JsonNode?> Merge { get; }

    /// <summary>The node's version wins; the local write is dropped (deepstream's default).</summary>
    public static MergeStrategy RemoteWins { get; } = new(c => c.Remote?.DeepClone(), nameof(RemoteWins));

    /// <summary>The local data wins; it is written again on top of the node's version.</summary>
    public static MergeStrategy LocalWins { get; } = new(c => c.Local?.DeepClone(), nameof(LocalWins));

    /// <summary>A function decides: return the node's data to adopt it, anything else to write it on top.</summary>
    public static MergeStrategy Custom(Func<MergeContext, JsonNode?> merge) => new(merge, "Custom");

    /// <inheritdoc />
    public override string ToString() => _name;
}

/// <summary>A record that holds an array of record names.</summary>
public interface IRecordList : IAsyncDisposable
{
    /// <summary>The list's record name.</summary>
    string Name { get; }

    /// <summary>The entries now.</summary>
    IReadOnlyList<string> Entries { get; }

    /// <summary>The entries now and after every change.</summary>
    IObservable<IReadOnlyList<string>> Changes { get; }

    /// <summary>Adds an entry at the end, or at <paramref name="index"/>.</summary>
    Task AddAsync(string entry, int? index = null, CancellationToken cancellationToken = default);

    /// <summary>Removes every occurrence of an entry.</summary>
    Task RemoveAsync(string entry, CancellationToken cancellationToken = default);

    /// <summary>Moves an entry to <paramref name="index"/>.</summary>
    Task MoveAsync(string entry, int index, CancellationToken cancellationToken = default);

    /// <summary>Replaces all entries.</summary>
    Task SetEntriesAsync(IEnumerable<string> entries, CancellationToken cancellationToken = default);
}

/// <summary>A handle that follows whichever record it is pointed at.</summary>
public interface IAnonymousRecord<T> : IAsyncDisposable
{
    /// <summary>The record it points at, if any.</summary>
    string? Name { get; }

    /// <summary>The value of the current record.</summary>
    T? Value { get; }

    /// <summary>Values of whichever record is current, switching when the name changes.</summary>
    IObservable<T> Changes { get; }

    /// <summary>Points the handle at another record (released the previous one).</summary>
    Task SetNameAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Sets the current record's value.</summary>
    Task SetAsync(T value, CancellationToken cancellationToken = default);
}
