using System.Collections.Concurrent;
using System.Reactive.Disposables;
using System.Reactive.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using StateMesh.Protocol;
using StateMesh.Records;

namespace StateMesh.Client;

internal sealed class RecordsClient(StateMeshClient client) : IRecordsClient
{
    private readonly Dictionary<string, RecordEntry> _entries = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, PendingWrite> _pendingWrites = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, List<TaskCompletionSource<Message?>>> _pendingReads = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, List<TaskCompletionSource<int>>> _pendingHeads = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _pendingDeletes = new(StringComparer.Ordinal);

    private object Gate => client.Gate;

    private sealed record PendingWrite(string Name, TaskCompletionSource<RecordWriteResult> Result)
    {
        public RecordConflict? Conflict { get; set; }
    }

    // ---------- subscribed records ----------

    public async Task<IRecord<T>> GetAsync<T>(string name, CancellationToken cancellationToken = default)
    {
        var entry = await AcquireAsync(name, cancellationToken).ConfigureAwait(false);
        return new Record<T>(this, entry, client.GetTypeInfo<T>());
    }

    internal async Task<RecordEntry> AcquireAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        RecordEntry entry;
        lock (Gate)
        {
            if (!_entries.TryGetValue(name, out entry!))
            {
                entry = new RecordEntry(name) { OnObserverError = ex => ClientLog.ObserverFailed(client.Logger, name, ex) };
                _entries[name] = entry;
                if (client.IsOpen)
                {
                    client.TrySendIfOpen(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscribeCreateAndRead, Names = [name], CorrelationId = client.NextCorrelationId() });
                }
            }
            entry.References++;
        }
        try
        {
            await entry.Loaded.Task.WaitAsync(client.Options.RecordReadTimeout, client.Time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Release(entry);
            throw new StateMeshException($"Record '{name}' was not loaded within {client.Options.RecordReadTimeout}.");
        }
        catch
        {
            Release(entry);
            throw;
        }
        return entry;
    }

    internal void Release(RecordEntry entry)
    {
        lock (Gate)
        {
            if (--entry.References > 0)
            {
                return;
            }
            if (_entries.TryGetValue(entry.Name, out var current) && ReferenceEquals(current, entry))
            {
                _entries.Remove(entry.Name);
                if (!entry.Deleted)
                {
                    client.TrySendIfOpen(new Message { Topic = Topic.Record, Action = (int)RecordAction.Unsubscribe, Names = [entry.Name], CorrelationId = entry.Name });
                }
            }
        }
        lock (entry.Gate)
        {
            entry.Changed.OnCompleted();
        }
    }

    public IObservable<T> Observe<T>(string name, JsonTypeInfo<T>? typeInfo = null)
    {
        var info = typeInfo ?? client.GetTypeInfo<T>();
        return Observable.Create<T>(async (observer, cancellationToken) =>
        {
            var entry = await AcquireAsync(name, cancellationToken).ConfigureAwait(false);
            var inner = Record<T>.ChangesOf(entry, info).Subscribe(observer);
            return Disposable.Create(() =>
            {
                inner.Dispose();
                Release(entry);
            });
        });
    }

    public IObservable<T?> Observe<T>(string name, string path, JsonTypeInfo<T>? typeInfo = null)
    {
        var info = typeInfo ?? client.GetTypeInfo<T>();
        var tokens = ParsePath(path);
        return Observe(name, client.GetTypeInfo<JsonNode>()).Select(node => ValueAt(node, tokens, info));
    }

    internal static T? ValueAt<T>(JsonNode? node, PathToken[] tokens, JsonTypeInfo<T> info)
    {
        var value = RecordPath.Get(node, tokens);
        return value is null ? default : value.Deserialize(info);
    }

    internal static PathToken[] ParsePath(string path)
    {
        if (!RecordPath.TryParse(path, out var tokens, out var error))
        {
            throw new ArgumentException($"Bad record path '{path}': {error}.", nameof(path));
        }
        return tokens;
    }

    // ---------- writes ----------

    /// <summary>Applies a write locally and sends it. Returns the pending acknowledgement when asked for.</summary>
    internal Task<RecordWriteResult>? Write(RecordEntry entry, RecordAction action, string? path, byte[]? value, bool acknowledge, out Task sent)
    {
        PathToken[] tokens = path is null ? [] : ParsePath(path);
        client.CheckPayloadSize(value?.Length ?? 0, $"The write to record '{entry.Name}'");
        Message message;
        PendingWrite? pending = null;
        bool send;
        Task? queued;
        lock (entry.Gate)
        {
            if (!entry.Ready || entry.Deleted)
            {
                throw new InvalidOperationException(entry.Deleted ? $"Record '{entry.Name}' was deleted." : $"Record '{entry.Name}' is not loaded.");
            }
            byte[] next;
            if (path is null)
            {
                next = value!;
            }
            else
            {
                var root = entry.ParseData() ?? new JsonObject();
                if (action == RecordAction.Erase)
                {
                    RecordPath.Erase(root, tokens);
                }
                else if (!RecordPath.TrySet(root, tokens, JsonNode.Parse(value!), out var error))
                {
                    throw new ArgumentException($"Cannot set '{path}' on record '{entry.Name}': {error}.", nameof(path));
                }
                next = RecordEntry.Serialize(root);
            }
            var version = entry.Version + 1;
            string? correlationId = null;
            if (acknowledge)
            {
                correlationId = client.NextCorrelationId();
                pending = new PendingWrite(entry.Name, new TaskCompletionSource<RecordWriteResult>(TaskCreationOptions.RunContinuationsAsynchronously));
                _pendingWrites[correlationId] = pending;
            }
            message = new Message
            {
                Topic = Topic.Record, Action = (int)action, Name = entry.Name, Version = version, Path = path,
                Data = action == RecordAction.Erase ? null : value, IsWriteAck = acknowledge, CorrelationId = correlationId,
            };
            // In line before observers hear of it: one that writes again from its callback is queued behind this write.
            entry.WritesSinceResyncRead++;
            send = entry.Enqueue(message, ifOpen: false, out queued);
            entry.Apply(version, next);
        }
        sent = send ? SendQueued(entry) : queued!;
        return pending?.Result.Task;
    }

    /// <summary>
    /// Hands a record's queued messages to the connection in the order they were queued. A write takes its version
    /// under the record's gate and the node refuses a version that skips one (INVALID_VERSION), so two threads writing
    /// one record must not overtake each other between the gate and the connection. The messages are handed over
    /// outside the gate (the client's gate is taken for that, and observers of the connection state run under it and
    /// may write records), by one thread at a time: the one that found the line empty. Returns when that thread's own
    /// message, the first in line, has been handed over.
    /// </summary>
    private Task SendQueued(RecordEntry entry)
    {
        var own = Task.CompletedTask;
        while (true)
        {
            RecordEntry.Outgoing next;
            lock (entry.Gate)
            {
                if (!entry.TryTakeOutgoing(out next))
                {
                    break;
                }
            }
            Task sent;
            try
            {
                if (next.IfOpen)
                {
                    if (!client.TrySendIfOpen(next.Message))
                    {
                        // A resync READ that never left: its answer is not to be waited for (after a reconnect the
                        // record's head decides again).
                        lock (entry.Gate)
                        {
                            entry.ResyncReads = Math.Max(0, entry.ResyncReads - 1);
                        }
                    }
                    sent = Task.CompletedTask;
                }
                else
                {
                    sent = client.SendOrQueue(next.Message);
                }
            }
            catch (Exception ex)
            {
                sent = Task.FromException(ex);
            }
            if (next.Sent is null)
            {
                own = sent;
            }
            else if (sent.IsCompleted)
            {
                CompleteHandoff(sent, next.Sent);
            }
            else
            {
                sent.ContinueWith(static (t, s) => CompleteHandoff(t, (TaskCompletionSource)s!), next.Sent, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }
        return own;
    }

    private static void CompleteHandoff(Task sent, TaskCompletionSource handoff)
    {
        if (sent.IsFaulted)
        {
            handoff.TrySetException(sent.Exception!.InnerExceptions);
        }
        else if (sent.IsCanceled)
        {
            handoff.TrySetCanceled();
        }
        else
        {
            handoff.TrySetResult();
        }
    }

    /// <summary>
    /// Under the record's gate: reads the record again unless a READ already on its way will tell (its answer is
    /// read again when writes went out after it). Returns true when the caller must then call <see cref="SendQueued"/>.
    /// </summary>
    private static bool QueueResyncRead(RecordEntry entry)
    {
        if (entry.Resyncing && entry.ResyncReads > 0)
        {
            return false;
        }
        entry.Resyncing = true;
        entry.ResyncReads++;
        entry.WritesSinceResyncRead = 0;
        return entry.Enqueue(new Message { Topic = Topic.Record, Action = (int)RecordAction.Read, Name = entry.Name }, ifOpen: true, out _);
    }

    private static bool SameData(byte[] a, byte[] b)
    {
        if (a.AsSpan().SequenceEqual(b))
        {
            return true;
        }
        try
        {
            return JsonNode.DeepEquals(JsonNode.Parse(a), JsonNode.Parse(b));
        }
        catch (JsonException)
        {
            return false;
        }
    }

    public Task SetDataAsync<T>(string name, T value, CancellationToken cancellationToken = default) =>
        SendData(name, null, Serialize(value), acknowledge: false, out _);

    public Task SetDataAsync<T>(string name, string path, T value, CancellationToken cancellationToken = default) =>
        SendData(name, path, Serialize(value), acknowledge: false, out _);

    public async Task<RecordWriteResult> SetDataWithAckAsync<T>(string name, T value, CancellationToken cancellationToken = default)
    {
        await SendData(name, null, Serialize(value), acknowledge: true, out var result).ConfigureAwait(false);
        return await result!.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<RecordWriteResult> SetDataWithAckAsync<T>(string name, string path, T value, CancellationToken cancellationToken = default)
    {
        await SendData(name, path, Serialize(value), acknowledge: true, out var result).ConfigureAwait(false);
        return await result!.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private Task SendData(string name, string? path, byte[] value, bool acknowledge, out Task<RecordWriteResult>? result)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        client.CheckPayloadSize(value.Length, $"The write to record '{name}'");
        if (path is not null)
        {
            ParsePath(path);
        }
        else if (value is not [(byte)'{', ..] and not [(byte)'[', ..])
        {
            throw new ArgumentException("A record's whole value must serialize to a JSON object or array.", nameof(value));
        }
        RecordEntry? held;
        lock (Gate)
        {
            _entries.TryGetValue(name, out held);
        }
        if (held is not null && held.Ready && !held.Deleted)
        {
            // A record this client holds is written through its copy, so that the copy stays current
            // (the node never echoes a write to its writer).
            result = Write(held, path is null ? RecordAction.Update : RecordAction.Patch, path, value, acknowledge, out var sent);
            return sent;
        }
        string? correlationId = null;
        result = null;
        if (acknowledge)
        {
            correlationId = client.NextCorrelationId();
            var pending = new PendingWrite(name, new TaskCompletionSource<RecordWriteResult>(TaskCreationOptions.RunContinuationsAsynchronously));
            _pendingWrites[correlationId] = pending;
            result = pending.Result.Task;
        }
        return client.SendOrQueue(new Message
        {
            Topic = Topic.Record, Action = (int)(path is null ? RecordAction.CreateAndUpdate : RecordAction.CreateAndPatch),
            Name = name, Version = -1, Path = path, Data = value, IsWriteAck = acknowledge, CorrelationId = correlationId,
        });
    }

    internal byte[] Serialize<T>(T value) => JsonSerializer.SerializeToUtf8Bytes(value, client.GetTypeInfo<T>());

    internal async Task DeleteAsync(RecordEntry entry, CancellationToken cancellationToken)
    {
        var done = _pendingDeletes.GetOrAdd(entry.Name, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        await client.SendOrQueue(new Message { Topic = Topic.Record, Action = (int)RecordAction.Delete, Name = entry.Name }).ConfigureAwait(false);
        await done.Task.WaitAsync(client.Options.RecordReadTimeout, client.Time, cancellationToken).ConfigureAwait(false);
    }

    // ---------- one-shot reads ----------

    public async Task<RecordSnapshot<T>?> SnapshotAsync<T>(string name, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var reply = await Request(_pendingReads, name, RecordAction.Read, cancellationToken).ConfigureAwait(false);
        return reply is null ? null : new RecordSnapshot<T>(name, reply.Version ?? 0, JsonSerializer.Deserialize(reply.Data!.Value.Span, client.GetTypeInfo<T>())!);
    }

    public Task<int> HeadAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return Request(_pendingHeads, name, RecordAction.Head, cancellationToken);
    }

    public async Task<bool> HasAsync(string name, CancellationToken cancellationToken = default) =>
        await HeadAsync(name, cancellationToken).ConfigureAwait(false) != -1;

    /// <summary>Concurrent requests for one name share one message and one answer, as deepstream's client does.</summary>
    private async Task<TResult> Request<TResult>(ConcurrentDictionary<string, List<TaskCompletionSource<TResult>>> pending, string name, RecordAction action, CancellationToken cancellationToken)
    {
        var tcs = new TaskCompletionSource<TResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = false;
        var list = pending.GetOrAdd(name, _ =>
        {
            first = true;
            return [];
        });
        lock (list)
        {
            list.Add(tcs);
        }
        if (first)
        {
            await client.SendOrQueue(new Message { Topic = Topic.Record, Action = (int)action, Name = name }).ConfigureAwait(false);
        }
        try
        {
            return await tcs.Task.WaitAsync(client.Options.RecordReadTimeout, client.Time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            pending.TryRemove(name, out _);
            throw new StateMeshException($"The node did not answer {action} '{name}' within {client.Options.RecordReadTimeout}.");
        }
    }

    private static void Complete<TResult>(ConcurrentDictionary<string, List<TaskCompletionSource<TResult>>> pending, string name, TResult result)
    {
        if (pending.TryRemove(name, out var list))
        {
            lock (list)
            {
                foreach (var tcs in list)
                {
                    tcs.TrySetResult(result);
                }
            }
        }
    }

    public async Task NotifyAsync(IEnumerable<string> names, CancellationToken cancellationToken = default)
    {
        var correlationId = client.NextCorrelationId();
        var ack = client.WaitForAckAsync(Topic.Record, (int)RecordAction.Notify, correlationId, cancellationToken);
        await client.SendOrQueue(new Message { Topic = Topic.Record, Action = (int)RecordAction.Notify, Names = [.. names], CorrelationId = correlationId }).ConfigureAwait(false);
        await ack.ConfigureAwait(false);
    }

    public async Task<IRecordList> GetListAsync(string name, CancellationToken cancellationToken = default) =>
        new RecordList((Record<JsonNode>)await GetAsync<JsonNode>(name, cancellationToken).ConfigureAwait(false));

    public IAnonymousRecord<T> CreateAnonymous<T>() => new AnonymousRecord<T>(this);

    public IObservable<ListenOffer> Listen(string pattern) => client.RecordListeners.Listen(pattern);

    // ---------- incoming ----------

    public void Handle(Message message)
    {
        var action = (RecordAction)message.Action;
        if (message.IsAck)
        {
            return; // subscription acks carry nothing the client needs; NOTIFY acks are matched by the client.
        }
        RecordEntry? entry = null;
        if (message.Name is not null)
        {
            lock (Gate)
            {
                _entries.TryGetValue(message.Name, out entry);
            }
        }
        switch (action)
        {
            case RecordAction.ReadResponse:
                if (entry is not null)
                {
                    var resyncAgain = false;
                    lock (entry.Gate)
                    {
                        var version = message.Version ?? 0;
                        var data = message.Data?.ToArray() ?? "{}"u8.ToArray();
                        if (!entry.Ready)
                        {
                            entry.Ready = true;
                            entry.Resyncing = false;
                            entry.ResyncReads = 0;
                            entry.Apply(version, data);
                        }
                        else if (entry.Resyncing)
                        {
                            entry.ResyncReads = Math.Max(0, entry.ResyncReads - 1);
                            if (entry.ResyncReads == 0)
                            {
                                // The copy was in doubt (a refused write, a missed change): the node's state is the
                                // truth, newer or older than the copy, whenever it differs in version or data.
                                if (version != entry.Version || !SameData(data, entry.Json))
                                {
                                    entry.Apply(version, data);
                                }
                                if (entry.WritesSinceResyncRead > 0)
                                {
                                    // Writes went out after the READ, so the answer may not show them: read once more.
                                    resyncAgain = QueueResyncRead(entry);
                                }
                                else
                                {
                                    entry.Resyncing = false;
                                }
                            }
                        }
                        else if (version >= entry.Version)
                        {
                            entry.Apply(version, data);
                        }
                    }
                    if (resyncAgain)
                    {
                        SendQueued(entry);
                    }
                    entry.Loaded.TrySetResult();
                }
                Complete(_pendingReads, message.Name!, (Message?)message);
                break;
            case RecordAction.Update when entry is not null:
                lock (entry.Gate)
                {
                    // Older or equal versions mean our own write lost; its VERSION_EXISTS reply resolves that.
                    if (message.Version > entry.Version)
                    {
                        entry.Apply(message.Version!.Value, message.Data?.ToArray() ?? "{}"u8.ToArray());
                    }
                }
                break;
            case RecordAction.Patch when entry is not null:
                var readAgain = false;
                lock (entry.Gate)
                {
                    if (message.Version == entry.Version + 1 && RecordPath.TryParse(message.Path, out var tokens, out _))
                    {
                        var root = entry.ParseData() ?? new JsonObject();
                        if (message.Data is { } data)
                        {
                            RecordPath.TrySet(root, tokens, JsonNode.Parse(data.Span), out _);
                        }
                        else
                        {
                            RecordPath.Erase(root, tokens);
                        }
                        entry.Apply(message.Version.Value, RecordEntry.Serialize(root));
                    }
                    else if (message.Version > entry.Version + 1)
                    {
                        // Missed a change: read the whole record again.
                        readAgain = QueueResyncRead(entry);
                    }
                }
                if (readAgain)
                {
                    SendQueued(entry);
                }
                break;
            case RecordAction.Deleted:
            case RecordAction.DeleteSuccess:
                if (entry is not null)
                {
                    lock (Gate)
                    {
                        _entries.Remove(entry.Name);
                    }
                    lock (entry.Gate)
                    {
                        entry.Deleted = true;
                        entry.Changed.OnCompleted();
                    }
                }
                if (action == RecordAction.DeleteSuccess && _pendingDeletes.TryRemove(message.Name!, out var deleted))
                {
                    deleted.TrySetResult();
                }
                break;
            case RecordAction.WriteAcknowledgement:
                if (message.CorrelationId is not null && _pendingWrites.TryRemove(message.CorrelationId, out var acked))
                {
                    acked.Result.TrySetResult(new RecordWriteResult { Succeeded = true, Conflict = acked.Conflict });
                }
                break;
            case RecordAction.VersionExists:
                OnConflict(entry, message);
                break;
            case RecordAction.HeadResponse:
                Complete(_pendingHeads, message.Name!, message.Version ?? -1);
                if (entry is not null)
                {
                    OnRemoteHead(entry, message.Version ?? -1);
                }
                break;
            case RecordAction.HeadResponseBulk:
                foreach (var (name, version) in message.Versions ?? new Dictionary<string, int>())
                {
                    RecordEntry? e;
                    lock (Gate)
                    {
                        _entries.TryGetValue(name, out e);
                    }
                    if (e is not null)
                    {
                        OnRemoteHead(e, version);
                    }
                }
                break;
            case RecordAction.SubscriptionHasProvider when entry is not null:
            case RecordAction.SubscriptionHasNoProvider when entry is not null:
                lock (entry.Gate)
                {
                    entry.HasProvider = action == RecordAction.SubscriptionHasProvider;
                }
                break;
            case RecordAction.RecordNotFound when message.OriginalAction == (int)RecordAction.Read:
                Complete(_pendingReads, message.Name!, (Message?)null);
                break;
            default:
                if (message.IsError)
                {
                    OnError(entry, message);
                }
                break;
        }
    }

    private void OnError(RecordEntry? entry, Message message)
    {
        var description = message.Data is { } d ? System.Text.Encoding.UTF8.GetString(d.Span) : null;
        var text = $"{ActionNames.Of(Topic.Record, message.Action)}{(description is null ? "" : ": " + description)}";
        if (message.CorrelationId is not null && _pendingWrites.TryRemove(message.CorrelationId, out var pending))
        {
            pending.Result.TrySetResult(new RecordWriteResult { Succeeded = false, Error = text, Conflict = pending.Conflict });
        }
        else
        {
            ClientLog.NodeError(client.Logger, message.ToString());
        }
        if (message.Name is { } name)
        {
            if (entry is not null && !entry.Ready)
            {
                entry.Loaded.TrySetException(new StateMeshProtocolException($"Record '{name}' could not be loaded: {text}.", Topic.Record, message.Action));
            }
            if (message.OriginalAction == (int)RecordAction.Delete && _pendingDeletes.TryRemove(name, out var delete))
            {
                delete.TrySetException(new StateMeshProtocolException($"Record '{name}' was not deleted: {text}.", Topic.Record, message.Action));
            }
            if (message.OriginalAction is (int)RecordAction.Read or (int)RecordAction.Head)
            {
                var failure = new StateMeshProtocolException($"{ActionNames.Of(Topic.Record, message.OriginalAction.Value)} '{name}' failed: {text}.", Topic.Record, message.Action);
                FailAll(message.OriginalAction == (int)RecordAction.Read ? _pendingReads : null, name, failure);
                FailAll(message.OriginalAction == (int)RecordAction.Head ? _pendingHeads : null, name, failure);
            }
            if (entry is not null && message.Action == (int)RecordAction.InvalidVersion)
            {
                // The node holds another version than the copy believes: its answer is adopted whatever its version.
                bool send;
                lock (entry.Gate)
                {
                    send = QueueResyncRead(entry);
                }
                if (send)
                {
                    SendQueued(entry);
                }
            }
        }
    }

    private static void FailAll<TResult>(ConcurrentDictionary<string, List<TaskCompletionSource<TResult>>>? pending, string name, Exception error)
    {
        if (pending is not null && pending.TryRemove(name, out var list))
        {
            lock (list)
            {
                foreach (var tcs in list)
                {
                    tcs.TrySetException(error);
                }
            }
        }
    }

    /// <summary>Our write lost to another: run the merge strategy, then adopt the node's data or write the merge on top.</summary>
    private void OnConflict(RecordEntry? entry, Message message)
    {
        var remoteVersion = message.Version ?? 0;
        var remoteJson = message.Data?.ToArray() ?? "{}"u8.ToArray();
        PendingWrite? pending = null;
        if (message.CorrelationId is not null)
        {
            _pendingWrites.TryRemove(message.CorrelationId, out pending);
        }
        if (entry is null)
        {
            // A setData conflict (no local copy): report it.
            pending?.Result.TrySetResult(new RecordWriteResult { Succeeded = false, Conflict = new RecordConflict(remoteVersion, JsonNode.Parse(remoteJson), ConflictResolution.AdoptedRemote) });
            return;
        }
        var rewrote = false;
        RecordConflict conflict;
        var send = false;
        lock (entry.Gate)
        {
            var remote = JsonNode.Parse(remoteJson);
            if (entry.Version > remoteVersion)
            {
                // Later writes of ours are already on their way: the node's answer is older than our copy. Read the
                // record again and adopt that answer, whatever its version, rather than this older data.
                conflict = new RecordConflict(remoteVersion, remote, ConflictResolution.AdoptedRemote);
                send = QueueResyncRead(entry);
                goto Decided;
            }
            var strategy = entry.MergeStrategy ?? client.Options.MergeStrategy;
            JsonNode? merged;
            try
            {
                merged = strategy.Merge(new MergeContext(entry.Name, entry.ParseData(), remote, remoteVersion));
            }
            catch (Exception ex)
            {
                ClientLog.MergeFailed(client.Logger, entry.Name, ex);
                merged = remote?.DeepClone();
            }
            if (JsonNode.DeepEquals(merged, remote))
            {
                conflict = new RecordConflict(remoteVersion, remote, ConflictResolution.AdoptedRemote);
                entry.Apply(remoteVersion, remoteJson);
            }
            else
            {
                conflict = new RecordConflict(remoteVersion, remote, ConflictResolution.Rewrote);
                var json = RecordEntry.Serialize(merged);
                string? correlationId = null;
                if (pending is not null)
                {
                    correlationId = client.NextCorrelationId();
                    pending.Conflict = conflict;
                    _pendingWrites[correlationId] = pending;
                }
                var rewrite = new Message
                {
                    Topic = Topic.Record, Action = (int)RecordAction.Update, Name = entry.Name, Version = remoteVersion + 1,
                    Data = json, IsWriteAck = pending is not null, CorrelationId = correlationId,
                };
                rewrote = true;
                entry.WritesSinceResyncRead++;
                send = entry.Enqueue(rewrite, ifOpen: false, out _);
                entry.Apply(remoteVersion + 1, json);
            }
        Decided:;
        }
        if (send)
        {
            SendQueued(entry);
        }
        if (!rewrote)
        {
            pending?.Result.TrySetResult(new RecordWriteResult { Succeeded = false, Conflict = conflict });
        }
    }

    /// <summary>After a reconnect: the node's version against ours.</summary>
    private void OnRemoteHead(RecordEntry entry, int remoteVersion)
    {
        bool deleted, resync;
        lock (entry.Gate)
        {
            if (!entry.AwaitingHead)
            {
                return;
            }
            entry.AwaitingHead = false;
            // READs of the lost connection are never answered; one still in doubt is read again on this one.
            entry.ResyncReads = 0;
            deleted = remoteVersion == -1;
            resync = false;
            if (deleted)
            {
                entry.Deleted = true;
                entry.Changed.OnCompleted();
            }
            else if (remoteVersion != entry.Version || entry.Resyncing)
            {
                resync = QueueResyncRead(entry);
            }
        }
        if (deleted)
        {
            lock (Gate)
            {
                _entries.Remove(entry.Name);
            }
        }
        else if (resync)
        {
            SendQueued(entry);
        }
    }

    /// <summary>Called under the client's gate once logged in: loaded records check their version, others load.</summary>
    public void OnOpened(ClientLink link)
    {
        var head = new List<string>();
        var load = new List<string>();
        // Lock order is entry gate, then the client's gate (observers run under the entry gate and may call the
        // client); this runs under the client's gate, so it reads the flags without taking entry gates.
        foreach (var entry in _entries.Values)
        {
            if (Volatile.Read(ref entry.ReadyFlag))
            {
                entry.AwaitingHead = true;
                head.Add(entry.Name);
            }
            else
            {
                load.Add(entry.Name);
            }
        }
        if (head.Count > 0)
        {
            link.TrySend(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscribeAndHead, Names = [.. head], CorrelationId = client.NextCorrelationId() });
        }
        if (load.Count > 0)
        {
            link.TrySend(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscribeCreateAndRead, Names = [.. load], CorrelationId = client.NextCorrelationId() });
        }
    }

    /// <summary>The connection is gone: writes waiting for acknowledgement fail now, as deepstream's client fails them.</summary>
    public void OnConnectionLost()
    {
        foreach (var key in _pendingWrites.Keys)
        {
            if (_pendingWrites.TryRemove(key, out var pending))
            {
                pending.Result.TrySetException(new StateMeshOfflineException($"The connection was lost before the write to '{pending.Name}' was acknowledged; it may or may not have been stored."));
            }
        }
    }
}
