using System.Reactive.Disposables;
using System.Reactive.Linq;
using StateMesh.Protocol;

namespace StateMesh.Client;

/// <summary>
/// A name this client could provide: a record or event name that matches its listen pattern and gained subscribers.
/// Accept to become its one provider, or reject so the node asks another listener. <see cref="Removed"/> fires when
/// the last subscriber leaves, the offer lapses, or the connection is lost.
/// </summary>
public sealed class ListenOffer
{
    private readonly Action<bool> _respond;
    private int _answered;

    internal ListenOffer(string pattern, string name, Action<bool> respond, CancellationToken removed)
    {
        Pattern = pattern;
        Name = name;
        _respond = respond;
        Removed = removed;
    }

    /// <summary>The pattern that matched.</summary>
    public string Pattern { get; }

    /// <summary>The subscribed name.</summary>
    public string Name { get; }

    /// <summary>Cancelled when this client should stop providing the name.</summary>
    public CancellationToken Removed { get; }

    /// <summary>Become the provider.</summary>
    public void Accept() => Answer(true);

    /// <summary>Let another listener provide it.</summary>
    public void Reject() => Answer(false);

    private void Answer(bool accept)
    {
        if (Interlocked.Exchange(ref _answered, 1) == 0)
        {
            _respond(accept);
        }
    }
}

/// <summary>Listening for one topic: patterns, their offers, re-listen after reconnect.</summary>
internal sealed class ListenClient(StateMeshClient client, Topic topic)
{
    private readonly Dictionary<string, Listening> _patterns = new(StringComparer.Ordinal);

    private sealed class Listening
    {
        public required IObserver<ListenOffer> Observer { get; init; }
        public Dictionary<string, CancellationTokenSource> Offers { get; } = new(StringComparer.Ordinal);
    }

    private int Action(EventAction events, RecordAction records) => topic == Topic.Record ? (int)records : (int)events;

    private object Gate => client.Gate;

    public IObservable<ListenOffer> Listen(string pattern)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        _ = new System.Text.RegularExpressions.Regex(pattern); // a bad pattern throws here, not on the node
        return Observable.Create<ListenOffer>(observer =>
        {
            lock (Gate)
            {
                if (!_patterns.TryAdd(pattern, new Listening { Observer = observer }))
                {
                    observer.OnError(new InvalidOperationException($"This client already listens to '{pattern}'."));
                    return Disposable.Empty;
                }
                client.TrySendIfOpen(new Message { Topic = topic, Action = Action(EventAction.Listen, RecordAction.Listen), Name = pattern });
            }
            return Disposable.Create(() =>
            {
                lock (Gate)
                {
                    if (_patterns.Remove(pattern, out var listening))
                    {
                        CancelAll(listening);
                        client.TrySendIfOpen(new Message { Topic = topic, Action = Action(EventAction.Unlisten, RecordAction.Unlisten), Name = pattern });
                    }
                }
            });
        });
    }

    /// <summary>True when the message was a listening message.</summary>
    public bool Handle(Message message)
    {
        if (message.OriginalAction == Action(EventAction.Listen, RecordAction.Listen) && message.Name is { } refusedPattern
            && (message.Action == Action(EventAction.MessageDenied, RecordAction.MessageDenied) || message.Action == Action(EventAction.MessagePermissionError, RecordAction.MessagePermissionError)))
        {
            // The permissions refused the pattern: the listener hears it as the end of its offers.
            IObserver<ListenOffer>? refused = null;
            lock (Gate)
            {
                if (_patterns.Remove(refusedPattern, out var listening))
                {
                    CancelAll(listening);
                    refused = listening.Observer;
                }
            }
            refused?.OnError(new StateMeshProtocolException($"The node refused to let this client listen to '{refusedPattern}': {ActionNames.Of(topic, message.Action)}.", topic, message.Action));
            return refused is not null;
        }
        var found = Action(EventAction.SubscriptionForPatternFound, RecordAction.SubscriptionForPatternFound);
        var removed = Action(EventAction.SubscriptionForPatternRemoved, RecordAction.SubscriptionForPatternRemoved);
        var timeout = Action(EventAction.ListenResponseTimeout, RecordAction.ListenResponseTimeout);
        if (message.Action != found && message.Action != removed && message.Action != timeout)
        {
            return message.IsAck && (message.Action == Action(EventAction.Listen, RecordAction.Listen) || message.Action == Action(EventAction.Unlisten, RecordAction.Unlisten));
        }
        var pattern = message.Name ?? "";
        var name = message.Subscription ?? "";
        ListenOffer? offer = null;
        IObserver<ListenOffer>? observer = null;
        lock (Gate)
        {
            if (!_patterns.TryGetValue(pattern, out var listening))
            {
                if (message.Action == found)
                {
                    client.TrySendIfOpen(Respond(pattern, name, accept: false));
                }
                return true;
            }
            if (message.Action == found)
            {
                var cts = new CancellationTokenSource();
                if (listening.Offers.Remove(name, out var stale))
                {
                    stale.Cancel();
                }
                listening.Offers[name] = cts;
                offer = new ListenOffer(pattern, name, accept =>
                {
                    client.TrySendIfOpen(Respond(pattern, name, accept));
                    if (!accept)
                    {
                        // The node says nothing more about a rejected offer: forget it now.
                        lock (Gate)
                        {
                            if (listening.Offers.TryGetValue(name, out var current) && current == cts)
                            {
                                listening.Offers.Remove(name);
                            }
                        }
                        cts.Cancel();
                    }
                }, cts.Token);
                observer = listening.Observer;
            }
            else if (listening.Offers.Remove(name, out var cts))
            {
                cts.Cancel();
            }
        }
        if (offer is not null)
        {
            try
            {
                observer!.OnNext(offer);
            }
            catch (Exception ex)
            {
                ClientLog.ObserverFailed(client.Logger, pattern, ex);
            }
        }
        return true;
    }

    private Message Respond(string pattern, string name, bool accept) => new()
    {
        Topic = topic,
        Action = accept ? Action(EventAction.ListenAccept, RecordAction.ListenAccept) : Action(EventAction.ListenReject, RecordAction.ListenReject),
        Name = pattern,
        Subscription = name,
    };

    private static void CancelAll(Listening listening)
    {
        foreach (var cts in listening.Offers.Values)
        {
            cts.Cancel();
        }
        listening.Offers.Clear();
    }

    /// <summary>Called under the client's gate once logged in: listen again to every pattern.</summary>
    public void OnOpened(ClientLink link)
    {
        foreach (var pattern in _patterns.Keys)
        {
            link.TrySend(new Message { Topic = topic, Action = Action(EventAction.Listen, RecordAction.Listen), Name = pattern });
        }
    }

    /// <summary>The connection is gone: every offer stops.</summary>
    public void OnConnectionLost()
    {
        lock (Gate)
        {
            foreach (var listening in _patterns.Values)
            {
                CancelAll(listening);
            }
        }
    }
}
