using System.Text.RegularExpressions;
using StateMesh.Diagnostics;
using StateMesh.Protocol;
using StateMesh.Server;

namespace StateMesh.Listening;

/// <summary>
/// Active providers for one topic (events or records). A listener registers a regex; when a name matching it gains
/// its first subscriber, matching listeners are offered it one at a time (accept, reject, or no answer within the
/// response timeout); exactly one accepted provider per name. The provider hears when the last subscriber leaves;
/// if the provider goes, record subscribers hear it and the search starts again. Names left without a provider are
/// offered again every rematch interval, but not before the cooldown after everyone turned them down.
/// </summary>
/// <remarks>
/// Across nodes (one code path: a node alone is a cluster of one). The one provider of a name is a claim in the cluster
/// registry (<see cref="Cluster.IClusterRegistry.TryClaimAsync"/>), taken before a node offers the name to its own
/// listeners and kept while they are asked and while the accepted one provides: one offer at a time and exactly one
/// active provider per name, cluster-wide. The nodes tell each other on the topic's channel (<c>L/E</c>, <c>L/R</c>):
/// which nodes have listeners and their patterns, the first and last subscriber of a name on a node (only while some
/// other node listens), a name provided and no longer provided (for record subscribers' has-provider flags), and a name
/// every listener of a node turned down, which the next node with a matching listener then claims. A node whose
/// listeners match keeps which other nodes subscribe to each such name, so that its provider hears when the last
/// subscriber anywhere has gone.
/// </remarks>
internal sealed class ListenRegistry : IDisposable
{
    // Signals between nodes, in Message.Name; Subscription or Names carry the names, CorrelationId the sender.
    private const string SignalListening = "listening", SignalNoListeners = "no-listeners", SignalWhoListens = "who-listens",
        SignalInterest = "interest", SignalNoInterest = "no-interest", SignalProvided = "provided", SignalUnprovided = "unprovided",
        SignalDeclined = "declined";

    // Names per interest reply, well below the native codec's bound on names per message.
    private const int NamesPerSignal = 500;

    // A search another node's news starts waits its turn before it claims the name: the listening nodes not yet tried
    // are ranked by a hash of the name and the node (the same on every node), and each waits this long per place
    // ahead of it. Nodes hear the news at nearly the same moment; without turns the first in the bus's order, or the
    // least loaded, would always win, and with them each node is first for its share of the names.
    private const int RemoteSearchTurnMilliseconds = 50;

    private readonly NodeEngine _node;
    private readonly Topic _topic;
    private readonly Func<SubscriptionRegistry> _subscribers;
    private readonly object _gate = new();
    // Copy on write: matching reads a snapshot without the gate, so no pattern runs under a lock others need.
    private volatile Listener[] _listeners = [];
    private readonly Dictionary<string, Listener> _accepted = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Search> _searches = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _turnedDownAt = new(StringComparer.Ordinal);
    // Name → the listeners here that turned it down (rejected or let the offer time out), and when: within the match
    // cooldown none of them is asked about the name again, whatever starts the next search (a newcomer's listen, another
    // node's news). Kept while the name has interest, like the cooldown itself.
    private readonly Dictionary<string, List<(Listener Who, long At)>> _declinedBy = new(StringComparer.Ordinal);
    // Names whose claim is being asked for; no second search starts meanwhile.
    private readonly HashSet<string> _claiming = new(StringComparer.Ordinal);
    // Names whose claim was asked for again while an earlier ask was on its way (a node gave the name up meanwhile):
    // if the earlier ask fails, it is asked again, with the nodes tried as the later news said.
    private readonly Dictionary<string, string[]> _claimAgain = new(StringComparer.Ordinal);
    // Other nodes with listeners on this topic (this node tells them of its subscribers only while there are some).
    private readonly HashSet<string> _listenerNodes = new(StringComparer.Ordinal);
    private volatile int _listenerNodeCount;
    // Name → other nodes with subscribers, kept for names a listener here matches.
    private readonly Dictionary<string, HashSet<string>> _remoteInterest = new(StringComparer.Ordinal);
    // Name → the node whose listener provides it, kept while this node has subscribers of the name.
    private readonly Dictionary<string, string> _remoteProviders = new(StringComparer.Ordinal);
    private readonly ITimer _rematch;

