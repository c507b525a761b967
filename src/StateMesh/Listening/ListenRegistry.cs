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
    private readonly List<Listener> _listeners = [];
    private readonly Dictionary<string, Listener> _accepted = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Search> _searches = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _turnedDownAt = new(StringComparer.Ordinal);
    private readonly ITimer _rematch;

    private sealed record Listener(Session Session, string Pattern, Regex Regex);

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
        Regex regex;
        try
        {
            regex = new Regex(pattern ?? throw new ArgumentException("no pattern"), RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100));
        }
        catch (ArgumentException)
        {
            session.SendError(message, Action(EventAction.InvalidListenRegex, RecordAction.InvalidListenRegex), $"'{pattern}' is not a valid regular expression");
            return;
        }
        if (!session.ListenPatterns.TryAdd((_topic, pattern), 0))
        {
            session.SendError(message, Action(EventAction.MultipleSubscriptions, RecordAction.MultipleSubscriptions), $"already listening to '{pattern}'");
            return;
        }
        var listener = new Listener(session, pattern, regex);
        lock (_gate)
        {
            _listeners.Add(listener);
        }
        // Names already subscribed that this listener could provide; their offers go out before the ack, so that
        // once the listener has its ack, every offer due at that moment has reached it.
        foreach (var name in _subscribers().Names)
        {
            if (Matches(listener, name))
            {
                lock (_gate)
                {
                    StartSearchIfNeeded(name, ignoreCooldown: true);
                }
            }
        }
        session.Send(new Message { Topic = _topic, Action = message.Action, Name = pattern, IsAck = true, CorrelationId = message.CorrelationId });
    }

    public void Unlisten(Session session, Message message)
    {
        var pattern = message.Name ?? "";
        if (!session.ListenPatterns.TryRemove((_topic, pattern), out _))
        {
            session.SendError(message, Action(EventAction.NotSubscribed, RecordAction.NotSubscribed), $"not listening to '{pattern}'");
            return;
        }
        lock (_gate)
        {
            RemoveListeners(l => ReferenceEquals(l.Session, session) && l.Pattern == pattern, tellProvider: true);
        }
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
        lock (_gate)
        {
            if (subscribers == 1)
            {
                StartSearchIfNeeded(name, ignoreCooldown: true);
            }
            else if (IsRecords && _accepted.ContainsKey(name))
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
        lock (_gate)
        {
            RemoveListeners(l => ReferenceEquals(l.Session, session), tellProvider: false);
        }
        if (!session.HasListenPatterns)
        {
            return;
        }
        foreach (var key in session.ListenPatterns.Keys.Where(k => k.Topic == _topic).ToArray())
        {
            session.ListenPatterns.TryRemove(key, out _);
        }
    }

    /// <summary>Removes listeners: names they provide lose their provider (and are searched again), offers to them move on. Under the gate.</summary>
    private void RemoveListeners(Func<Listener, bool> which, bool tellProvider)
    {
        _listeners.RemoveAll(l => which(l));
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
                StartSearchIfNeeded(name, ignoreCooldown: true);
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
    }

    private Message Removed(string pattern, string name) => new()
    {
        Topic = _topic, Action = Action(EventAction.SubscriptionForPatternRemoved, RecordAction.SubscriptionForPatternRemoved), Name = pattern, Subscription = name,
    };

    private static bool Matches(Listener listener, string name)
    {
        try
        {
            return listener.Regex.IsMatch(name);
        }
        catch (RegexMatchTimeoutException)
        {
            return false;
        }
    }

    /// <summary>Starts offering a subscribed name without a provider to matching listeners. Under the gate.</summary>
    private void StartSearchIfNeeded(string name, bool ignoreCooldown)
    {
        if (_accepted.ContainsKey(name) || _searches.ContainsKey(name))
        {
            return;
        }
        if (!ignoreCooldown && _turnedDownAt.TryGetValue(name, out var at) && _node.Time.GetElapsedTime(at) < _node.Options.Listen.MatchCooldown)
        {
            return;
        }
        var candidates = _listeners.Where(l => Matches(l, name)).OrderBy(_ => Random.Shared.Next()).ToList();
        if (candidates.Count == 0)
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
            if (!_listeners.Contains(next) || next.Session.State != SessionState.Open)
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
        lock (_gate)
        {
            if (_listeners.Count == 0)
            {
                return;
            }
            foreach (var name in _subscribers().Names)
            {
                StartSearchIfNeeded(name, ignoreCooldown: false);
            }
        }
    }

    public void Dispose() => _rematch.Dispose();
}
