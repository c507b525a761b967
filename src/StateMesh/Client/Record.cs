using System.Reactive.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using StateMesh.Protocol;

namespace StateMesh.Client;

internal sealed class Record<T>(RecordsClient records, RecordEntry entry, JsonTypeInfo<T> info) : IRecord<T>
{
    private int _disposed;

    public string Name => entry.Name;

    public int Version
    {
        get { lock (entry.Gate) { return entry.Version; } }
    }

    public T? Value
    {
        get
        {
            byte[] json;
            lock (entry.Gate) { json = entry.Json; }
            return Deserialize(json, info);
        }
    }

    public JsonNode? Data
    {
        get { lock (entry.Gate) { return entry.ParseData(); } }
    }

    public bool HasProvider
    {
        get { lock (entry.Gate) { return entry.HasProvider; } }
    }

    public bool Exists
    {
        get { lock (entry.Gate) { return !entry.Deleted; } }
    }

    public MergeStrategy MergeStrategy
    {
        get => entry.MergeStrategy ?? MergeStrategy.RemoteWins;
        set => entry.MergeStrategy = value;
    }

    internal RecordEntry Entry => entry;

    public IObservable<T> Changes => ChangesOf(entry, info);

    /// <summary>The current value first, then each change, in order (emissions happen under the entry's gate).</summary>
    internal static IObservable<T> ChangesOf(RecordEntry entry, JsonTypeInfo<T> info) => Observable.Create<T>(observer =>
    {
        lock (entry.Gate)
        {
            if (entry.Deleted)
            {
                observer.OnCompleted();
                return System.Reactive.Disposables.Disposable.Empty;
            }
            if (entry.Ready && TryDeserialize(entry.Json, info, out var current))
            {
                observer.OnNext(current);
            }
            return entry.Changed.Subscribe(
                json =>
                {
                    if (TryDeserialize(json, info, out var value))
                    {
                        observer.OnNext(value);
                    }
                },
                observer.OnError,
                observer.OnCompleted);
        }
    });

    private static bool TryDeserialize(byte[] json, JsonTypeInfo<T> info, out T value)
    {
        try
        {
            value = JsonSerializer.Deserialize(json, info)!;
            return true;
        }
        catch (JsonException)
        {
            value = default!;
            return false;
        }
    }

    private static T? Deserialize(byte[] json, JsonTypeInfo<T> info) => TryDeserialize(json, info, out var value) ? value : default;

    public IObservable<TValue?> Observe<TValue>(string path)
    {
        var tokens = RecordsClient.ParsePath(path);
        var valueInfo = (JsonTypeInfo<TValue>)info.Options.GetTypeInfo(typeof(TValue));
        return Record<JsonNode>.ChangesOf(entry, (JsonTypeInfo<JsonNode>)info.Options.GetTypeInfo(typeof(JsonNode)))
            .Select(node => RecordsClient.ValueAt(node, tokens, valueInfo));
    }

    private byte[] SerializeWhole(T value)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(value, info);
        if (json is not [(byte)'{', ..] and not [(byte)'[', ..])
        {
            throw new ArgumentException("A record's whole value must serialize to a JSON object or array.", nameof(value));
        }
        return json;
    }

    public Task SetAsync(T value, CancellationToken cancellationToken = default)
    {
        records.Write(entry, RecordAction.Update, null, SerializeWhole(value), false, out var sent);
        return sent;
    }

    public Task SetAsync<TValue>(string path, TValue value, CancellationToken cancellationToken = default)
    {
        records.Write(entry, RecordAction.Patch, path, records.Serialize(value), false, out var sent);
        return sent;
    }

    public Task EraseAsync(string path, CancellationToken cancellationToken = default)
    {
        records.Write(entry, RecordAction.Erase, path, null, false, out var sent);
        return sent;
    }

    public async Task<RecordWriteResult> SetWithAckAsync(T value, CancellationToken cancellationToken = default)
    {
        var result = records.Write(entry, RecordAction.Update, null, SerializeWhole(value), true, out var sent)!;
        await sent.ConfigureAwait(false);
        return await result.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<RecordWriteResult> SetWithAckAsync<TValue>(string path, TValue value, CancellationToken cancellationToken = default)
    {
        var result = records.Write(entry, RecordAction.Patch, path, records.Serialize(value), true, out var sent)!;
        await sent.ConfigureAwait(false);
        return await result.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<RecordWriteResult> EraseWithAckAsync(string path, CancellationToken cancellationToken = default)
    {
        var result = records.Write(entry, RecordAction.Erase, path, null, true, out var sent)!;
        await sent.ConfigureAwait(false);
        return await result.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public Task DeleteAsync(CancellationToken cancellationToken = default) => records.DeleteAsync(entry, cancellationToken);

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            records.Release(entry);
        }
        return ValueTask.CompletedTask;
    }
}

