using System.Text.RegularExpressions;
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
internal sealed class ListenRegistry : IDisposable
{
    private readonly NodeEngine _node;
    private readonly Topic _topic;
    private readonly Func<SubscriptionRegistry> _subscribers;
    private readonly object _gate = new();
    // Copy on write: matching reads a snapshot without the gate, so no pattern runs under a lock others need.
    private volatile Listener[] _listeners = [];
    private readonly Dictionary<string, Listener> _accepted = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Search> _searches = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _turnedDownAt = new(StringComparer.Ordinal);
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
        lock (_gate)
        {
            _listeners = [.. _listeners, listener];
        }
        // Names already subscribed that this listener could provide; their offers go out before the ack, so that
        // once the listener has its ack, every offer due at that moment has reached it. Matching runs outside the gate.
        foreach (var name in _subscribers().Names)
        {
            if (Matches(listener, name))
            {
                var candidates = CandidatesFor(name);
                lock (_gate)
                {
                    StartSearchIfNeeded(name, candidates, ignoreCooldown: true);
                }
            }
        }
        session.Send(new Message { Topic = _topic, Action = message.Action, Name = pattern, IsAck = true, CorrelationId = message.CorrelationId });
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
                    Fanout.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscriptionHasProvider, Name = name }, _subscribers().Get(name), null);
                }
            }
            else
            {
                OfferNext(name, search);
            }
        }
    }

    /// <summary>A session subscribed to a name: the first subscriber starts a search; later ones on records hear about a provider.</summary>
    public void OnSubscribed(Session session, string name, int subscribers)
    {
        if (subscribers == 1)
        {
            if (_listeners.Length == 0)
            {
                return;
            }
            var candidates = CandidatesFor(name);
            if (candidates.Count == 0)
            {
                return;
            }
            lock (_gate)
            {
                StartSearchIfNeeded(name, candidates, ignoreCooldown: true);
            }
            return;
        }
        lock (_gate)
        {
            if (IsRecords && _accepted.ContainsKey(name))
            {
                session.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscriptionHasProvider, Name = name });
            }
        }
    }

    /// <summary>The last subscriber left: the provider (or the listener being asked) is told.</summary>
    public void OnLastUnsubscribed(string name)
    {
        lock (_gate)
        {
            if (_subscribers().Get(name).Length > 0)
            {
                // Someone subscribed again meanwhile: their search or provider stays.
                return;
            }
            if (_accepted.Remove(name, out var provider))
            {
                provider.Session.Send(Removed(provider.Pattern, name));
            }
            if (_searches.Remove(name, out var search))
            {
                search.Timer?.Dispose();
                if (search.Offered is { } offered)
                {
                    offered.Session.Send(Removed(offered.Pattern, name));
                }
            }
            _turnedDownAt.Remove(name);
        }
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
        }
        foreach (var (name, provider) in _accepted.Where(kv => which(kv.Value)).ToArray())
        {
            _accepted.Remove(name);
            if (tellProvider)
            {
                provider.Session.Send(Removed(provider.Pattern, name));
            }
            var subscribers = _subscribers().Get(name);
            if (IsRecords)
            {
                Fanout.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscriptionHasNoProvider, Name = name }, subscribers, null);
            }
            if (subscribers.Length > 0)
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
        return orphaned;
    }

    private Message Removed(string pattern, string name) => new()
    {
        Topic = _topic, Action = Action(EventAction.SubscriptionForPatternRemoved, RecordAction.SubscriptionForPatternRemoved), Name = pattern, Subscription = name,
    };

    private static bool Matches(Listener listener, string name) => !listener.Removed && listener.Regex.IsMatch(name);

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
            var candidates = CandidatesFor(name);
            lock (_gate)
            {
                StartSearchIfNeeded(name, candidates, ignoreCooldown: true);
            }
        }
    }

    /// <summary>Starts offering a subscribed name without a provider to the given matching listeners. Under the gate.</summary>
    private void StartSearchIfNeeded(string name, List<Listener> candidates, bool ignoreCooldown)
    {
        // Candidates were matched outside the gate: the name may have lost its last subscriber meanwhile.
        if (candidates.Count == 0 || _accepted.ContainsKey(name) || _searches.ContainsKey(name) || _subscribers().Get(name).Length == 0)
        {
            return;
        }
        if (!ignoreCooldown && _turnedDownAt.TryGetValue(name, out var at) && _node.Time.GetElapsedTime(at) < _node.Options.Listen.MatchCooldown)
        {
            return;
        }
        var search = new Search { Candidates = new Queue<Listener>(candidates) };
        _searches[name] = search;
        OfferNext(name, search);
    }

    /// <summary>Offers the name to the next candidate still listening, or gives up until the rematch. Under the gate.</summary>
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
        foreach (var name in _subscribers().Names)
        {
            bool due;
            lock (_gate)
            {
                due = !_accepted.ContainsKey(name) && !_searches.ContainsKey(name)
                    && !(_turnedDownAt.TryGetValue(name, out var at) && _node.Time.GetElapsedTime(at) < _node.Options.Listen.MatchCooldown);
            }
            if (!due)
            {
                continue;
            }
            var candidates = CandidatesFor(name);
            lock (_gate)
            {
                StartSearchIfNeeded(name, candidates, ignoreCooldown: false);
            }
        }
    }

    public void Dispose() => _rematch.Dispose();
}