    private sealed class Listener(Session session, string pattern, Regex regex)
    {
        public Session Session { get; } = session;
        public string Pattern { get; } = pattern;
        public Regex Regex { get; } = regex;
        public volatile bool Removed;
    }

    private sealed class Search
    {
        public required Queue<Listener> Candidates { get; init; }

        /// <summary>The nodes whose listeners turned the name down before this one was asked.</summary>
        public required string[] Tried { get; init; }

        public Listener? Offered { get; set; }
        public ITimer? Timer { get; set; }
    }

    public ListenRegistry(NodeEngine node, Topic topic, Func<SubscriptionRegistry> subscribers)
    {
        _node = node;
        _topic = topic;
        _subscribers = subscribers;
        var interval = node.Options.Listen.RematchInterval;
        _rematch = node.Time.CreateTimer(static s => ((ListenRegistry)s!).Rematch(), this, interval, interval);
    }

    private bool IsRecords => _topic == Topic.Record;

    /// <summary>The bus channel on which the nodes' listening of this topic meet.</summary>
    public string Channel => _topic == Topic.Record ? "L/R" : "L/E";

    private string Self => _node.Options.NodeName;

    /// <summary>The registry claim that makes a node the one whose listener provides <paramref name="name"/>.</summary>
    private string ClaimOf(string name) => (IsRecords ? "L/R/" : "L/E/") + name;

    private int Action(EventAction events, RecordAction records) => IsRecords ? (int)records : (int)events;

    /// <summary>Listeners registered now, for tests and metrics.</summary>
    public int ListenerCount => _listeners.Length;

    public Session? ProviderOf(string name)
    {
        lock (_gate)
        {
            return _accepted.TryGetValue(name, out var l) ? l.Session : null;
        }
    }

    /// <summary>Whether a listener here is being asked about the name now (or its claim is on its way), for tests.</summary>
    public bool IsSearching(string name)
    {
        lock (_gate)
        {
            return _searches.ContainsKey(name) || _claiming.Contains(name);
        }
    }

    public void Listen(Session session, Message message)
    {
        var pattern = message.Name;
        var limits = _node.Options.Limits;
        if (string.IsNullOrEmpty(pattern) || pattern.Length > limits.MaxListenPatternLength)
        {
            session.SendError(message, Action(EventAction.InvalidListenRegex, RecordAction.InvalidListenRegex),
                string.IsNullOrEmpty(pattern) ? "LISTEN needs a pattern" : $"a listen pattern may have at most {limits.MaxListenPatternLength} characters");
            return;
        }
        if (session.ListenPatterns.ContainsKey((_topic, pattern)))
        {
            session.SendError(message, Action(EventAction.MultipleSubscriptions, RecordAction.MultipleSubscriptions), $"already listening to '{pattern}'");
            return;
        }
        if (session.ListenPatterns.Count >= limits.ListenPatternsPerConnection)
        {
            session.SendError(message, Action(EventAction.MessageDenied, RecordAction.MessageDenied), $"a connection may listen to at most {limits.ListenPatternsPerConnection} patterns");
            return;
        }
        // Compiled only within the bounds: a client past them cannot make the node compile patterns.
        if (!TryCompile(pattern, out var regex, out var why))
        {
            session.SendError(message, Action(EventAction.InvalidListenRegex, RecordAction.InvalidListenRegex), $"'{pattern}' is not a usable regular expression: {why}");
            return;
        }
        if (!_node.Limits.ListenPatterns.TryTake())
        {
            session.SendError(message, Action(EventAction.MessageDenied, RecordAction.MessageDenied), $"the node holds its maximum of {limits.ListenPatternsPerNode} listen patterns");
            return;
        }
        if (!session.ListenPatterns.TryAdd((_topic, pattern), 0))
        {
            _node.Limits.ListenPatterns.Release();
            session.SendError(message, Action(EventAction.MultipleSubscriptions, RecordAction.MultipleSubscriptions), $"already listening to '{pattern}'");
            return;
        }
        var listener = new Listener(session, pattern, regex);
        string[] remote;
        lock (_gate)
        {
            _listeners = [.. _listeners, listener];
            remote = [.. _remoteInterest.Keys];
        }
        // The other nodes learn that this one listens, and answer with their subscribed names that match.
        Signal(SignalListening, names: [pattern]);
        // Names already subscribed that this listener could provide; their offers go out before the ack (at once when
        // the claim needs no network), so that once the listener has its ack, every offer due at that moment has reached
        // it. Matching runs outside the gate.
        foreach (var name in _subscribers().Names.Concat(remote))
        {
            if (Matches(listener, name) && !JoinSearch(name, listener))
            {
                SearchIfDue(name, [], ignoreCooldown: true);
            }
        }
        session.Send(new Message { Topic = _topic, Action = message.Action, Name = pattern, IsAck = true, CorrelationId = message.CorrelationId });
    }