internal sealed class RecordList(Record<JsonNode> record) : IRecordList
{
    public string Name => record.Name;

    public IReadOnlyList<string> Entries => ToEntries(record.Data);

    public IObservable<IReadOnlyList<string>> Changes => record.Changes.Select(ToEntries);

    private static IReadOnlyList<string> ToEntries(JsonNode? data) =>
        data is JsonArray array ? [.. array.Select(e => e?.GetValueKind() == JsonValueKind.String ? e.GetValue<string>() : null).OfType<string>()] : [];

    private Task Write(List<string> entries) => record.SetAsync(new JsonArray([.. entries.Select(e => (JsonNode?)JsonValue.Create(e))]));

    public Task AddAsync(string entry, int? index = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(entry);
        var entries = Entries.ToList();
        if (index is { } i && i >= 0 && i <= entries.Count)
        {
            entries.Insert(i, entry);
        }
        else
        {
            entries.Add(entry);
        }
        return Write(entries);
    }

    public Task RemoveAsync(string entry, CancellationToken cancellationToken = default)
    {
        var entries = Entries.ToList();
        entries.RemoveAll(e => e == entry);
        return Write(entries);
    }

    public Task MoveAsync(string entry, int index, CancellationToken cancellationToken = default)
    {
        var entries = Entries.ToList();
        if (!entries.Remove(entry))
        {
            throw new ArgumentException($"'{entry}' is not in list '{Name}'.", nameof(entry));
        }
        entries.Insert(Math.Clamp(index, 0, entries.Count), entry);
        return Write(entries);
    }

    public Task SetEntriesAsync(IEnumerable<string> entries, CancellationToken cancellationToken = default) => Write([.. entries]);

    public ValueTask DisposeAsync() => record.DisposeAsync();
}

internal sealed class AnonymousRecord<T>(RecordsClient records) : IAnonymousRecord<T>
{
    private readonly System.Reactive.Subjects.BehaviorSubject<IObservable<T>> _current = new(Observable.Never<T>());
    private readonly SemaphoreSlim _switch = new(1, 1);
    private IRecord<T>? _record;

    public string? Name => _record?.Name;

    public T? Value => _record is { } r ? r.Value : default;

    public IObservable<T> Changes => _current.Switch();

    public async Task SetNameAsync(string name, CancellationToken cancellationToken = default)
    {
        await _switch.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var next = await records.GetAsync<T>(name, cancellationToken).ConfigureAwait(false);
            var previous = _record;
            _record = next;
            _current.OnNext(next.Changes);
            if (previous is not null)
            {
                await previous.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _switch.Release();
        }
    }

    public Task SetAsync(T value, CancellationToken cancellationToken = default) =>
        (_record ?? throw new InvalidOperationException("The anonymous record points at no record yet: call SetNameAsync first.")).SetAsync(value, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        _current.OnNext(Observable.Never<T>());
        if (_record is not null)
        {
            await _record.DisposeAsync().ConfigureAwait(false);
        }
    }
}
