using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;
using StateMesh.Cluster;

namespace StateMesh.Redis;

/// <summary>
/// Membership and named sets in Redis. Each node keeps its score in the sorted set <c>nodes</c> fresh (a heartbeat
/// every <see cref="RedisClusterOptions.HeartbeatInterval"/>); a node whose score is older than
/// <see cref="RedisClusterOptions.NodeTimeout"/> is dead. A node that stops leaves at once: it removes itself and its
/// sets and says so on the <c>members</c> channel. A named set is a Redis set of node names (<c>s:&lt;set&gt;</c>);
/// reading it keeps only live nodes, so a dead node's entries never route anything.
/// </summary>
/// <remarks>
/// What a node read of a set is kept for at most <see cref="RedisClusterOptions.NodeTimeout"/> (the time a dead node
/// may go unnoticed anyway), so an RPC call to another node costs no read of its set: a node that joins or leaves a
/// set says so on the <c>members</c> channel (<c>set:&lt;set&gt;</c>), and every node forgets what it read of it. A read
/// that a change overlapped is not kept; which of its nodes are alive is worked out again when nodes come or go. A
/// connection to Redis restored forgets everything (changes said while it was away were not heard).
/// </remarks>
public sealed class RedisClusterRegistry : IClusterRegistry
{
    private readonly RedisClusterBus _bus;
    private readonly RedisClusterOptions _options;
    private readonly ILogger _logger;
    private readonly CountedNames _mine = new();
    // The claims this node holds, to give back at a stop and to put back when Redis lost them. Under its own lock.
    private readonly HashSet<string> _claims = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private volatile HashSet<string> _live = new(StringComparer.Ordinal);
    private IClusterMembershipListener? _listener;
    private string _nodeName = "";
    private Task _heartbeat = Task.CompletedTask;
    private ChannelMessageQueue? _members;
    private bool _stopped;
    private volatile bool _dirty;
    // What this node read of each set, and when (Environment.TickCount64); bounded by MaxKeptSets.
    private readonly ConcurrentDictionary<string, KeptSet> _kept = new(StringComparer.Ordinal);
    // Bumped by every change heard of: a read that a change overlapped is not kept.
    private long _changes;

    private const int MaxKeptSets = 10_000;

    // Members as read; Alive: those of them alive (never this node) as Live, the live nodes then, says.
    private sealed record KeptSet(string[] Members, long ReadAt, HashSet<string> Live, IReadOnlyList<string> Alive);

    /// <summary>A registry over the bus's connection (it connects when the node starts).</summary>
    public RedisClusterRegistry(RedisClusterBus bus, RedisClusterOptions options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(options);
        _bus = bus;
        _options = options;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("StateMesh.Redis");
    }

    /// <inheritdoc />
    public TimeSpan FailureDetectionTime => _options.NodeTimeout + _options.HeartbeatInterval;

    private IDatabase Database => _bus.Redis.GetDatabase();

    private RedisKey NodesKey => _options.Prefix + "nodes";

    private RedisKey SetKey(string set) => _options.Prefix + "s:" + set;

    private RedisKey ClaimKey(string key) => _options.Prefix + "c:" + key;

    // KEYS[1] the claim; ARGV[1] this node, ARGV[2] a holder known to be dead ('' for none). Sets the claim when it is
    // free, this node's, or the dead holder's; returns '' then, else the live-looking holder for the caller to check.
    private const string ClaimScript = """
        local owner = redis.call('GET', KEYS[1])
        if owner == false or owner == ARGV[1] or (ARGV[2] ~= '' and owner == ARGV[2]) then
          redis.call('SET', KEYS[1], ARGV[1])
          return ''
        end
        return owner
        """;

