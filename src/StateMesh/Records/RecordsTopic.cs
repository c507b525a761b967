using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using StateMesh.Cluster;
using StateMesh.Diagnostics;
using StateMesh.Protocol;
using StateMesh.Server;
using StateMesh.Storage;

namespace StateMesh.Records;

/// <summary>
/// Records on a node: subscribe and read, head, snapshot, versioned writes (whole, path, erase, upsert) with write
/// acknowledgements once durable, delete, and notify. Writes to one record are serialised by a striped lock (different
/// records proceed in parallel). A write is shown (broadcast, read, acknowledged) only once durable, in version order
/// per record (ADR 0005); see <see cref="Pending"/>.
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
    private readonly object[] _viewLocks = new object[Stripes];

    /// <summary>
    /// Per record with subscribers here, the newest version they were sent. A change from another node can arrive after
    /// a newer one; it is not sent again (see <see cref="BroadcastLocally"/>). Touched under the record's view lock.
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _broadcastVersions = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _storageSlots;
    private readonly UnsubscribedRecords _unsubscribed;
    private int _evicting;

    /// <summary>
    /// Records with writes accepted by the store but not yet durable. Until a write is durable nobody sees it (no
    /// broadcast, no read, no conflict answer shows it), so a crash can never bring its version back with other data:
    /// readers see <see cref="Pending.Shown"/>, the newest state that is both durable and broadcast.
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Pending> _pending = new(StringComparer.Ordinal);

    private sealed class Pending(RecordState? shown)
    {
        public RecordState? Shown = shown;
        public int Count;
        public bool Dead;
        public bool Failed;
        public Task Tail = Task.CompletedTask;

        /// <summary>Completes once the store's answers to every write so far are taken (and the accepted sent to storage).</summary>
        public Task<Task?> Accepted = NoneOnTheWay;

        /// <summary>The newest write sent to a store that answers later and not refused since (see <see cref="TipOf"/>).</summary>
        public RecordState? Tip;
    }

    private static readonly Task<Task?> NoneOnTheWay = Task.FromResult<Task?>(Task.CompletedTask);

    public RecordsTopic(NodeEngine node, IRecordStore store, IRecordStorage storage)
    {
        _node = node;
        _store = store;
        _storage = storage;
        _options = node.Options.Records;
        Listening = new Listening.ListenRegistry(node, Topic.Record, () => Registry);
        _storageSlots = new SemaphoreSlim(node.Options.Limits.PendingStorageWrites, node.Options.Limits.PendingStorageWrites);
        _unsubscribed = new UnsubscribedRecords(node.Options.Limits.CachedRecords, node.Options.Limits.CachedRecordBytes);
        for (var i = 0; i < Stripes; i++)
        {
            _locks[i] = new SemaphoreSlim(1, 1);
            _viewLocks[i] = new object();
        }
    }

    public SubscriptionRegistry Registry { get; } = new();

    /// <summary>The record store (for tests that look at what the node holds in memory).</summary>
    internal IRecordStore Store => _store;

    public Listening.ListenRegistry Listening { get; }

    private static int StripeOf(string name) => (name.GetHashCode(StringComparison.Ordinal) & 0x7fffffff) % Stripes;

    private SemaphoreSlim LockFor(string name) => _locks[StripeOf(name)];

    private object ViewLockFor(string name) => _viewLocks[StripeOf(name)];

    /// <summary>
    /// Sends a record's change to its subscribers on this node, unless they were already sent this version or a newer
    /// one (<paramref name="force"/>: always, for a NOTIFY that re-reads storage).
    /// </summary>
    private void BroadcastLocally(string name, int version, Message change, Session? except, bool force = false)
    {
        lock (ViewLockFor(name))
        {
            if (!force && _broadcastVersions.TryGetValue(name, out var last) && last >= version)
            {
                return;
            }
            var subscribers = Registry.Get(name);
            if (subscribers.Length > 0)
            {
                _broadcastVersions[name] = version;
                Fanout.Send(change, subscribers, except);
            }
        }
    }

    /// <summary>A durable change, to the other nodes: the full state with its version, so a node that missed one catches up.</summary>
    private void PublishChange(string name, RecordState state) =>
        _node.Bus.Publish(ClusterChannels.Record(name), new Message { Topic = Topic.Record, Action = (int)RecordAction.Update, Name = name, Version = state.Version, Data = state.Data });

    /// <summary>A record change another node made durable: shown to this node's subscribers unless they have a newer one.</summary>
    public void OnRemoteChange(string name, Message change)
    {
        if (change.Action == (int)RecordAction.Deleted)
        {
            _ = DeletedElsewhereAsync(name);
            return;
        }
        if (change.Action != (int)RecordAction.Update || change.Version is not { } version || change.Data is not { } data)
        {
            return;
        }
        if (_pending.TryGetValue(name, out var pending))
        {
            lock (pending)
            {
                if (!pending.Dead && (pending.Shown is not { } shown || shown.Version < version))
                {
                    pending.Shown = new RecordState(version, data);
                }
                if (pending.Tip is { } tip && tip.Version <= version)
                {
                    // Another node wrote the record: this node's next write asks the store, not its own newest.
                    pending.Tip = null;
                }
                BroadcastLocally(name, version, change, null);
            }
            return;
        }
        BroadcastLocally(name, version, change, null);
    }

    private async Task DeletedElsewhereAsync(string name)
    {
        try
        {
            using (await LockAsync(name).ConfigureAwait(false))
            {
                var subscribers = Registry.Get(name);
                Fanout.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.Deleted, Name = name }, subscribers, null);
                foreach (var subscriber in subscribers)
                {
                    Unsubscribe(subscriber, name);
                }
            }
        }
        catch (Exception ex)
        {
            RecordLog.DeleteFailed(_node.Logger, name, ex);
        }
    }

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

    /// <summary>A load's result; <see cref="Subscribers"/> is the name's subscriber count when the load also subscribed (else 0).</summary>
    private readonly record struct Loaded(RecordState? State, RecordAction? Error, string? Description, int Subscribers = 0);

    /// <summary>
    /// Store first, then storage (promoting what it finds), each under its own timeout. <paramref name="visible"/>: what
    /// a reader may be shown (the store's newest durable state), else what a writer builds on (the newest accepted).
    /// </summary>
    private async ValueTask<Loaded> LoadAsync(string name, bool visible = false)
    {
        var fromStore = await ReadAsync(Guard(visible ? _store.GetShownAsync : _store.GetAsync, name, CancellationToken.None), name, _options.CacheRetrievalTimeout, RecordAction.CacheRetrievalTimeout, "the record store").ConfigureAwait(false);
        if (fromStore.Error is not null || fromStore.State is not null || IsExcluded(name))
        {
            return fromStore;
        }
        // On the thread pool: an adapter that reads synchronously (SQLite does) cannot hold this connection past the timeout.
        // The token tells the adapter when nobody waits any more, so a stuck database does not collect reads.
        using var giveUp = new CancellationTokenSource(_options.StorageRetrievalTimeout, _node.Time);
        var fromStorage = await ReadAsync(new ValueTask<RecordState?>(Task.Run(() => Guard(_storage.GetAsync, name, giveUp.Token).AsTask())), name, _options.StorageRetrievalTimeout, RecordAction.StorageRetrievalTimeout, "storage").ConfigureAwait(false);
        if (fromStorage.Error is not null)
        {
            return fromStorage;
        }
        var state = fromStorage.State;
        if (state is { } found)
        {
            CompareAndSetResult promoted;
            try
            {
                promoted = await _store.CompareAndSetAsync(name, null, found, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                RecordLog.LoadFailed(_node.Logger, name, ex);
                return new Loaded(null, RecordAction.RecordLoadError, "the record store failed to load the record");
            }
            if (promoted.Succeeded)
            {
                // What storage holds is durable: it may be shown.
                await MarkShown(name, found).ConfigureAwait(false);
                if (Registry.Get(name).Length == 0)
                {
                    Remember(name, found.Data.Length);
                }
            }
            else if (!visible && promoted.Current is { } current)
            {
                // A writer builds on the newest accepted state; a reader keeps the durable one it found.
                state = current;
            }
        }
        return new Loaded(state, null, null);
    }

    /// <summary>An adapter that throws instead of returning a faulted task fails the read, not the connection.</summary>
    private static ValueTask<RecordState?> Guard(Func<string, CancellationToken, ValueTask<RecordState?>> read, string name, CancellationToken cancellationToken)
    {
        try
        {
            return read(name, cancellationToken);
        }
        catch (Exception ex)
        {
            return ValueTask.FromException<RecordState?>(ex);
        }
    }

    /// <summary>One read, bounded in time; a timeout and a failure are different errors.</summary>
    private async ValueTask<Loaded> ReadAsync(ValueTask<RecordState?> pending, string name, TimeSpan timeout, RecordAction timeoutError, string source)
    {
        try
        {
            var state = pending.IsCompletedSuccessfully ? pending.Result : await pending.AsTask().WaitAsync(timeout, _node.Time).ConfigureAwait(false);
            return new Loaded(state, null, null);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            // Cancelled: the adapter gave up when told that nobody waits any more, which is the timeout too.
            return new Loaded(null, timeoutError, $"{source} did not answer within {timeout}");
        }
        catch (Exception ex)
        {
            // The details go to the log; the peer hears only which part failed.
            RecordLog.LoadFailed(_node.Logger, name, ex);
            return new Loaded(null, RecordAction.RecordLoadError, $"{source} failed to load the record");
        }
    }

    /// <summary>
    /// What a reader may be shown: the newest durable state, never a write still on its way to storage. Under the
    /// record's lock (so no write is accepted meanwhile). When <paramref name="subscribe"/> is given, the session is
    /// subscribed in the same step as the state is read, so that it misses no broadcast and sees none twice over.
    /// </summary>
    private async ValueTask<Loaded> LoadVisibleAsync(string name, Session? subscribe, bool create = false, bool reserved = false, Action<RecordState?>? respond = null)
    {
        if (_pending.TryGetValue(name, out var pending))
        {
            lock (pending)
            {
                if (!pending.Dead)
                {
                    // A record whose first write is still on its way reads as created and empty. The answer goes out
                    // under the same lock as broadcasts, so no newer version can overtake it.
                    var shown = pending.Shown ?? (create ? RecordState.Empty : null);
                    var count = subscribe is null ? 0 : SubscribeUnderLock(subscribe, name, reserved);
                    respond?.Invoke(shown);
                    return new Loaded(shown, null, null, count);
                }
            }
        }
        var loaded = await LoadAsync(name, visible: true).ConfigureAwait(false);
        if (loaded.Error is null && loaded.State is null && create)
        {
            CompareAndSetResult created;
            try
            {
                created = await _store.CompareAndSetAsync(name, null, RecordState.Empty, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                RecordLog.LoadFailed(_node.Logger, name, ex);
                return new Loaded(null, RecordAction.RecordLoadError, "the record store failed to create the record");
            }
            // Version 0 is always {}: it may be shown at once. A record another node created and is writing reads as
            // created and empty until its first write is durable.
            var state = created.Succeeded ? RecordState.Empty : await ShownOrEmptyAsync(name, RecordState.Empty).ConfigureAwait(false);
            if (created.Succeeded)
            {
                await MarkShown(name, RecordState.Empty).ConfigureAwait(false);
            }
            if (created.Succeeded && !IsExcluded(name))
            {
                // Version 0 is always {}: showing it before it is durable can never show two datas for one version.
                await _storageSlots.WaitAsync().ConfigureAwait(false);
                _ = PersistAsync(name, RecordState.Empty, releaseSlot: true).ContinueWith(
                    static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
            loaded = new Loaded(state, null, null);
        }
        if (loaded.Error is null && subscribe is not null)
        {
            loaded = loaded with { Subscribers = SubscribeUnderLock(subscribe, name, reserved) };
        }
        if (loaded.Error is null)
        {
            respond?.Invoke(loaded.State);
        }
        return loaded;
    }

    /// <summary>
    /// Takes the record's lock once the writes accepted so far are shown. A session's own writes are then visible to
    /// its reads (it sends its messages one after another, so it adds no write meanwhile); a write that storage refused
    /// is forgotten first. Costs at most one commit, and only while the record has writes on their way.
    /// </summary>
    private async ValueTask<Held> LockSettledAsync(string name)
    {
        var held = await LockAsync(name).ConfigureAwait(false);
        if (TailOf(name) is { } tail)
        {
            held.Dispose();
            await tail.ConfigureAwait(false);
            held = await LockAsync(name).ConfigureAwait(false);
        }
        try
        {
            await RetireIfFailedAsync(name).ConfigureAwait(false);
        }
        catch
        {
            held.Dispose();
            throw;
        }
        return held;
    }

    /// <summary>
    /// Under the record's lock: once every write on its way is done and one of them was refused by storage, the store
    /// forgets the record (its copy holds what storage refused), so the next load reads what storage has.
    /// </summary>
    private async ValueTask RetireIfFailedAsync(string name)
    {
        if (!_pending.TryGetValue(name, out var pending))
        {
            return;
        }
        lock (pending)
        {
            if (pending.Dead || !pending.Failed || pending.Count > 0)
            {
                return;
            }
        }
        try
        {
            await _store.RemoveAsync(name, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // Keep the entry: readers go on seeing the last durable state, and the next holder of the lock tries again.
            RecordLog.StoreFailed(_node.Logger, name, -1, ex);
            return;
        }
        lock (pending)
        {
            if (pending.Count == 0)
            {
                pending.Dead = true;
                _pending.TryRemove(new KeyValuePair<string, Pending>(name, pending));
            }
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
            if (MaySubscribe(session, message, name) is not { } reserved)
            {
                continue;
            }
            Loaded loaded;
            // Other nodes' changes reach this node from before the read on (see HearChangesAsync).
            var hearing = await HearChangesAsync(name).ConfigureAwait(false);
            try
            {
                using (await LockSettledAsync(name).ConfigureAwait(false))
                {
                    loaded = await LoadVisibleAsync(name, session, create, reserved, state => session.Send(new Message
                    {
                        Topic = Topic.Record, Action = (int)RecordAction.ReadResponse, Name = name,
                        Version = state?.Version ?? -1, Data = state?.Data ?? RecordState.Empty.Data,
                    })).ConfigureAwait(false);
                }
            }
            catch
            {
                ReleaseReservation(reserved && !session.RecordSubscriptions.ContainsKey(name));
                throw;
            }
            finally
            {
                hearing.Dispose();
            }
            if (loaded.Error is not null)
            {
                ReleaseReservation(reserved);
                SendLoadError(session, message, name, loaded);
                continue;
            }
            AfterSubscribed(session, name, loaded.Subscribers);
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
            if (name.Length == 0 || MaySubscribe(session, message, name) is not { } reserved)
            {
                continue;
            }
            Loaded loaded;
            var hearing = await HearChangesAsync(name).ConfigureAwait(false);
            try
            {
                using (await LockSettledAsync(name).ConfigureAwait(false))
                {
                    // Under the lock, as for subscribe-and-read: no write slips between the version read and the subscription.
                    loaded = await LoadVisibleAsync(name, session, reserved: reserved).ConfigureAwait(false);
                }
            }
            catch
            {
                ReleaseReservation(reserved && !session.RecordSubscriptions.ContainsKey(name));
                throw;
            }
            finally
            {
                hearing.Dispose();
            }
            {
                if (loaded.Error is not null)
                {
                    ReleaseReservation(reserved);
                    SendLoadError(session, message, name, loaded);
                    continue;
                }
                if (loaded.State is { } state)
                {
                    versions[name] = state.Version;
                }
                else
                {
                    missing.Add(name);
                }
            }
            AfterSubscribed(session, name, loaded.Subscribers);
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
                if (session.RecordSubscriptions.ContainsKey(name))
                {
                    session.SendError(new Message { Topic = Topic.Record, Action = message.Action, Name = name }, (int)RecordAction.MultipleSubscriptions, null);
                }
                else if (MaySubscribe(session, message, name) is { } reserved)
                {
                    AfterSubscribed(session, name, SubscribeUnderLock(session, name, reserved));
                }
            }
            else if (!Unsubscribe(session, name))
            {
                session.SendError(new Message { Topic = Topic.Record, Action = message.Action, Name = name }, (int)RecordAction.NotSubscribed, null);
            }
        }
        session.Send(new Message { Topic = Topic.Record, Action = message.Action, CorrelationId = message.CorrelationId, IsAck = true });
    }

    /// <summary>
    /// Checks a new subscription against the connection's and the node's bounds (MESSAGE_DENIED past either). Null when
    /// denied; true when a place was reserved, which becomes a subscription or is given back; false when the session is
    /// subscribed already (subscribe-and-read answers again without a second subscription).
    /// </summary>
    private bool? MaySubscribe(Session session, Message request, string name)
    {
        var limits = _node.Options.Limits;
        if (session.RecordSubscriptions.ContainsKey(name))
        {
            return false;
        }
        if (session.RecordSubscriptionCount >= limits.RecordSubscriptionsPerConnection)
        {
            session.SendError(request with { Names = null, Name = name }, (int)RecordAction.MessageDenied, $"a connection may subscribe to at most {limits.RecordSubscriptionsPerConnection} records");
            return null;
        }
        if (!_node.Limits.Subscriptions.TryTake())
        {
            session.SendError(request with { Names = null, Name = name }, (int)RecordAction.MessageDenied, $"the node holds its maximum of {limits.SubscriptionsPerNode} subscriptions");
            return null;
        }
        return true;
    }

    private void ReleaseReservation(bool reserved)
    {
        if (reserved)
        {
            _node.Limits.Subscriptions.Release();
        }
    }

    /// <summary>Subscribes; under the record's lock. Returns the name's subscriber count, or 0 when it was subscribed already.</summary>
    private int SubscribeUnderLock(Session session, string name, bool reserved)
    {
        if (!session.RecordSubscriptions.TryAdd(name, 0))
        {
            ReleaseReservation(reserved);
            return 0;
        }
        if (!reserved)
        {
            // Subscribed meanwhile and unsubscribed again: this subscription still counts against the node.
            _node.Limits.Subscriptions.Add();
        }
        Interlocked.Increment(ref session.RecordSubscriptionCount);
        _unsubscribed.Forget(name);
        _ = _node.Bus.Subscribe(ClusterChannels.Record(name));
        return Registry.Add(name, session);
    }

    /// <summary>
    /// Subscribes this node to the record's changes from other nodes and waits until that is in effect, so that a read
    /// made after it misses no change; dispose once the session's own subscription holds the interest.
    /// </summary>
    private async ValueTask<Hearing> HearChangesAsync(string name)
    {
        var channel = ClusterChannels.Record(name);
        var subscribed = _node.Bus.Subscribe(channel);
        if (!subscribed.IsCompletedSuccessfully)
        {
            try
            {
                // Bounded: while the bus is away the read goes on (and meets the store's own error if it is away too).
                await subscribed.WaitAsync(_options.CacheRetrievalTimeout, _node.Time).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
            catch
            {
                _node.Bus.Unsubscribe(channel);
                throw;
            }
        }
        return new Hearing(_node.Bus, channel);
    }

    private readonly struct Hearing(IClusterBus bus, string channel) : IDisposable
    {
        public void Dispose() => bus.Unsubscribe(channel);
    }

    /// <summary>Outside the record's lock: a new subscription is told to the listeners (user patterns run here).</summary>
    private void AfterSubscribed(Session session, string name, int subscribers)
    {
        if (subscribers > 0)
        {
            Listening.OnSubscribed(session, name, subscribers);
        }
    }

    private bool Unsubscribe(Session session, string name)
    {
        if (!session.RecordSubscriptions.TryRemove(name, out _))
        {
            return false;
        }
        Interlocked.Decrement(ref session.RecordSubscriptionCount);
        _node.Limits.Subscriptions.Release();
        _node.Bus.Unsubscribe(ClusterChannels.Record(name));
        int left;
        lock (ViewLockFor(name))
        {
            left = Registry.Remove(name, session);
            if (left == 0)
            {
                _broadcastVersions.TryRemove(name, out _);
            }
        }
        if (left == 0)
        {
            Listening.OnLastUnsubscribed(name);
            if (!IsExcluded(name))
            {
                // Only a record the store still holds (not one just deleted) becomes a candidate for letting go.
                var held = _store.GetAsync(name, CancellationToken.None);
                if (!held.IsCompletedSuccessfully)
                {
                    Remember(name, 0);
                }
                else if (held.Result is { } state)
                {
                    Remember(name, state.Data.Length);
                }
            }
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
        Loaded loaded;
        using (await LockSettledAsync(name).ConfigureAwait(false))
        {
            loaded = await LoadVisibleAsync(name, subscribe: null).ConfigureAwait(false);
        }
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

        Task<Task?>? accepted = null;
        Task? shown = null;
        Task? conflictShown = null;
        // Records a write rule reads with _(): loaded outside the lock, then the locked part runs again with them.
        Dictionary<string, Permissions.RuleValue>? ruleRecords = null;
        string[]? toLoad = null;
        for (var attempt = 0; ; attempt++)
        {
            if (toLoad is not null)
            {
                if (attempt >= _node.Options.Permissions.MaxRuleIterations)
                {
                    _node.Permissions.Refuse(session, message, name, new Permissions.Verdict(Permissions.PermissionOutcome.Failed, $"the rule still read records it had not loaded after {attempt} runs"));
                    return;
                }
                foreach (var record in toLoad)
                {
                    try
                    {
                        ruleRecords![record] = Permissions.PermissionGate.ParseRecord(await ReadForRuleAsync(record).ConfigureAwait(false));
                    }
                    catch (Exception ex)
                    {
                        _node.Permissions.Refuse(session, message, name, new Permissions.Verdict(Permissions.PermissionOutcome.Failed, $"the record '{record}' could not be read for the rule: {ex.Message}"));
                        return;
                    }
                }
                toLoad = null;
            }
            using (await LockAsync(name).ConfigureAwait(false))
            {
                await RetireIfFailedAsync(name).ConfigureAwait(false);
                // While this node's own writes of the record are on their way to the store, the next builds on the newest of
                // them (the store compares data as well as version, so it fails if another node came between). A write that
                // asks for "the next version" (-1) is built on what the store holds, read after those writes.
                var tip = requested == -1 ? null : TipOf(name);
                var loaded = tip is { } t ? new Loaded(t, null, null) : await LoadAsync(name).ConfigureAwait(false);
                if (loaded.Error is not null)
                {
                    SendLoadError(session, message, name, loaded);
                    return;
                }
                var check = RecordVersions.Check((loaded.State ?? RecordState.Empty).Version, requested, out var version);
                if (tip is not null && check != VersionCheck.Next)
                {
                    // Ahead of this node's newest (another node's change it saw) or behind it: the store decides.
                    loaded = await LoadAsync(name).ConfigureAwait(false);
                    if (loaded.Error is not null)
                    {
                        SendLoadError(session, message, name, loaded);
                        return;
                    }
                    check = RecordVersions.Check((loaded.State ?? RecordState.Empty).Version, requested, out version);
                }
                var exists = loaded.State is not null;
                ReadOnlyMemory<byte>? merged = null;
                if (!_node.Permissions.IsOpen)
                {
                    // Checked against the record as it is, before its version: a writer that may not write learns nothing of
                    // it, not even why a path would not apply (that is said only to a writer the rules let through).
                    var mergeError = TryMerge(message, loaded.State ?? RecordState.Empty, patch, erase, tokens, out merged);
                    var verdict = CheckWrite(session, message, name, loaded.State, upsert, erase, patch, merged ?? (loaded.State ?? RecordState.Empty).Data, ruleRecords ??= new(StringComparer.Ordinal), out toLoad);
                    if (toLoad is not null)
                    {
                        continue;
                    }
                    if (!verdict.IsAllowed)
                    {
                        _node.Permissions.Refuse(session, message, name, verdict);
                        return;
                    }
                    if (mergeError is not null)
                    {
                        session.SendError(message, (int)RecordAction.InvalidMessageData, mergeError);
                        return;
                    }
                }
                if (!exists && !upsert)
                {
                    session.SendError(message, (int)RecordAction.RecordUpdateError, $"record '{name}' does not exist");
                    return;
                }
                var current = loaded.State ?? RecordState.Empty;
                switch (check)
                {
                    case VersionCheck.Exists:
                        // The writer is shown the record as it is, once what it conflicts with is durable (never before).
                        conflictShown = TailOf(name);
                        if (conflictShown is null)
                        {
                            var visible = await ShownOrEmptyAsync(name, current).ConfigureAwait(false);
                            session.Send(WriteError(message, RecordAction.VersionExists) with { Version = visible.Version, Data = MayShow(session, name, visible) ? visible.Data : null });
                            return;
                        }
                        break;
                    case VersionCheck.Gap:
                        session.Send(WriteError(message, RecordAction.InvalidVersion) with { Version = current.Version, Data = null });
                        return;
                }
                if (conflictShown is null)
                {
                    ReadOnlyMemory<byte> next;
                    if (merged is { } checkedNext)
                    {
                        next = checkedNext;
                    }
                    else if (patch || erase)
                    {
                        if (!TryApplyPath(current.Data, tokens, erase ? null : message.Data, _options.MaxDocumentSize, out next, out var applyError))
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
                    var excluded = IsExcluded(name);
                    // Back-pressure: past the bound of writes on their way (to the store, and to storage unless excluded),
                    // the writer waits here.
                    await _storageSlots.WaitAsync().ConfigureAwait(false);
                    ValueTask<CompareAndSetResult> swap;
                    try
                    {
                        swap = _store.CompareAndSetAsync(name, exists ? current : null, state, CancellationToken.None);
                    }
                    catch (Exception ex)
                    {
                        swap = ValueTask.FromException<CompareAndSetResult>(ex);
                    }
                    var broadcast = patch || erase
                        ? new Message { Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = name, Version = version, Path = message.Path, Data = erase ? null : message.Data }
                        : new Message { Topic = Topic.Record, Action = (int)RecordAction.Update, Name = name, Version = version, Data = next };
                    if (swap.IsCompleted && !Accepting(name))
                    {
                        // The store answered at once (it is this process's memory), and no earlier answer is awaited.
                        CompareAndSetResult swapped;
                        try
                        {
                            swapped = swap.Result;
                        }
                        catch (Exception ex)
                        {
                            _storageSlots.Release();
                            StoreUnavailable(session, message, name, version, ex);
                            return;
                        }
                        if (!swapped.Succeeded)
                        {
                            _storageSlots.Release();
                            // Another node won this version: the writer merges as with any conflict, with what may be shown.
                            var now = await ShownOrEmptyAsync(name, swapped.Current ?? RecordState.Empty).ConfigureAwait(false);
                            session.Send(WriteError(message, RecordAction.VersionExists) with { Version = now.Version, Data = MayShow(session, name, now) ? now.Data : null });
                            return;
                        }
                        accepted = Task.FromResult<Task?>(Persist(name, state, excluded));
                        shown = ShowWhenDurable(name, loaded.State, state, accepted, broadcast, session);
                    }
                    else
                    {
                        // The store answers later (in a cluster: Redis). The writer's connection goes on to its next message
                        // meanwhile; the answers are taken in the order the writes were sent.
                        shown = ShowWhenAccepted(name, loaded.State, state, swap, excluded, broadcast, session, message, out accepted);
                    }
                    if (Registry.Get(name).Length == 0)
                    {
                        Remember(name, next.Length);
                    }
                }
            }
            break;
        }
        if (conflictShown is not null)
        {
            await conflictShown.ConfigureAwait(false);
            Loaded now;
            using (await LockAsync(name).ConfigureAwait(false))
            {
                now = await LoadVisibleAsync(name, subscribe: null).ConfigureAwait(false);
            }
            var state = now.State ?? RecordState.Empty;
            session.Send(WriteError(message, RecordAction.VersionExists) with { Version = state.Version, Data = MayShow(session, name, state) ? state.Data : null });
            return;
        }
        if (message.IsWriteAck)
        {
            _ = AcknowledgeWhenDurableAsync(session, message, accepted!, shown!);
        }
    }

    /// <summary>The record as a write would leave it (a patch applied to the current data), for the write rule's <c>data</c>; the error when the path does not apply.</summary>
    private string? TryMerge(Message message, RecordState current, bool patch, bool erase, PathToken[] tokens, out ReadOnlyMemory<byte>? merged)
    {
        merged = null;
        if (!(patch || erase))
        {
            merged = message.Data!.Value;
            return null;
        }
        if (!TryApplyPath(current.Data, tokens, erase ? null : message.Data, _options.MaxDocumentSize, out var next, out var applyError))
        {
            return applyError;
        }
        merged = next;
        return null;
    }

    /// <summary>
    /// Whether a VERSION_EXISTS may carry the record's data to this writer: only when the read rule lets it see the
    /// record (a rule that would need another record read here, under the lock, counts as no).
    /// </summary>
    private bool MayShow(Session session, string name, RecordState state)
    {
        var verdict = _node.Permissions.CheckLoaded(session.RuleUser, Permissions.PermissionSection.Record, Permissions.RuleType.Read, (int)RecordAction.Read, name, null, state, new(StringComparer.Ordinal), out var missing);
        return missing is null && verdict.IsAllowed;
    }

    /// <summary>
    /// The rules a write involves: create when an upsert makes the record, then write (delete for ERASE), with
    /// <c>data</c> the record as the write leaves it and <c>oldData</c> as it is. Runs under the record's lock, so it
    /// reads no record: it names the ones its rules need in <paramref name="missing"/>, to be loaded outside the lock.
    /// </summary>
    private Permissions.Verdict CheckWrite(Session session, Message message, string name, RecordState? current, bool upsert, bool erase, bool patch, ReadOnlyMemory<byte>? merged, Dictionary<string, Permissions.RuleValue> loaded, out string[]? missing)
    {
        missing = null;
        if (current is null && upsert)
        {
            var create = Check(Permissions.RuleType.Create, (int)RecordAction.Create, data: null, out missing);
            if (missing is not null || !create.IsAllowed)
            {
                return create;
            }
        }
        return erase
            ? Check(Permissions.RuleType.Delete, message.Action, data: null, out missing)
            : Check(Permissions.RuleType.Write, patch ? (int)RecordAction.Patch : (int)RecordAction.Update, merged, out missing); // an upsert is seen as the write it makes, as in deepstream

        Permissions.Verdict Check(Permissions.RuleType type, int action, ReadOnlyMemory<byte>? data, out string[]? missing) =>
            _node.Permissions.CheckLoaded(session.RuleUser, Permissions.PermissionSection.Record, type, action, name, data, current, loaded, out missing);
    }

    /// <summary>
    /// Creates a record that does not exist yet, for the node itself (a storage-backed user made at login): durable
    /// and shown before it returns; false when the record exists.
    /// </summary>
    public async ValueTask<bool> CreateForNodeAsync(string name, ReadOnlyMemory<byte> data)
    {
        using (await LockAsync(name).ConfigureAwait(false))
        {
            await RetireIfFailedAsync(name).ConfigureAwait(false);
            var loaded = await LoadAsync(name).ConfigureAwait(false);
            if (loaded.Error is { } error)
            {
                throw new IOException(loaded.Description ?? error.ToString());
            }
            if (loaded.State is not null || TipOf(name) is not null)
            {
                return false;
            }
            var state = new RecordState(RecordState.Empty.Version + 1, data);
            if (!(await _store.CompareAndSetAsync(name, null, state, CancellationToken.None).ConfigureAwait(false)).Succeeded)
            {
                return false;
            }
            if (!IsExcluded(name))
            {
                await PersistAsync(name, state).ConfigureAwait(false);
            }
            await MarkShown(name, state).ConfigureAwait(false);
            return true;
        }
    }

    /// <summary>A record's data as a permission rule reads it (<c>_()</c>, <c>oldData</c>): what may be shown; null when it does not exist.</summary>
    public async ValueTask<RecordState?> ReadForRuleAsync(string name)
    {
        Loaded loaded;
        using (await LockSettledAsync(name).ConfigureAwait(false))
        {
            loaded = await LoadVisibleAsync(name, subscribe: null).ConfigureAwait(false);
        }
        if (loaded.Error is { } error)
        {
            throw new IOException(loaded.Description ?? error.ToString());
        }
        return loaded.State;
    }

    /// <summary>The record store is away (in a cluster: Redis): nothing was accepted; the writer hears it plainly.</summary>
    private void StoreUnavailable(Session session, Message message, string name, int version, Exception ex)
    {
        RecordLog.StoreFailed(_node.Logger, name, version, ex);
        session.SendError(message, (int)RecordAction.RecordUpdateError, "the record store is not available; the write was not accepted");
    }

    /// <summary>An accepted write on its way to storage (excluded names are done at once); its storage slot is given back when it is.</summary>
    private Task Persist(string name, RecordState state, bool excluded)
    {
        if (excluded)
        {
            _storageSlots.Release();
            return Task.CompletedTask;
        }
        return PersistAsync(name, state, releaseSlot: true);
    }

    /// <summary>True while the store's answer to a write of the record is awaited.</summary>
    private bool Accepting(string name)
    {
        if (_pending.TryGetValue(name, out var pending))
        {
            lock (pending)
            {
                return !pending.Dead && !pending.Accepted.IsCompleted;
            }
        }
        return false;
    }

    /// <summary>
    /// The newest write this node sent the store for the record and has not yet heard refused, while any of its writes
    /// of the record are on their way (null otherwise, or when one was refused since).
    /// </summary>
    private RecordState? TipOf(string name)
    {
        if (_pending.TryGetValue(name, out var pending))
        {
            lock (pending)
            {
                return pending.Dead ? null : pending.Tip;
            }
        }
        return null;
    }

    /// <summary>
    /// What a conflicting writer is shown: the store's newest durable state, once it has caught up with
    /// <paramref name="accepted"/> (a write another node accepted is answered once that node made it durable, as
    /// the conflict with a local write waits for it). Never a write still on its way to storage; never a version older
    /// than the one the writer conflicts with, which the deepstream client would adopt and then be overwritten. Bounded
    /// by <see cref="RecordOptions.StorageRetrievalTimeout"/>.
    /// </summary>
    private async ValueTask<RecordState> ShownOrEmptyAsync(string name, RecordState accepted)
    {
        var deadline = _node.Time.GetTimestamp() + (long)(_options.StorageRetrievalTimeout.TotalSeconds * _node.Time.TimestampFrequency);
        var wait = TimeSpan.FromMilliseconds(1);
        while (true)
        {
            RecordState? shown;
            try
            {
                shown = await _store.GetShownAsync(name, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                RecordLog.LoadFailed(_node.Logger, name, ex);
                return accepted.Version == 0 ? accepted : RecordState.Empty;
            }
            if (shown is { } visible && visible.Version >= accepted.Version)
            {
                return visible;
            }
            if (accepted.Version == 0 || _node.Time.GetTimestamp() > deadline)
            {
                return shown ?? (accepted.Version == 0 ? accepted : RecordState.Empty);
            }
            await Task.Delay(wait, _node.Time).ConfigureAwait(false);
            wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, TimeSpan.FromMilliseconds(20).Ticks));
        }
    }

    /// <summary>The task that completes once every write of the record accepted so far is durable and broadcast; null when none is pending.</summary>
    private Task? TailOf(string name)
    {
        if (_pending.TryGetValue(name, out var pending))
        {
            lock (pending)
            {
                return pending.Dead ? null : pending.Tail;
            }
        }
        return null;
    }

    /// <summary>
    /// Broadcasts an accepted write once it is durable, after every earlier write of the record (so versions go out in
    /// order). Under the record's lock. A write already durable with nothing before it goes out at once.
    /// <paramref name="accepted"/> is complete: the store took the write and the task it holds is its way to storage.
    /// </summary>
    private Task ShowWhenDurable(string name, RecordState? before, RecordState state, Task<Task?> accepted, Message broadcast, Session writer)
    {
        Task? marking = null;
        if (accepted.Result is { IsCompletedSuccessfully: true } && !_pending.ContainsKey(name))
        {
            var marked = MarkShown(name, state);
            if (marked.IsCompletedSuccessfully)
            {
                BroadcastLocally(name, state.Version, broadcast, writer);
                PublishChange(name, state);
                return Task.CompletedTask;
            }
            // Still on its way (a shared store): the ordered path below does not mark it again.
            marking = marked.AsTask();
        }
        return Chain(name, before, state, broadcast, writer, marking, null, (_, _) => accepted);
    }

    /// <summary>
    /// A write the store answers later. It joins the record's chain at once: its answer is taken after those of the
    /// writes before it, and only then does it go to storage, so storage sees the record's writes in version order. A
    /// refused write is answered VERSION_EXISTS (an error when the store is away) and leaves the chain without a
    /// broadcast; the writes built on it are refused by the store too. Under the record's lock.
    /// </summary>
    private Task ShowWhenAccepted(string name, RecordState? before, RecordState state, ValueTask<CompareAndSetResult> swap, bool excluded, Message broadcast, Session writer, Message request, out Task<Task?> accepted)
    {
        Task<Task?>? taken = null;
        var shown = Chain(name, before, state, broadcast, writer, null, swap.IsCompleted ? null : state,
            (pending, previous) => taken = AcceptInOrderAsync(name, pending, previous, swap, state, excluded, writer, request));
        accepted = taken!;
        return shown;
    }

    /// <summary>Adds a write to the record's chain of writes on their way; the returned task completes once it is shown (or left out).</summary>
    private Task Chain(string name, RecordState? before, RecordState state, Message broadcast, Session writer, Task? marking, RecordState? tip, Func<Pending, Task<Task?>, Task<Task?>> accept)
    {
        while (true)
        {
            var pending = _pending.GetOrAdd(name, static (_, shown) => new Pending(shown), before);
            TaskCompletionSource done;
            Task previous;
            Task<Task?> accepted;
            lock (pending)
            {
                if (pending.Dead)
                {
                    continue;
                }
                pending.Count++;
                previous = pending.Tail;
                done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                pending.Tail = done.Task;
                accepted = accept(pending, pending.Accepted);
                pending.Accepted = accepted;
                if (tip is not null)
                {
                    pending.Tip = tip;
                }
            }
            _ = ShowAsync(name, pending, previous, state, accepted, marking, broadcast, writer, done);
            return done.Task;
        }
    }

    /// <summary>
    /// Takes the store's answer to a write after those of the writes before it; an accepted write goes to storage
    /// then. Null when the store refused it (the writer has been told). Never throws.
    /// </summary>
    private async Task<Task?> AcceptInOrderAsync(string name, Pending pending, Task<Task?> previous, ValueTask<CompareAndSetResult> swap, RecordState state, bool excluded, Session writer, Message request)
    {
        await previous.ConfigureAwait(false);
        CompareAndSetResult swapped;
        try
        {
            swapped = await swap.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _storageSlots.Release();
            ForgetTip(pending, state);
            StoreUnavailable(writer, request, name, state.Version, ex);
            return null;
        }
        if (!swapped.Succeeded)
        {
            _storageSlots.Release();
            ForgetTip(pending, state);
            _ = AnswerConflictAsync(writer, request, name, swapped.Current ?? RecordState.Empty);
            return null;
        }
        return Persist(name, state, excluded);
    }

    /// <summary>A write was refused: the node's newest write of the record, built on it or on one before it, is no base for the next.</summary>
    private static void ForgetTip(Pending pending, RecordState refused)
    {
        lock (pending)
        {
            if (pending.Tip is { } tip && tip.Version >= refused.Version)
            {
                pending.Tip = null;
            }
        }
    }

    private async Task AnswerConflictAsync(Session writer, Message request, string name, RecordState current)
    {
        try
        {
            var now = await ShownOrEmptyAsync(name, current).ConfigureAwait(false);
            writer.Send(WriteError(request, RecordAction.VersionExists) with { Version = now.Version, Data = MayShow(writer, name, now) ? now.Data : null });
        }
        catch (Exception ex)
        {
            RecordLog.LoadFailed(_node.Logger, name, ex);
        }
    }

    private async Task ShowAsync(string name, Pending pending, Task previous, RecordState state, Task<Task?> accepted, Task? marking, Message broadcast, Session writer, TaskCompletionSource done)
    {
        var durable = await accepted.ConfigureAwait(false);
        var stored = durable is not null;
        if (durable is not null)
        {
            try
            {
                await durable.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Logged by PersistAsync; the writer hears of it through its acknowledgement.
                stored = false;
            }
            if (stored)
            {
                // Sent before this write's broadcast goes to the other nodes (one connection keeps the order), not
                // waited for: a mark never moves back, and marks need not take one round trip each.
                marking ??= MarkShown(name, state).AsTask();
            }
        }
        await previous.ConfigureAwait(false);
        var recover = false;
        lock (pending)
        {
            try
            {
                if (stored)
                {
                    // A newer change from another node may have been shown here already.
                    if (pending.Shown is not { } shown || shown.Version < state.Version)
                    {
                        pending.Shown = state;
                    }
                    BroadcastLocally(name, state.Version, broadcast, writer);
                    // Before the next write of the chain may go: the other nodes are told the versions in order.
                    PublishChange(name, state);
                }
                else if (durable is not null)
                {
                    pending.Failed = true;
                }
            }
            finally
            {
                // Whatever happened above, the chain moves on: later writes and whoever waits for the tail must not hang.
                recover = --pending.Count == 0 && pending.Failed;
                if (pending.Count == 0 && !pending.Failed)
                {
                    pending.Dead = true;
                    _pending.TryRemove(new KeyValuePair<string, Pending>(name, pending));
                }
                done.SetResult();
            }
        }
        if (recover)
        {
            using (await LockAsync(name).ConfigureAwait(false))
            {
                await RetireIfFailedAsync(name).ConfigureAwait(false);
            }
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

    internal static bool TryApplyPath(ReadOnlyMemory<byte> current, PathToken[] tokens, ReadOnlyMemory<byte>? value, int maxDocumentSize, out ReadOnlyMemory<byte> next, out string error)
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
            // Each element an array grows by is at least "null," in the result: growth beyond that is refused before it
            // happens, and so is growth past RecordPath.MaxGrowthPerWrite (a short path must not cost much).
            var growth = Math.Min(RecordPath.MaxGrowthPerWrite, Math.Max(0, maxDocumentSize - current.Length) / 5);
            try
            {
                if (!RecordPath.TrySet(root, tokens, node, growth, out error))
                {
                    return false;
                }
            }
            catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
            {
                // JsonNode reads names lazily: a stored name that is not text, or one given twice, shows only here.
                error = "the stored record cannot be patched: " + StoredRecordProblem(ex);
                return false;
            }
        }
        else
        {
            try
            {
                RecordPath.Erase(root, tokens);
            }
            catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
            {
                error = "the stored record cannot be patched: " + StoredRecordProblem(ex);
                return false;
            }
        }
        try
        {
            next = JsonSerializer.SerializeToUtf8Bytes(root, StateMeshJsonContext.Default.JsonNode);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException)
        {
            error = ex is ArgumentException || ex.InnerException is not null
                ? "the stored record cannot be patched: " + StoredRecordProblem(ex)
                : "the patched record is nested too deeply: " + ex.Message;
            return false;
        }
        error = "";
        return true;
    }

    /// <summary>A short, stable reason for a stored record that JSON nodes cannot take (the exception's text is not for peers).</summary>
    private static string StoredRecordProblem(Exception ex) =>
        ex is ArgumentException ? "a property name appears twice in one object (replace the whole record)" : "a property name or string is not valid text (replace the whole record)";

    /// <summary>Tells the store that a state is durable (readers on every node may see it). A failure is logged, never thrown.</summary>
    private ValueTask MarkShown(string name, RecordState state)
    {
        ValueTask marked;
        try
        {
            marked = _store.MarkShownAsync(name, state, CancellationToken.None);
        }
        catch (Exception ex)
        {
            marked = ValueTask.FromException(ex);
        }
        return marked.IsCompletedSuccessfully ? marked : MarkShownCoreAsync(marked, name, state.Version);
    }

    private async ValueTask MarkShownCoreAsync(ValueTask marked, string name, int version)
    {
        try
        {
            await marked.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // The change is durable and shown here; other nodes' readers see it once the store has it again.
            RecordLog.StoreFailed(_node.Logger, name, version, ex);
        }
    }

    private Task PersistAsync(string name, RecordState state, bool releaseSlot = false)
    {
        ValueTask pending;
        try
        {
            pending = _storage.SetAsync(name, state, CancellationToken.None);
        }
        catch (Exception ex)
        {
            pending = ValueTask.FromException(ex);
        }
        if (pending.IsCompletedSuccessfully)
        {
            if (releaseSlot)
            {
                _storageSlots.Release();
            }
            return Task.CompletedTask;
        }
        return PersistCoreAsync(pending, name, state, releaseSlot);
    }

    private async Task PersistCoreAsync(ValueTask pending, string name, RecordState state, bool releaseSlot)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            RecordLog.StoreFailed(_node.Logger, name, state.Version, ex);
            throw;
        }
        finally
        {
            if (releaseSlot)
            {
                _storageSlots.Release();
            }
        }
    }

    private async Task AcknowledgeWhenDurableAsync(Session session, Message request, Task<Task?> accepted, Task shown)
    {
        if (await accepted.ConfigureAwait(false) is not { } durable)
        {
            // Refused by the store: the writer was told why.
            return;
        }
        try
        {
            await durable.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The details are in the log (RecordStoreFailed); the writer gets a stable reason.
            session.SendError(request, (int)RecordAction.RecordUpdateError, "the write could not be stored");
            return;
        }
        await shown.ConfigureAwait(false);
        session.Send(new Message
        {
            Topic = Topic.Record, Action = (int)RecordAction.WriteAcknowledgement, Name = request.Name,
            CorrelationId = request.CorrelationId, IsWriteAck = true,
        });
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
            // Writes on their way go out first: no update may follow the deletion.
            if (TailOf(name) is { } tail)
            {
                await tail.ConfigureAwait(false);
            }
            await RetireIfFailedAsync(name).ConfigureAwait(false);
            // Storage first, and under the lock: until the deletion is durable the store still answers reads, so no
            // read misses the store and promotes the record back from storage.
            if (!IsExcluded(name))
            {
                await _storage.DeleteAsync(name, CancellationToken.None).ConfigureAwait(false);
            }
            await _store.RemoveAsync(name, CancellationToken.None).ConfigureAwait(false);
            var subscribers = Registry.Get(name);
            var deleted = new Message { Topic = Topic.Record, Action = (int)RecordAction.Deleted, Name = name };
            Fanout.Send(deleted, subscribers, session);
            foreach (var subscriber in subscribers)
            {
                Unsubscribe(subscriber, name);
            }
            _node.Bus.Publish(ClusterChannels.Record(name), deleted);
        }
        catch (Exception ex)
        {
            RecordLog.DeleteFailed(_node.Logger, name, ex);
            session.SendError(message, (int)RecordAction.RecordDeleteError, "the record could not be deleted");
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
                // This node's writes on their way reach storage first (their failures are the writers' to hear).
                if (TailOf(name) is { } tail)
                {
                    await tail.ConfigureAwait(false);
                }
                await RetireIfFailedAsync(name).ConfigureAwait(false);
                await _store.RemoveAsync(name, CancellationToken.None).ConfigureAwait(false);
                var subscribers = Registry.Get(name);
                if (subscribers.Length == 0)
                {
                    continue;
                }
                var loaded = await LoadAsync(name, visible: true).ConfigureAwait(false);
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
                    BroadcastLocally(name, state.Version, new Message { Topic = Topic.Record, Action = (int)RecordAction.Update, Name = name, Version = state.Version, Data = state.Data }, null, force: true);
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

    /// <summary>A record nobody subscribes to is held in memory; past the bounds the least recently used are let go.</summary>
    private void Remember(string name, int bytes)
    {
        if (_unsubscribed.Touch(name, bytes) && Interlocked.Exchange(ref _evicting, 1) == 0)
        {
            // Not inline: the caller may hold a record's lock, and eviction takes others.
            _ = Task.Run(EvictAsync);
        }
    }

    private async Task EvictAsync()
    {
        try
        {
            while (true)
            {
                while (_unsubscribed.TryTakeOldest(out var name))
                {
                    using (await LockAsync(name).ConfigureAwait(false))
                    {
                        if (Registry.Get(name).Length > 0)
                        {
                            continue;
                        }
                        // Only durable state is let go; storage has it for the next reader.
                        if (TailOf(name) is { } tail)
                        {
                            await tail.ConfigureAwait(false);
                        }
                        await RetireIfFailedAsync(name).ConfigureAwait(false);
                        if (_pending.ContainsKey(name))
                        {
                            continue;
                        }
                        await _store.ForgetAsync(name, CancellationToken.None).ConfigureAwait(false);
                    }
                }
                Volatile.Write(ref _evicting, 0);
                if (!_unsubscribed.IsOver || Interlocked.Exchange(ref _evicting, 1) != 0)
                {
                    return;
                }
            }
        }
        catch (Exception ex)
        {
            Volatile.Write(ref _evicting, 0);
            RecordLog.EvictionFailed(_node.Logger, ex);
        }
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

    [LoggerMessage(EventId = 203, EventName = "RecordEvictionFailed", Level = LogLevel.Error, Message = "Letting records go from memory failed")]
    public static partial void EvictionFailed(ILogger logger, Exception exception);
}
