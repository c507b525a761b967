using StateMesh.Protocol;

namespace StateMesh.Server;

/// <summary>Events: bulk subscribe and unsubscribe with acks, and emit to every subscriber but the sender.</summary>
internal sealed class EventsTopic
{
    private readonly NodeEngine node;
    private readonly SubscriptionRegistry _registry = new();

    public EventsTopic(NodeEngine node)
    {
        this.node = node;
        Listening = new Listening.ListenRegistry(node, Topic.Event, () => _registry);
    }

    public Listening.ListenRegistry Listening { get; }

    public SubscriptionRegistry Registry => _registry;

    public void Handle(Session session, Message message)
    {
        switch ((EventAction)message.Action)
        {
            case EventAction.Emit:
                if (string.IsNullOrEmpty(message.Name))
                {
                    session.SendError(message, (int)EventAction.InvalidMessageData, "EMIT needs an event name");
                    return;
                }
                var emit = new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = message.Name, Data = message.Data };
                Fanout.Send(emit, _registry.Get(message.Name), session);
                node.Bus.Publish(Cluster.ClusterChannels.Event(message.Name), emit);
                return;
            case EventAction.Subscribe:
            case EventAction.Unsubscribe:
                HandleBulk(session, message);
                return;
            case EventAction.Listen:
                Listening.Listen(session, message);
                return;
            case EventAction.Unlisten:
                Listening.Unlisten(session, message);
                return;
            case EventAction.ListenAccept:
            case EventAction.ListenReject:
                Listening.Respond(session, message, message.Action == (int)EventAction.ListenAccept);
                return;
            default:
                node.UnknownAction(session, message);
                return;
        }
    }

    private void HandleBulk(Session session, Message message)
    {
        var subscribe = message.Action == (int)EventAction.Subscribe;
        var names = message.Names ?? (message.Name is not null ? [message.Name] : null);
        if (names is null || names.Length == 0)
        {
            session.SendError(message, (int)EventAction.InvalidMessageData, "SUBSCRIBE and UNSUBSCRIBE need names");
            return;
        }
        foreach (var name in names)
        {
            if (string.IsNullOrEmpty(name))
            {
                session.SendError(message with { Name = name }, (int)EventAction.InvalidMessageData, "an event name must not be empty");
                continue;
            }
            if (subscribe)
            {
                if (session.EventSubscriptions.Contains(name))
                {
                    session.SendError(new Message { Topic = Topic.Event, Action = message.Action, Name = name }, (int)EventAction.MultipleSubscriptions, null);
                    continue;
                }
                var limits = node.Options.Limits;
                if (session.EventSubscriptions.Count >= limits.EventSubscriptionsPerConnection)
                {
                    session.SendError(new Message { Topic = Topic.Event, Action = message.Action, Name = name, CorrelationId = message.CorrelationId }, (int)EventAction.MessageDenied,
                        $"a connection may subscribe to at most {limits.EventSubscriptionsPerConnection} events");
                    continue;
                }
                if (!node.Limits.Subscriptions.TryTake())
                {
                    session.SendError(new Message { Topic = Topic.Event, Action = message.Action, Name = name, CorrelationId = message.CorrelationId }, (int)EventAction.MessageDenied,
                        $"the node holds its maximum of {limits.SubscriptionsPerNode} subscriptions");
                    continue;
                }
                session.EventSubscriptions.Add(name);
                _ = node.Bus.Subscribe(Cluster.ClusterChannels.Event(name));
                Listening.OnSubscribed(session, name, _registry.Add(name, session));
            }
            else
            {
                if (!session.EventSubscriptions.Remove(name))
                {
                    session.SendError(new Message { Topic = Topic.Event, Action = message.Action, Name = name }, (int)EventAction.NotSubscribed, null);
                    continue;
                }
                node.Limits.Subscriptions.Release();
                node.Bus.Unsubscribe(Cluster.ClusterChannels.Event(name));
                if (_registry.Remove(name, session) == 0)
                {
                    Listening.OnLastUnsubscribed(name);
                }
            }
        }
        session.Send(new Message { Topic = Topic.Event, Action = message.Action, CorrelationId = message.CorrelationId, IsAck = true });
    }

    /// <summary>An event another node's client emitted: to every local subscriber.</summary>
    public void OnRemoteEmit(string name, Message emit) => Fanout.Send(emit, _registry.Get(name), null);

    public void RemoveSession(Session session)
    {
        foreach (var name in session.EventSubscriptions)
        {
            node.Bus.Unsubscribe(Cluster.ClusterChannels.Event(name));
            if (_registry.Remove(name, session) == 0)
            {
                Listening.OnLastUnsubscribed(name);
            }
        }
        node.Limits.Subscriptions.Release(session.EventSubscriptions.Count);
        session.EventSubscriptions.Clear();
        Listening.RemoveSession(session);
    }
}
