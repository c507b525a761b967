using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using StateMesh.Diagnostics;
using StateMesh.Protocol;
using StateMesh.Server;
using StateMesh.Storage;

namespace StateMesh.Records;

/// <summary>
/// Records on a node: subscribe and read, head, snapshot, versioned writes (whole, path, erase, upsert) with write
/// acknowledgements once durable, delete, and notify. Writes to one record are serialised by a striped lock (different
/// records proceed in parallel); a write's broadcast happens under that lock, so every subscriber sees versions in order.
/// </summary>
internal sealed class RecordsTopic
{
    private const int Stripes = 1024;
    private static readonly JsonNodeOptions NodeOptions = new() { PropertyNameCaseInsensitive = false };
    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 64 };

    private readonly NodeEngine _node;
    private readonly IRecordStore _store;
    private readonly IRecordStorage _storage;
    private readonly RecordOptions _options;
    private readonly SemaphoreSlim[] _locks = new SemaphoreSlim[Stripes];

    public RecordsTopic(NodeEngine node, IRecordStore store, IRecordStorage storage)
    {
        _node = node;
        _store = store;
        _storage = storage;
        _options = node.Options.Records;
        Listening = new Listening.ListenRegistry(node, Topic.Record, () => Registry);
        for (var i = 0; i < Stripes; i++)
        {
            _locks[i] = new SemaphoreSlim(1, 1);
        }
    }

    public SubscriptionRegistry Registry { get; } = new();

    public Listening.ListenRegistry Listening { get; }

    private SemaphoreSlim LockFor(string name) => _locks[(name.GetHashCode(StringComparison.Ordinal) & 0x7fffffff) % Stripes];

    /// <summary>Takes the record's stripe lock; dispose to release it.</summary>
    private async ValueTask<Held> LockAsync(string name)
    {
        var gate = LockFor(name);
        await gate.WaitAsync().ConfigureAwait(false);
        return new Held(gate);
    }

    private readonly struct Held(SemaphoreSlim gate) : IDisposable
    {
        public void Dispose() => gate.Release();
    }

    public ValueTask HandleAsync(Session session, Message message)
    {
        switch ((RecordAction)message.Action)
        {
            case RecordAction.SubscribeCreateAndRead:
                return SubscribeAndReadAsync(session, message, create: true);
            case RecordAction.SubscribeAndRead:
                return SubscribeAndReadAsync(session, message, create: false);
            case RecordAction.SubscribeAndHead:
                return SubscribeAndHeadAsync(session, message);
            case RecordAction.Subscribe:
            case RecordAction.Unsubscribe:
                SubscribeBulk(session, message);
                return ValueTask.CompletedTask;
            case RecordAction.Read:
            case RecordAction.Head:
                return ReadAsync(session, message);
            case RecordAction.Update:
            case RecordAction.Patch:
            case RecordAction.Erase:
            case RecordAction.CreateAndUpdate:
            case RecordAction.CreateAndPatch:
                return WriteAsync(session, message);
            case RecordAction.Delete:
                return DeleteAsync(session, message);
            case RecordAction.Notify:
                return NotifyAsync(session, message);
            case RecordAction.Listen:
                Listening.Listen(session, message);
                return ValueTask.CompletedTask;
            case RecordAction.Unlisten:
                Listening.Unlisten(session, message);
                return ValueTask.CompletedTask;
            case RecordAction.ListenAccept:
            case RecordAction.ListenReject:
                Listening.Respond(session, message, message.Action == (int)RecordAction.ListenAccept);
                return ValueTask.CompletedTask;
            default:
                _node.UnknownAction(session, message);
                return ValueTask.CompletedTask;
        }
    }

    private static string[]? NamesOf(Message message) => message.Names is { Length: > 0 } names ? names : message.Name is { Length: > 0 } name ? [name] : null;

    private bool IsExcluded(string name)
    {
        foreach (var prefix in _options.StorageExclusionPrefixes)
        {
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    private readonly record struct Loaded(RecordState? State, RecordAction? Error, string? Description);

    /// <summary>Store first, then storage (promoting what it finds), each under its own timeout.</summary>
    private async ValueTask<Loaded> LoadAsync(string name)
    {
        var fromStore = await ReadAsync(_store.GetAsync(name, CancellationToken.None), name, _options.CacheRetrievalTimeout, RecordAction.CacheRetrievalTimeout, "the record store").ConfigureAwait(false);
        if (fromStore.Error is not null || fromStore.State is not null || IsExcluded(name))
        {
            return fromStore;
        }
        var fromStorage = await ReadAsync(_storage.GetAsync(name, CancellationToken.None), name, _options.StorageRetrievalTimeout, RecordAction.StorageRetrievalTimeout, "storage").ConfigureAwait(false);
        if (fromStorage.Error is not null)
        {
            return fromStorage;
        }
        var state = fromStorage.State;
        if (state is { } found)
        {
            var promoted = await _store.CompareAndSetAsync(name, -1, found, CancellationToken.None).ConfigureAwait(false);
            if (!promoted.Succeeded && promoted.Current is { } current)
            {
                state = current;
            }
        }
        return new Loaded(state, null, null);
    }

    /// <summary>One read, bounded in time; a timeout and a failure are different errors.</summary>
    private async ValueTask<Loaded> ReadAsync(ValueTask<RecordState?> pending, string name, TimeSpan timeout, RecordAction timeoutError, string source)
    {
        try
        {
            var state = pending.IsCompletedSuccessfully ? pending.Result : await pending.AsTask().WaitAsync(timeout, _node.Time).ConfigureAwait(false);
            return new Loaded(state, null, null);
        }
        catch (TimeoutException)
        {
            return new Loaded(null, timeoutError, $"{source} did not answer within {timeout}");
        }
        catch (Exception ex)
        {
            RecordLog.LoadFailed(_node.Logger, name, ex);
            return new Loaded(null, RecordAction.RecordLoadError, $"{source} failed: {ex.Message}");
        }
    }

    private void SendLoadError(Session session, Message request, string name, Loaded loaded) =>
        session.SendError(request with { Name = name, Names = null }, (int)loaded.Error!.Value, loaded.Description);

    private async ValueTask SubscribeAndReadAsync(Session session, Message message, bool create)
    {
        var names = NamesOf(message);
        if (names is null)
        {
            session.SendError(message, (int)RecordAction.InvalidMessageData, "SUBSCRIBE needs record names");
            return;
        }
        // The ack echoes the request and goes first, as deepstream sends it.
        session.Send(message with { IsAck = true, Data = null });
        foreach (var name in names)
        {
            if (name.Length == 0)
            {
                session.SendError(message with { Names = null, Name = name }, (int)RecordAction.InvalidMessageData, "a record name must not be empty");
                continue;
            }
            using (await LockAsync(name).ConfigureAwait(false))
            {
                var loaded = await LoadAsync(name).ConfigureAwait(false);
                if (loaded.Error is not null)
                {
                    SendLoadError(session, message, name, loaded);
                    continue;
                }
                var state = loaded.State;
                if (state is null && create)
                {
                    var created = await _store.CompareAndSetAsync(name, -1, RecordState.Empty, CancellationToken.None).ConfigureAwait(false);
                    state = created.Succeeded ? RecordState.Empty : created.Current ?? RecordState.Empty;
                    if (created.Succeeded && !IsExcluded(name))
                    {
                        _ = PersistAsync(name, RecordState.Empty);
                    }
                }
                Subscribe(session, name);
                session.Send(new Message
                {
                    Topic = Topic.Record, Action = (int)RecordAction.ReadResponse, Name = name,
                    Version = state?.Version ?? -1, Data = state?.Data ?? RecordState.Empty.Data,
                });
            }
        }
    }

    private async ValueTask SubscribeAndHeadAsync(Session session, Message message)
    {
        var names = NamesOf(message);
        if (names is null)
        {
            session.SendError(message, (int)RecordAction.InvalidMessageData, "SUBSCRIBEANDHEAD needs record names");
            return;
        }
        var versions = new Dictionary<string, int>(StringComparer.Ordinal);
        var missing = new List<string>();
        foreach (var name in names)
        {
            if (name.Length == 0)
            {
                continue;
            }
            using (await LockAsync(name).ConfigureAwait(false))
            {
                // Under the lock, as for subscribe-and-read: no write slips between the version read and the subscription.
                var loaded = await LoadAsync(name).ConfigureAwait(false);
                if (loaded.Error is not null)
                {
                    SendLoadError(session, message, name, loaded);
                    continue;
                }
                Subscribe(session, name);
                if (loaded.State is { } state)
                {
                    versions[name] = state.Version;
                }
                else
                {
                    missing.Add(name);
                }
            }
        }
        session.Send(message with { IsAck = true, Data = null });
        if (versions.Count > 0)
        {
            session.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.HeadResponseBulk, Versions = versions });
        }
        foreach (var name in missing)
        {
            session.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.HeadResponse, Name = name, Version = -1 });
        }
    }

    private void SubscribeBulk(Session session, Message message)
    {
        var names = NamesOf(message);
        if (names is null)
        {
            session.SendError(message, (int)RecordAction.InvalidMessageData, "SUBSCRIBE and UNSUBSCRIBE need record names");
            return;
        }
        var subscribe = message.Action == (int)RecordAction.Subscribe;
        foreach (var name in names)
        {
            if (subscribe)
            {
                if (!Subscribe(session, name))
                {
                    session.SendError(new Message { Topic = Topic.Record, Action = message.Action, Name = name }, (int)RecordAction.MultipleSubscriptions, null);
                }
            }
            else if (!Unsubscribe(session, name))
            {
                session.SendError(new Message { Topic = Topic.Record, Action = message.Action, Name = name }, (int)RecordAction.NotSubscribed, null);
            }
        }
        session.Send(new Message { Topic = Topic.Record, Action = message.Action, CorrelationId = message.CorrelationId, IsAck = true });
    }

    private bool Subscribe(Session session, string name)
    {
        if (!session.RecordSubscriptions.TryAdd(name, 0))
        {
            return false;
        }
        Listening.OnSubscribed(session, name, Registry.Add(name, session));
        return true;
    }

    private bool Unsubscribe(Session session, string name)
    {
        if (!session.RecordSubscriptions.TryRemove(name, out _))
        {
            return false;
        }
        if (Registry.Remove(name, session) == 0)
        {
            Listening.OnLastUnsubscribed(name);
        }
        return true;
    }

    public void RemoveSession(Session session)
    {
        if (session.HasRecordSubscriptions)
        {
            foreach (var name in session.RecordSubscriptions.Keys)
            {
                Unsubscribe(session, name);
            }
        }
        Listening.RemoveSession(session);
    }

    private async ValueTask ReadAsync(Session session, Message message)
    {
        var name = message.Name;
        var head = message.Action == (int)RecordAction.Head;
        if (string.IsNullOrEmpty(name))
        {
            session.SendError(message, (int)RecordAction.InvalidMessageData, "READ and HEAD need a record name");
            return;
        }
        var loaded = await LoadAsync(name).ConfigureAwait(false);
        if (loaded.Error is not null)
        {
            SendLoadError(session, message, name, loaded);
            return;
        }
        if (head)
        {
            session.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.HeadResponse, Name = name, Version = loaded.State?.Version ?? -1 });
        }
        else if (loaded.State is { } state)
        {
            session.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.ReadResponse, Name = name, Version = state.Version, Data = state.Data });
        }
        else
        {
            session.SendError(message, (int)RecordAction.RecordNotFound, null);
        }
    }

    private async ValueTask WriteAsync(Session session, Message message)
    {
        var action = (RecordAction)message.Action;
        var name = message.Name;
        if (string.IsNullOrEmpty(name))
        {
            session.SendError(message, (int)RecordAction.InvalidMessageData, "a write needs a record name");
            return;
        }
        if (message.Version is not { } requested || requested < -1)
        {
            session.SendError(message, (int)RecordAction.InvalidVersion, "a write needs a version: current + 1, or -1 for the next");
            return;
        }
        var upsert = action is RecordAction.CreateAndUpdate or RecordAction.CreateAndPatch;
        var erase = action == RecordAction.Erase;
        var patch = action is RecordAction.Patch or RecordAction.CreateAndPatch || (action == RecordAction.CreateAndUpdate && message.Path is not null);
        PathToken[] tokens = [];
        if (patch || erase)
        {
            if (!RecordPath.TryParse(message.Path, out tokens, out var pathError))
            {
                session.SendError(message, (int)RecordAction.InvalidMessageData, $"bad path '{message.Path}': {pathError}");
                return;
            }
        }
        if (!erase)
        {
            if (message.Data is not { } data)
            {
                session.SendError(message, (int)RecordAction.InvalidMessageData, "a write needs data");
                return;
            }
            if (!JsonValidation.TryValidate(data.Span, out var first, out var dataError))
            {
                session.SendError(message, (int)RecordAction.InvalidMessageData, dataError);
                return;
            }
            if (!patch && first is not (JsonTokenType.StartObject or JsonTokenType.StartArray))
            {
                session.SendError(message, (int)RecordAction.InvalidMessageData, "record data must be a JSON object or array");
                return;
            }
            if (data.Length > _options.MaxDocumentSize)
            {
                session.SendError(message, (int)RecordAction.InvalidMessageData, $"the data is {data.Length} bytes; records may hold at most {_options.MaxDocumentSize}");
                return;
            }
        }

        Task durable;
        using (await LockAsync(name).ConfigureAwait(false))
        {
            var loaded = await LoadAsync(name).ConfigureAwait(false);
            if (loaded.Error is not null)
            {
                SendLoadError(session, message, name, loaded);
                return;
            }
            var exists = loaded.State is not null;
            if (!exists && !upsert)
            {
                session.SendError(message, (int)RecordAction.RecordUpdateError, $"record '{name}' does not exist");
                return;
            }
            var current = loaded.State ?? RecordState.Empty;
            switch (RecordVersions.Check(current.Version, requested, out var version))
            {
                case VersionCheck.Exists:
                    session.Send(WriteError(message, RecordAction.VersionExists) with { Version = current.Version, Data = current.Data });
                    return;
                case VersionCheck.Gap:
                    session.Send(WriteError(message, RecordAction.InvalidVersion) with { Version = current.Version, Data = null });
                    return;
            }
            ReadOnlyMemory<byte> next;
            if (patch || erase)
            {
                if (!TryApplyPath(current.Data, tokens, erase ? null : message.Data, out next, out var applyError))
                {
                    session.SendError(message, (int)RecordAction.InvalidMessageData, applyError);
                    return;
                }
            }
            else
            {
                next = message.Data!.Value;
            }
            if (next.Length > _options.MaxDocumentSize)
            {
                session.SendError(message, (int)RecordAction.InvalidMessageData, $"the record would be {next.Length} bytes; records may hold at most {_options.MaxDocumentSize}");
                return;
            }
            var state = new RecordState(version, next);
            var swapped = await _store.CompareAndSetAsync(name, exists ? current.Version : -1, state, CancellationToken.None).ConfigureAwait(false);
            if (!swapped.Succeeded)
            {
                // Another node won this version: the writer merges as with any conflict.
                var now = swapped.Current ?? RecordState.Empty;
                session.Send(WriteError(message, RecordAction.VersionExists) with { Version = now.Version, Data = now.Data });
                return;
            }
            durable = IsExcluded(name) ? Task.CompletedTask : PersistAsync(name, state);
            var broadcast = patch || erase
                ? new Message { Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = name, Version = version, Path = message.Path, Data = erase ? null : message.Data }
                : new Message { Topic = Topic.Record, Action = (int)RecordAction.Update, Name = name, Version = version, Data = next };
            Fanout.Send(broadcast, Registry.Get(name), session);
        }
        if (message.IsWriteAck)
        {
            _ = AcknowledgeWhenDurableAsync(session, message, durable);
        }
    }

    private static Message WriteError(Message request, RecordAction error) => new()
    {
        Topic = Topic.Record,
        Action = (int)error,
        Name = request.Name,
        CorrelationId = request.CorrelationId,
        IsWriteAck = request.IsWriteAck,
        IsError = true,
        OriginalAction = request.Action,
        Path = request.Path,
    };

    internal static bool TryApplyPath(ReadOnlyMemory<byte> current, PathToken[] tokens, ReadOnlyMemory<byte>? value, out ReadOnlyMemory<byte> next, out string error)
    {
        next = default;
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(current.Span, NodeOptions, DocumentOptions);
        }
        catch (JsonException ex)
        {
            error = "the stored record is not valid JSON: " + ex.Message;
            return false;
        }
        if (root is not (JsonObject or JsonArray))
        {
            error = "the stored record is not an object or an array";
            return false;
        }
        if (value is { } v)
        {
            JsonNode? node;
            try
            {
                node = JsonNode.Parse(v.Span, NodeOptions, DocumentOptions);
            }
            catch (JsonException ex)
            {
                error = "the data is not valid JSON: " + ex.Message;
                return false;
            }
            if (!RecordPath.TrySet(root, tokens, node, out error))
            {
                return false;
            }
        }
        else
        {
            RecordPath.Erase(root, tokens);
        }
        try
        {
            next = JsonSerializer.SerializeToUtf8Bytes(root, StateMeshJsonContext.Default.JsonNode);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            error = "the patched record is nested too deeply: " + ex.Message;
            return false;
        }
        error = "";
        return true;
    }

    /// <summary>The newest storage write per record still in flight (NOTIFY waits for it).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Task> _persisting = new(StringComparer.Ordinal);

    private Task PersistAsync(string name, RecordState state)
    {
        var task = PersistCoreAsync(name, state);
        _persisting[name] = task;
        _ = task.ContinueWith(t => _persisting.TryRemove(new KeyValuePair<string, Task>(name, t)), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return task;
    }

    private async Task PersistCoreAsync(string name, RecordState state)
    {
        try
        {
            await _storage.SetAsync(name, state, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            RecordLog.StoreFailed(_node.Logger, name, state.Version, ex);
            throw;
        }
    }

    private async Task AcknowledgeWhenDurableAsync(Session session, Message request, Task durable)
    {
        try
        {
            await durable.ConfigureAwait(false);
            session.Send(new Message
            {
                Topic = Topic.Record, Action = (int)RecordAction.WriteAcknowledgement, Name = request.Name,
                CorrelationId = request.CorrelationId, IsWriteAck = true,
            });
        }
        catch (Exception ex)
        {
            session.SendError(request, (int)RecordAction.RecordUpdateError, "the write was not stored: " + ex.Message);
        }
    }

    private async ValueTask DeleteAsync(Session session, Message message)
    {
        var name = message.Name;
        if (string.IsNullOrEmpty(name))
        {
            session.SendError(message, (int)RecordAction.InvalidMessageData, "DELETE needs a record name");
            return;
        }
        var gate = LockFor(name);
        await gate.WaitAsync().ConfigureAwait(false);
        try
        {
            // Storage first, and under the lock: until the deletion is durable the store still answers reads, so no
            // read misses the store and promotes the record back from storage.
            if (!IsExcluded(name))
            {
                await _storage.DeleteAsync(name, CancellationToken.None).ConfigureAwait(false);
            }
            await _store.RemoveAsync(name, CancellationToken.None).ConfigureAwait(false);
            var subscribers = Registry.Get(name);
            Fanout.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.Deleted, Name = name }, subscribers, session);
            foreach (var subscriber in subscribers)
            {
                Unsubscribe(subscriber, name);
            }
        }
        catch (Exception ex)
        {
            RecordLog.DeleteFailed(_node.Logger, name, ex);
            session.SendError(message, (int)RecordAction.RecordDeleteError, ex.Message);
            return;
        }
        finally
        {
            gate.Release();
        }
        session.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.DeleteSuccess, Name = name, CorrelationId = message.CorrelationId });
    }

    private async ValueTask NotifyAsync(Session session, Message message)
    {
        var names = NamesOf(message);
        if (names is null)
        {
            session.SendError(message, (int)RecordAction.InvalidMessageData, "NOTIFY needs record names");
            return;
        }
        foreach (var name in names)
        {
            using (await LockAsync(name).ConfigureAwait(false))
            {
                if (_persisting.TryGetValue(name, out var pending))
                {
                    try { await pending.ConfigureAwait(false); } catch (Exception) { /* reported to the writer */ }
                }
                await _store.RemoveAsync(name, CancellationToken.None).ConfigureAwait(false);
                var subscribers = Registry.Get(name);
                if (subscribers.Length == 0)
                {
                    continue;
                }
                var loaded = await LoadAsync(name).ConfigureAwait(false);
                if (loaded.Error is not null)
                {
                    session.Send(new Message
                    {
                        Topic = Topic.Record, Action = (int)RecordAction.RecordNotifyError, Name = name, IsError = true,
                        CorrelationId = message.CorrelationId, OriginalAction = message.Action,
                        Data = JsonSerializer.SerializeToUtf8Bytes(loaded.Description ?? "", StateMeshJsonContext.Default.String),
                    });
                    return;
                }
                if (loaded.State is { } state)
                {
                    Fanout.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.Update, Name = name, Version = state.Version, Data = state.Data }, subscribers, null);
                }
                else
                {
                    Fanout.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.Deleted, Name = name }, subscribers, null);
                    foreach (var subscriber in subscribers)
                    {
                        Unsubscribe(subscriber, name);
                    }
                }
            }
        }
        session.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.Notify, CorrelationId = message.CorrelationId, IsAck = true });
    }
}

internal static partial class RecordLog
{
    [LoggerMessage(EventId = 200, EventName = "RecordLoadFailed", Level = LogLevel.Error, Message = "Loading record '{Name}' failed")]
    public static partial void LoadFailed(ILogger logger, string name, Exception exception);

    [LoggerMessage(EventId = 201, EventName = "RecordStoreFailed", Level = LogLevel.Error, Message = "Storing record '{Name}' version {Version} failed")]
    public static partial void StoreFailed(ILogger logger, string name, int version, Exception exception);

    [LoggerMessage(EventId = 202, EventName = "RecordDeleteFailed", Level = LogLevel.Error, Message = "Deleting record '{Name}' failed")]
    public static partial void DeleteFailed(ILogger logger, string name, Exception exception);
}