    // KEYS[1] the claim; ARGV[1] this node. Deletes it only when this node holds it.
    private const string ReleaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """;

    private RedisChannel MembersChannel => RedisChannel.Literal(_options.Prefix + "members");

    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>The live nodes as last seen (this one included).</summary>
    internal IReadOnlyCollection<string> LiveNodes => _live;

    /// <inheritdoc />
    public async Task StartAsync(string nodeName, IClusterMembershipListener listener, CancellationToken cancellationToken)
    {
        _nodeName = nodeName;
        _listener = listener;
        _members = await _bus.Redis.GetSubscriber().SubscribeAsync(MembersChannel).WaitAsync(cancellationToken).ConfigureAwait(false);
        _members.OnMessage(m =>
        {
            var text = (string?)m.Message;
            if (text is null)
            {
                return;
            }
            if (text.StartsWith("set:", StringComparison.Ordinal))
            {
                Changed(text[4..]);
            }
            else if (text.StartsWith("left:", StringComparison.Ordinal) && text[5..] is var left && left != _nodeName)
            {
                Gone(left);
            }
        });
        _bus.Redis.ConnectionRestored += (_, _) => ForgetAll(); // changes said while away were not heard
        // Present before serving anyone, and knowing the others: no gap after a join.
        await Database.SortedSetAddAsync(NodesKey, nodeName, Now).WaitAsync(cancellationToken).ConfigureAwait(false);
        var alive = await Database.SortedSetRangeByScoreAsync(NodesKey, Now - _options.NodeTimeout.TotalMilliseconds, double.PositiveInfinity).WaitAsync(cancellationToken).ConfigureAwait(false);
        _live = new HashSet<string>(alive.Select(v => (string)v!), StringComparer.Ordinal) { nodeName };
        _heartbeat = Task.Run(HeartbeatAsync, CancellationToken.None);
    }

    private async Task HeartbeatAsync()
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
            {
                try
                {
                    if (await Database.SortedSetAddAsync(NodesKey, _nodeName, Now).ConfigureAwait(false) || _dirty)
                    {
                        // This node was not there (Redis lost its data: restarted empty), or a registration failed while
                        // Redis was away: put back what is missing.
                        _dirty = false;
                        await RegisterAgainAsync().ConfigureAwait(false);
                    }
                    await RefreshAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is RedisException or TimeoutException)
                {
                    // Redis is away: the others cannot see this node either; both sides catch up when it is back.
                    RedisLog.PublishFailed(_logger, "nodes", ex.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // stopping
        }
    }

    private async Task RegisterAgainAsync()
    {
        var sets = _mine.Names;
        var db = Database;
        await Task.WhenAll(sets.Select(set => db.SetAddAsync(SetKey(set), _nodeName))).ConfigureAwait(false);
        await Task.WhenAll(sets.Select(set => TellChangedAsync(db, set))).ConfigureAwait(false);
        string[] claims;
        lock (_claims)
        {
            claims = [.. _claims];
        }
        // A claim another node took meanwhile stays theirs: the topics settle it (the listen provider that lost it is told).
        await Task.WhenAll(claims.Select(key => db.ScriptEvaluateAsync(ClaimScript, [ClaimKey(key)], [_nodeName, ""]))).ConfigureAwait(false);
        RedisLog.RegisteredAgain(_logger, _nodeName, sets.Length + claims.Length);
    }

    private async Task RefreshAsync()
    {
        var now = Now;
        var alive = await Database.SortedSetRangeByScoreAsync(NodesKey, now - _options.NodeTimeout.TotalMilliseconds, double.PositiveInfinity).ConfigureAwait(false);
        var live = new HashSet<string>(alive.Select(v => (string)v!), StringComparer.Ordinal) { _nodeName };
        var before = _live;
        ForgetOld();
        // Entries of nodes long dead go; a node that comes back adds itself again.
        _ = Database.SortedSetRemoveRangeByScoreAsync(NodesKey, double.NegativeInfinity, now - TimeSpan.FromMinutes(1).TotalMilliseconds, flags: CommandFlags.FireAndForget);
        if (live.SetEquals(before))
        {
            return; // the same instance stays: what was worked out of it stays good
        }
        _live = live;
        foreach (var node in before)
        {
            if (!live.Contains(node))
            {
                _listener?.OnNodeLeft(node);
            }
        }
        foreach (var node in live)
        {
            if (!before.Contains(node))
            {
                _listener?.OnNodeJoined(node);
            }
        }
    }

    private void Gone(string node)
    {
        var before = _live;
        if (!before.Contains(node))
        {
            return;
        }
        _live = new HashSet<string>(before.Where(n => n != node), StringComparer.Ordinal);
        _listener?.OnNodeLeft(node);
    }

    /// <inheritdoc />
    public Task AddAsync(string set)
    {
        lock (_mine.Gate)
        {
            if (_stopped || !_mine.Add(set))
            {
                return Task.CompletedTask;
            }
            var db = Database;
            var adding = db.SetAddAsync(SetKey(set), _nodeName);
            // Redis away: the next heartbeat that reaches it registers every set again.
            _ = adding.ContinueWith(_ => _dirty = true, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            // Sent after the add on the same connection, so Redis runs it after the add: whoever hears it reads the set with this node in it.
            return Task.WhenAll(adding, TellChangedAsync(db, set));
        }
    }

    /// <inheritdoc />
    public void Remove(string set)
    {
        lock (_mine.Gate)
        {
            if (_mine.Remove(set))
            {
                var db = Database;
                _ = db.SetRemoveAsync(SetKey(set), _nodeName, CommandFlags.FireAndForget);
                _ = TellChangedAsync(db, set, CommandFlags.FireAndForget);
            }
        }
    }

    /// <inheritdoc />
    public async ValueTask<bool> TryClaimAsync(string key, CancellationToken cancellationToken)
    {
        var db = Database;
        var holder = (string?)await db.ScriptEvaluateAsync(ClaimScript, [ClaimKey(key)], [_nodeName, ""]).WaitAsync(cancellationToken).ConfigureAwait(false);
        if (!string.IsNullOrEmpty(holder))
        {
            if ((await LiveAmongAsync([holder], cancellationToken).ConfigureAwait(false)).Count > 0)
            {
                return false;
            }
            // Held by a node that is gone: take it over, unless someone else did first.
            holder = (string?)await db.ScriptEvaluateAsync(ClaimScript, [ClaimKey(key)], [_nodeName, holder]).WaitAsync(cancellationToken).ConfigureAwait(false);
            if (!string.IsNullOrEmpty(holder))
            {
                return false;
            }
        }
        lock (_claims)
        {
            _claims.Add(key);
        }
        return true;
    }

    /// <inheritdoc />
    public void Release(string key)
    {
        lock (_claims)
        {
            if (!_claims.Remove(key))
            {
                return;
            }
        }
        _ = Database.ScriptEvaluateAsync(ReleaseScript, [ClaimKey(key)], [_nodeName], CommandFlags.FireAndForget);
    }

    /// <summary>Which of <paramref name="nodes"/> (never this one) are alive: as last seen, else as Redis says now.</summary>
    private ValueTask<List<string>> LiveAmongAsync(IEnumerable<string> nodes, CancellationToken cancellationToken) =>
        LiveAmongAsync(nodes, _live, cancellationToken);

    /// <summary>Which of <paramref name="nodes"/> (never this one) are alive: as <paramref name="live"/> says, else as Redis says now.</summary>
    private async ValueTask<List<string>> LiveAmongAsync(IEnumerable<string> nodes, HashSet<string> live, CancellationToken cancellationToken)
    {
        var alive = new List<string>();
        List<string>? unknown = null;
        foreach (var name in nodes)
        {
            if (name == _nodeName)
            {
                continue;
            }
            if (live.Contains(name))
            {
                alive.Add(name);
            }
            else
            {
                (unknown ??= []).Add(name);
            }
        }
        if (unknown is not null)
        {
            // Joined since the last heartbeat here, or dead: ask Redis.
            var scores = await Database.SortedSetScoresAsync(NodesKey, [.. unknown.Select(n => (RedisValue)n)]).WaitAsync(cancellationToken).ConfigureAwait(false);
            var since = Now - _options.NodeTimeout.TotalMilliseconds;
            for (var i = 0; i < unknown.Count; i++)
            {
                if (scores[i] is { } score && score >= since)
                {
                    alive.Add(unknown[i]);
                }
            }
        }
        return alive;
    }

    /// <inheritdoc />
    public async ValueTask<IReadOnlyList<string>> OtherNodesInAsync(string set, bool latest, CancellationToken cancellationToken)
    {
        var changes = Interlocked.Read(ref _changes);
        var live = _live;
        string[] members;
        long readAt;
        if (!latest && _kept.TryGetValue(set, out var kept) && Environment.TickCount64 - kept.ReadAt < (long)_options.NodeTimeout.TotalMilliseconds)
        {
            if (ReferenceEquals(kept.Live, live))
            {
                return kept.Alive;
            }
            // Nodes came or went since: the same members, alive or not as the cluster is now.
            (members, readAt) = (kept.Members, kept.ReadAt);
        }
        else
        {
            readAt = Environment.TickCount64;
            var read = await Database.SetMembersAsync(SetKey(set)).WaitAsync(cancellationToken).ConfigureAwait(false);
            members = Array.ConvertAll(read, m => (string)m!);
        }
        var alive = await LiveAmongAsync(members, live, cancellationToken).ConfigureAwait(false);
        // A change heard after this read began may not be in it; one heard after it is kept forgets it again.
        if (Interlocked.Read(ref _changes) == changes && (_kept.Count < MaxKeptSets || _kept.ContainsKey(set)))
        {
            _kept[set] = new KeptSet(members, readAt, live, alive);
        }
        return alive;
    }

    private Task TellChangedAsync(IDatabase db, string set, CommandFlags flags = CommandFlags.None) =>
        db.PublishAsync(MembersChannel, "set:" + set, flags);

    private void Changed(string set)
    {
        Interlocked.Increment(ref _changes);
        _kept.TryRemove(set, out _);
    }

    private void ForgetAll()
    {
        Interlocked.Increment(ref _changes);
        _kept.Clear();
    }

    private void ForgetOld()
    {
        var since = Environment.TickCount64 - (long)_options.NodeTimeout.TotalMilliseconds;
        foreach (var (set, kept) in _kept)
        {
            if (kept.ReadAt < since)
            {
                _kept.TryRemove(new KeyValuePair<string, KeptSet>(set, kept));
            }
        }
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        string[] sets;
        lock (_mine.Gate)
        {
            if (_stopped)
            {
                return;
            }
            _stopped = true;
            sets = _mine.Clear();
        }
        await _stop.CancelAsync().ConfigureAwait(false);
        await _heartbeat.ConfigureAwait(false);
        if (_nodeName.Length == 0)
        {
            return; // never started
        }
        try
        {
            var db = Database;
            await Task.WhenAll(sets.Select(set => db.SetRemoveAsync(SetKey(set), _nodeName))).WaitAsync(cancellationToken).ConfigureAwait(false);
            string[] claims;
            lock (_claims)
            {
                claims = [.. _claims];
                _claims.Clear();
            }
            await Task.WhenAll(claims.Select(key => db.ScriptEvaluateAsync(ReleaseScript, [ClaimKey(key)], [_nodeName]))).WaitAsync(cancellationToken).ConfigureAwait(false);
            await db.SortedSetRemoveAsync(NodesKey, _nodeName).WaitAsync(cancellationToken).ConfigureAwait(false);
            await _bus.Redis.GetSubscriber().PublishAsync(MembersChannel, "left:" + _nodeName).WaitAsync(cancellationToken).ConfigureAwait(false);
            if (_members is not null)
            {
                await _members.UnsubscribeAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            // Redis is away: the others see this node's heartbeat stop instead.
            RedisLog.PublishFailed(_logger, "members", ex.Message);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);
}