    /// <summary>A search for the name is asking the listeners here: the newcomer is asked in its turn. Outside the gate.</summary>
    private bool JoinSearch(string name, Listener listener)
    {
        lock (_gate)
        {
            if (!_searches.TryGetValue(name, out var search))
            {
                return false;
            }
            if (!ReferenceEquals(search.Offered, listener) && !search.Candidates.Contains(listener))
            {
                search.Candidates.Enqueue(listener);
            }
            return true;
        }
    }

    /// <summary>
    /// Compiles a listen pattern for matching in time linear in the name (no backtracking), so no pattern can make a
    /// match slow. Constructs that need backtracking (backreferences, lookarounds, atomic groups) are refused.
    /// </summary>
    internal static bool TryCompile(string pattern, out Regex regex, out string why)
    {
        regex = null!;
        why = "";
        try
        {
            regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.NonBacktracking);
            return true;
        }
        catch (NotSupportedException ex)
        {
            why = ex.Message;
        }
        catch (ArgumentException ex)
        {
            why = ex.Message;
        }
        catch (OutOfMemoryException)
        {
            why = "the pattern is too large";
        }
        return false;
    }

    public void Unlisten(Session session, Message message)
    {
        var pattern = message.Name ?? "";
        if (!session.ListenPatterns.TryRemove((_topic, pattern), out _))
        {
            session.SendError(message, Action(EventAction.NotSubscribed, RecordAction.NotSubscribed), $"not listening to '{pattern}'");
            return;
        }
        _node.Limits.ListenPatterns.Release();
        List<string> orphaned;
        lock (_gate)
        {
            orphaned = RemoveListeners(l => ReferenceEquals(l.Session, session) && l.Pattern == pattern, tellProvider: true);
        }
        SearchAgain(orphaned);
        session.Send(new Message { Topic = _topic, Action = message.Action, Name = pattern, IsAck = true, CorrelationId = message.CorrelationId });
    }

    public void Respond(Session session, Message message, bool accepted)
    {
        var name = message.Subscription;
        if (name is null)
        {
            session.SendError(message, Action(EventAction.InvalidMessageData, RecordAction.InvalidMessageData), "LISTEN_ACCEPT and LISTEN_REJECT need the subscription name");
            return;
        }
        lock (_gate)
        {
            if (!_searches.TryGetValue(name, out var search) || search.Offered is not { } offered || !ReferenceEquals(offered.Session, session) || offered.Pattern != message.Name)
            {
                if (accepted)
                {
                    // Nothing was offered (any more): tell the provider to stop, so that it never provides unasked.
                    session.Send(Removed(message.Name ?? "", name));
                }
                return;
            }
            search.Timer?.Dispose();
            if (accepted)
            {
                _searches.Remove(name);
                _accepted[name] = offered;
                if (IsRecords)
                {
                    Fanout.Send(HasProvider(name, true), _subscribers().Get(name), null);
                }
                Signal(SignalProvided, name);
            }
            else
            {
                Declined(name, offered);
                OfferNext(name, search);
            }
        }
    }

    /// <summary>A session subscribed to a name: the first subscriber starts a search; record subscribers hear about a provider.</summary>
    public void OnSubscribed(Session session, string name, int subscribers)
    {
        if (subscribers == 1)
        {
            if (_listenerNodeCount > 0)
            {
                // Another node listens on this topic: it may have the listener for this name.
                Signal(SignalInterest, name);
            }
            if (_listeners.Length > 0)
            {
                SearchIfDue(name, [], ignoreCooldown: true);
            }
            if (!IsRecords || (_accepted.Count == 0 && _remoteProviders.Count == 0))
            {
                return;
            }
        }
        if (!IsRecords)
        {
            return;
        }
        lock (_gate)
        {
            if (_accepted.ContainsKey(name) || _remoteProviders.ContainsKey(name))
            {
                session.Send(HasProvider(name, true));
            }
        }
    }

    /// <summary>The last subscriber here left: the provider (or the listener being asked) is told, unless other nodes still subscribe.</summary>
    public void OnLastUnsubscribed(string name)
    {
        lock (_gate)
        {
            if (_subscribers().Get(name).Length > 0)
            {
                // Someone subscribed again meanwhile: their search or provider stays.
                return;
            }
            _remoteProviders.Remove(name);
            if (!_remoteInterest.ContainsKey(name))
            {
                EndName(name);
            }
        }
        if (_listenerNodeCount > 0)
        {
            Signal(SignalNoInterest, name);
        }
    }

    /// <summary>Nobody subscribes to the name anywhere any more: its provider, or the listener being asked, is told. Under the gate.</summary>
    private void EndName(string name)
    {
        if (_accepted.Remove(name, out var provider))
        {
            provider.Session.Send(Removed(provider.Pattern, name));
            _node.Registry.Release(ClaimOf(name));
        }
        if (_searches.Remove(name, out var search))
        {
            search.Timer?.Dispose();
            if (search.Offered is { } offered)
            {
                offered.Session.Send(Removed(offered.Pattern, name));
            }
            _node.Registry.Release(ClaimOf(name));
        }
        _turnedDownAt.Remove(name);
        _declinedBy.Remove(name);
    }

    /// <summary>The listener turned the name down. Under the gate.</summary>
    private void Declined(string name, Listener listener)
    {
        if (!_declinedBy.TryGetValue(name, out var by))
        {
            _declinedBy[name] = by = [];
        }
        var now = _node.Time.GetTimestamp();
        by.RemoveAll(d => ReferenceEquals(d.Who, listener) || d.Who.Removed || _node.Time.GetElapsedTime(d.At) >= _node.Options.Listen.MatchCooldown);
        by.Add((listener, now));
    }

    /// <summary>Leaves out the candidates that turned the name down within the match cooldown. Under the gate.</summary>
    private List<Listener> NotDeclined(string name, List<Listener> candidates)
    {
        if (!_declinedBy.TryGetValue(name, out var by))
        {
            return candidates;
        }
        var cooldown = _node.Options.Listen.MatchCooldown;
        return candidates.FindAll(c => !by.Exists(d => ReferenceEquals(d.Who, c) && _node.Time.GetElapsedTime(d.At) < cooldown));
    }

    public void RemoveSession(Session session)
    {
        if (!session.HasListenPatterns)
        {
            // Never listened (or not any more): nothing it could provide or be offered.
            return;
        }
        List<string> orphaned;
        lock (_gate)
        {
            orphaned = RemoveListeners(l => ReferenceEquals(l.Session, session), tellProvider: false);
        }
        SearchAgain(orphaned);
        foreach (var key in session.ListenPatterns.Keys.Where(k => k.Topic == _topic).ToArray())
        {
            if (session.ListenPatterns.TryRemove(key, out _))
            {
                _node.Limits.ListenPatterns.Release();
            }
        }
    }

    /// <summary>
    /// Removes listeners: names they provided lose their provider, offers to them move on. Under the gate; returns the
    /// names that need a new search, which the caller starts once it has left the gate (matching runs outside it).
    /// </summary>
    private List<string> RemoveListeners(Func<Listener, bool> which, bool tellProvider)
    {
        var orphaned = new List<string>();
        var removed = _listeners.Where(which).ToArray();
        if (removed.Length > 0)
        {
            foreach (var listener in removed)
            {
                listener.Removed = true;
            }
            _listeners = _listeners.Where(l => !l.Removed).ToArray();
            if (_listeners.Length == 0)
            {
                // What other nodes told this one about their subscribers served its listeners only.
                Signal(SignalNoListeners);
            }
        }
        foreach (var (name, provider) in _accepted.Where(kv => which(kv.Value)).ToArray())
        {
            _accepted.Remove(name);
            _node.Registry.Release(ClaimOf(name));
            if (tellProvider)
            {
                provider.Session.Send(Removed(provider.Pattern, name));
            }
            var subscribers = _subscribers().Get(name);
            if (IsRecords)
            {
                Fanout.Send(HasProvider(name, false), subscribers, null);
            }
            Signal(SignalUnprovided, name);
            if (HasInterest(name))
            {
                orphaned.Add(name);
            }
        }
        foreach (var (name, search) in _searches.ToArray())
        {
            // Candidates still queued are filtered when their turn comes; an open offer moves on now.
            if (search.Offered is { } offered && which(offered))
            {
                search.Timer?.Dispose();
                if (tellProvider)
                {
                    offered.Session.Send(Removed(offered.Pattern, name));
                }
                OfferNext(name, search);
            }
        }
        if (_listeners.Length == 0)
        {
            _remoteInterest.Clear();
        }
        return orphaned;
    }

    private Message Removed(string pattern, string name) => new()
    {
        Topic = _topic, Action = Action(EventAction.SubscriptionForPatternRemoved, RecordAction.SubscriptionForPatternRemoved), Name = pattern, Subscription = name,
    };

    private static Message HasProvider(string name, bool has) => new()
    {
        Topic = Topic.Record, Action = (int)(has ? RecordAction.SubscriptionHasProvider : RecordAction.SubscriptionHasNoProvider), Name = name,
    };

    private static bool Matches(Listener listener, string name) => !listener.Removed && listener.Regex.IsMatch(name);

    /// <summary>Someone subscribes to the name, here or on another node. Under the gate.</summary>
    private bool HasInterest(string name) => _subscribers().Get(name).Length > 0 || _remoteInterest.ContainsKey(name);

    /// <summary>The listeners whose pattern matches the name, in random order. Outside the gate.</summary>
    private List<Listener> CandidatesFor(string name)
    {
        var candidates = new List<Listener>();
        foreach (var listener in _listeners)
        {
            if (Matches(listener, name))
            {
                candidates.Add(listener);
            }
        }
        Random.Shared.Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(candidates));
        return candidates;
    }

    /// <summary>Names that lost their provider are offered to the listeners left. Outside the gate.</summary>
    private void SearchAgain(List<string> names)
    {
        foreach (var name in names)
        {
            SearchIfDue(name, [], ignoreCooldown: true);
        }
    }

    /// <summary>
    /// Offers a subscribed name without a provider to the listeners here that match it, once this node holds the name's
    /// claim: while another node holds it, that node is asking its own listeners or provides. Outside the gate (patterns
    /// are matched here); completes at once when the claim needs no network.
    /// </summary>
    private void SearchIfDue(string name, string[] tried, bool ignoreCooldown)
    {
        var candidates = CandidatesFor(name);
        if (candidates.Count == 0)
        {
            return;
        }
        lock (_gate)
        {
            if (_claiming.Contains(name))
            {
                // The claim may have been refused on its way because another node held it then and has given it up since.
                _claimAgain[name] = tried;
                return;
            }
            candidates = NotDeclined(name, candidates);
            if (candidates.Count == 0 || !IsDue(name, ignoreCooldown) || !_claiming.Add(name))
            {
                return;
            }
        }
        ValueTask<bool> claim;
        try
        {
            claim = _node.Registry.TryClaimAsync(ClaimOf(name), CancellationToken.None);
        }
        catch (Exception ex)
        {
            claim = ValueTask.FromException<bool>(ex);
        }
        if (claim.IsCompletedSuccessfully)
        {
            Claimed(name, candidates, tried, claim.Result);
        }
        else
        {
            _ = ClaimedLaterAsync(name, tried, claim);
        }
    }

    private async Task ClaimedLaterAsync(string name, string[] tried, ValueTask<bool> claim)
    {
        var claimed = false;
        try
        {
            claimed = await claim.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // The registry is away (Redis down): the rematch tries again.
            NodeLog.ClusterMessageFailed(_node.Logger, Channel, ex);
        }
        // Listeners may have come (or gone) while the claim was on its way: all that match now are asked.
        Claimed(name, CandidatesFor(name), tried, claimed);
    }

    /// <summary>The claim was answered: this node's listeners are asked, unless the name no longer needs it.</summary>
    private void Claimed(string name, List<Listener> candidates, string[] tried, bool claimed)
    {
        if (!claimed)
        {
            string[]? again;
            lock (_gate)
            {
                _claiming.Remove(name);
                _claimAgain.Remove(name, out again);
            }
            if (again is not null)
            {
                SearchIfDue(name, again, ignoreCooldown: false);
            }
            return;
        }
        lock (_gate)
        {
            _claiming.Remove(name);
            _claimAgain.Remove(name);
            // The name may have lost its last subscriber, or found a provider elsewhere, while the claim was asked for.
            if (!IsDue(name, ignoreCooldown: true))
            {
                if (!_accepted.ContainsKey(name) && !_searches.ContainsKey(name))
                {
                    _node.Registry.Release(ClaimOf(name));
                }
                return;
            }
            var search = new Search { Candidates = new Queue<Listener>(NotDeclined(name, candidates)), Tried = tried };
            _searches[name] = search;
            OfferNext(name, search);
        }
    }

    /// <summary>The name has subscribers and no provider, search or claim in flight here, nor a provider elsewhere. Under the gate.</summary>
    private bool IsDue(string name, bool ignoreCooldown) =>
        !_accepted.ContainsKey(name) && !_searches.ContainsKey(name) && !_claiming.Contains(name) && !_remoteProviders.ContainsKey(name)
        && HasInterest(name)
        && (ignoreCooldown || !(_turnedDownAt.TryGetValue(name, out var at) && _node.Time.GetElapsedTime(at) < _node.Options.Listen.MatchCooldown));

    /// <summary>
    /// Offers the name to the next candidate still listening; when none is left, gives the claim up and tells the other
    /// nodes, whose listeners are asked next. Under the gate.
    /// </summary>
    private void OfferNext(string name, Search search)
    {
        while (search.Candidates.TryDequeue(out var next))
        {
            if (next.Removed || next.Session.State != SessionState.Open)
            {
                continue;
            }
            search.Offered = next;
            search.Timer = _node.Time.CreateTimer(static s =>
            {
                var (registry, n, l) = ((ListenRegistry, string, Listener))s!;
                registry.OnResponseTimeout(n, l);
            }, (this, name, next), _node.Options.Listen.ResponseTimeout, Timeout.InfiniteTimeSpan);
            next.Session.Send(new Message
            {
                Topic = _topic, Action = Action(EventAction.SubscriptionForPatternFound, RecordAction.SubscriptionForPatternFound),
                Name = next.Pattern, Subscription = name,
            });
            return;
        }
        search.Offered = null;
        _searches.Remove(name);
        _turnedDownAt[name] = _node.Time.GetTimestamp();
        _node.Registry.Release(ClaimOf(name));
        if (_listenerNodeCount > 0)
        {
            Signal(SignalDeclined, name, [.. search.Tried, Self]);
        }
    }

    private void OnResponseTimeout(string name, Listener listener)
    {
        lock (_gate)
        {
            if (_searches.TryGetValue(name, out var search) && ReferenceEquals(search.Offered, listener))
            {
                // Silence counts as a reject; the listener is told, as deepstream tells it.
                listener.Session.Send(new Message
                {
                    Topic = _topic, Action = Action(EventAction.ListenResponseTimeout, RecordAction.ListenResponseTimeout),
                    Name = listener.Pattern, Subscription = name, IsError = true,
                });
                Declined(name, listener);
                OfferNext(name, search);
            }
        }
    }

    private void Rematch()
    {
        if (_listeners.Length == 0)
        {
            return;
        }
        string[] remote;
        lock (_gate)
        {
            remote = [.. _remoteInterest.Keys];
        }
        foreach (var name in _subscribers().Names.Concat(remote))
        {
            bool due;
            lock (_gate)
            {
                due = IsDue(name, ignoreCooldown: false);
            }
            if (due)
            {
                SearchIfDue(name, [], ignoreCooldown: false);
            }
        }
    }

    // ---- Between nodes ----

    /// <summary>Tells the other nodes; never blocks (the bus queues it).</summary>
    private void Signal(string signal, string? name = null, string[]? names = null) =>
        _node.Bus.Publish(Channel, new Message { Topic = _topic, Action = Action(EventAction.Listen, RecordAction.Listen), Name = signal, Subscription = name, Names = names, CorrelationId = Self });

    /// <summary>At start, and when a node joins or comes back: who listens, and this node's own patterns for the newcomer.</summary>
    public void Announce()
    {
        Signal(SignalWhoListens);
        AnnouncePatterns();
    }

    private void AnnouncePatterns()
    {
        var patterns = _listeners.Where(l => !l.Removed).Select(l => l.Pattern).Distinct(StringComparer.Ordinal).ToArray();
        if (patterns.Length > 0)
        {
            Signal(SignalListening, names: patterns);
        }
    }

    /// <summary>What another node said on <see cref="Channel"/>.</summary>
    public void OnRemote(Message message)
    {
        if (message.CorrelationId is not { Length: > 0 } from || from == Self)
        {
            return;
        }
        switch (message.Name)
        {
            case SignalWhoListens:
                AnnouncePatterns();
                return;
            case SignalListening:
                OnRemoteListening(from, message.Names ?? []);
                return;
            case SignalNoListeners:
                lock (_gate)
                {
                    _listenerNodes.Remove(from);
                    _listenerNodeCount = _listenerNodes.Count;
                }
                return;
            case SignalInterest:
                foreach (var name in NamesOf(message))
                {
                    OnRemoteInterest(from, name);
                }
                return;
            case SignalNoInterest when message.Subscription is { } name:
                lock (_gate)
                {
                    if (_remoteInterest.TryGetValue(name, out var nodes) && nodes.Remove(from) && nodes.Count == 0)
                    {
                        _remoteInterest.Remove(name);
                        if (_subscribers().Get(name).Length == 0)
                        {
                            EndName(name);
                        }
                    }
                }
                return;
            case SignalProvided when message.Subscription is { } name:
                lock (_gate)
                {
                    var subscribers = _subscribers().Get(name);
                    if (subscribers.Length > 0 && _remoteProviders.TryAdd(name, from) && IsRecords)
                    {
                        Fanout.Send(HasProvider(name, true), subscribers, null);
                    }
                }
                return;
            case SignalUnprovided when message.Subscription is { } name:
                bool lost;
                lock (_gate)
                {
                    lost = _remoteProviders.TryGetValue(name, out var by) && by == from && _remoteProviders.Remove(name);
                    if (lost && IsRecords)
                    {
                        Fanout.Send(HasProvider(name, false), _subscribers().Get(name), null);
                    }
                }
                SearchIfDue(name, [], ignoreCooldown: true);
                return;
            case SignalDeclined when message.Subscription is { } name:
                var tried = message.Names ?? [];
                if (!tried.Contains(Self, StringComparer.Ordinal))
                {
                    SearchSoon(name, tried);
                }
                return;
        }
    }

    private static IEnumerable<string> NamesOf(Message message) =>
        message.Subscription is { } one ? [one] : message.Names ?? [];

    /// <summary>Another node listens: it hears of this node's subscribed names that its new patterns match.</summary>
    private void OnRemoteListening(string from, string[] patterns)
    {
        lock (_gate)
        {
            _listenerNodes.Add(from);
            _listenerNodeCount = _listenerNodes.Count;
        }
        var regexes = new List<Regex>();
        foreach (var pattern in patterns)
        {
            // The other node accepted the pattern within the same bounds; the same compiler runs it in linear time.
            if (pattern.Length <= _node.Options.Limits.MaxListenPatternLength && TryCompile(pattern, out var regex, out _))
            {
                regexes.Add(regex);
            }
        }
        if (regexes.Count == 0)
        {
            return;
        }
        var matching = _subscribers().Names.Where(name => regexes.Exists(r => r.IsMatch(name))).ToList();
        for (var i = 0; i < matching.Count; i += NamesPerSignal)
        {
            Signal(SignalInterest, names: [.. matching.Skip(i).Take(NamesPerSignal)]);
        }
    }

    /// <summary>Another node has subscribers of the name: if a listener here matches, it may be offered it.</summary>
    private void OnRemoteInterest(string from, string name)
    {
        if (!_listeners.Any(l => Matches(l, name)))
        {
            return;
        }
        bool provided;
        lock (_gate)
        {
            if (!_remoteInterest.TryGetValue(name, out var nodes))
            {
                _remoteInterest[name] = nodes = new HashSet<string>(StringComparer.Ordinal);
            }
            nodes.Add(from);
            provided = _accepted.ContainsKey(name);
        }
        if (provided)
        {
            // The newcomer's subscribers hear that the name has its provider here.
            Signal(SignalProvided, name);
            return;
        }
        SearchSoon(name, []);
    }

    /// <summary>A search started by another node's news: at this node's turn for the name (see <see cref="RemoteSearchTurnMilliseconds"/>).</summary>
    private void SearchSoon(string name, string[] tried)
    {
        int ahead;
        lock (_gate)
        {
            var mine = Rank(name, Self);
            ahead = _listenerNodes.Count(n => !tried.Contains(n, StringComparer.Ordinal) && Rank(name, n) < mine);
        }
        if (ahead == 0)
        {
            SearchIfDue(name, tried, ignoreCooldown: false);
            return;
        }
        var state = new SoonState(this, name, tried);
        state.Timer = _node.Time.CreateTimer(static s =>
        {
            var soon = (SoonState)s!;
            soon.Timer?.Dispose();
            // Another node's news never makes this node ask its listeners again about a name they just turned down.
            soon.Registry.SearchIfDue(soon.Name, soon.Tried, ignoreCooldown: false);
        }, state, TimeSpan.FromMilliseconds(ahead * RemoteSearchTurnMilliseconds), Timeout.InfiniteTimeSpan);
    }

    /// <summary>A node's place for a name: FNV-1a over both, the same in every process (unlike string hash codes).</summary>
    private static uint Rank(string name, string node)
    {
        var hash = 2166136261u;
        foreach (var c in name)
        {
            hash = (hash ^ c) * 16777619u;
        }
        hash = (hash ^ '/') * 16777619u;
        foreach (var c in node)
        {
            hash = (hash ^ c) * 16777619u;
        }
        return hash;
    }

    private sealed class SoonState(ListenRegistry registry, string name, string[] tried)
    {
        public ListenRegistry Registry { get; } = registry;
        public string Name { get; } = name;
        public string[] Tried { get; } = tried;
        public ITimer? Timer { get; set; }
    }

    /// <summary>A node left the cluster: its subscribers no longer count, and a name it provided is searched for again.</summary>
    public void OnNodeLeft(string nodeName)
    {
        var again = new List<string>();
        lock (_gate)
        {
            _listenerNodes.Remove(nodeName);
            _listenerNodeCount = _listenerNodes.Count;
            foreach (var (name, nodes) in _remoteInterest.ToArray())
            {
                if (nodes.Remove(nodeName) && nodes.Count == 0)
                {
                    _remoteInterest.Remove(name);
                    if (_subscribers().Get(name).Length == 0)
                    {
                        EndName(name);
                    }
                }
            }
            foreach (var (name, by) in _remoteProviders.ToArray())
            {
                if (by == nodeName)
                {
                    _remoteProviders.Remove(name);
                    if (IsRecords)
                    {
                        Fanout.Send(HasProvider(name, false), _subscribers().Get(name), null);
                    }
                    again.Add(name);
                }
            }
            // Names the left node was asking its listeners about (it held their claim, now free) may be due here.
            again.AddRange(_remoteInterest.Keys);
        }
        if (_listeners.Length == 0)
        {
            // Nothing here to offer a name to: a node without listeners only had to forget the left node.
            return;
        }
        again.AddRange(_subscribers().Names);
        foreach (var name in again.Distinct(StringComparer.Ordinal))
        {
            SearchIfDue(name, [], ignoreCooldown: true);
        }
    }

    public void Dispose() => _rematch.Dispose();
}
