using System.Text.Json;
using System.Text.Json.Nodes;
using StateMesh.Protocol;
using StateMesh.Server;

namespace StateMesh.Presence;

/// <summary>
/// Who is online: authenticated users with an id (anonymous users and the node's own client do not count);
/// several connections of one user count once. Joins and leaves go to everyone subscribed to all, and to
/// those subscribed to that user.
/// </summary>
internal sealed class PresenceTopic(NodeEngine node)
{
    private readonly Dictionary<string, int> _connections = new(StringComparer.Ordinal);
    private readonly object _gate = new();
    private volatile Session[] _everyone = [];

    public SubscriptionRegistry PerUser { get; } = new();

    public int OnlineCount
    {
        get { lock (_gate) { return _connections.Count; } }
    }

    public void OnAuthenticated(Session session)
    {
        if (!session.CountsForPresence)
        {
            return;
        }
        var user = session.UserId!;
        lock (_gate)
        {
            session.CountedForPresence = true;
            _connections[user] = _connections.GetValueOrDefault(user) + 1;
            if (_connections[user] == 1)
            {
                // Under the gate, so that a join and the leave after it reach subscribers in that order.
                Announce(user, joined: true, except: session);
            }
        }
    }

    public void RemoveSession(Session session)
    {
        if (session.PresenceSubscribedToAll)
        {
            RemoveFromEveryone(session);
        }
        foreach (var user in session.PresenceSubscriptions)
        {
            PerUser.Remove(user, session);
        }
        session.PresenceSubscriptions.Clear();
        if (!session.CountedForPresence || session.UserId is not { } user2)
        {
            return;
        }
        lock (_gate)
        {
            if (!_connections.TryGetValue(user2, out var count))
            {
                return;
            }
            if (count > 1)
            {
                _connections[user2] = count - 1;
                return;
            }
            _connections.Remove(user2);
            Announce(user2, joined: false, except: session);
        }
    }

    private void Announce(string user, bool joined, Session except)
    {
        Fanout.Send(new Message { Topic = Topic.Presence, Action = (int)(joined ? PresenceAction.PresenceJoinAll : PresenceAction.PresenceLeaveAll), Name = user }, _everyone, except);
        Fanout.Send(new Message { Topic = Topic.Presence, Action = (int)(joined ? PresenceAction.PresenceJoin : PresenceAction.PresenceLeave), Name = user }, PerUser.Get(user), except);
    }

    public void Handle(Session session, Message message)
    {
        switch ((PresenceAction)message.Action)
        {
            case PresenceAction.QueryAll:
                string[] users;
                lock (_gate)
                {
                    users = [.. _connections.Keys.Where(u => u != session.UserId)];
                }
                session.Send(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.QueryAllResponse, Names = users, CorrelationId = message.CorrelationId });
                return;
            case PresenceAction.Query:
                if (message.Names is not { Length: > 0 } names)
                {
                    session.SendError(message, (int)PresenceAction.InvalidPresenceUsers, "QUERY needs user names");
                    return;
                }
                var answer = new JsonObject();
                lock (_gate)
                {
                    foreach (var name in names)
                    {
                        answer[name] = _connections.ContainsKey(name);
                    }
                }
                session.Send(new Message
                {
                    Topic = Topic.Presence, Action = (int)PresenceAction.QueryResponse, CorrelationId = message.CorrelationId,
                    Data = JsonSerializer.SerializeToUtf8Bytes(answer, StateMeshJsonContext.Default.JsonNode),
                });
                return;
            case PresenceAction.QueryCount:
                session.Send(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.QueryCountResponse, CorrelationId = message.CorrelationId, Version = OnlineCount });
                return;
            case PresenceAction.SubscribeAll:
                if (session.PresenceSubscribedToAll)
                {
                    session.SendError(message, (int)PresenceAction.MultipleSubscriptions, null);
                }
                else
                {
                    session.PresenceSubscribedToAll = true;
                    lock (_gate)
                    {
                        _everyone = [.. _everyone, session];
                    }
                }
                session.Send(new Message { Topic = Topic.Presence, Action = message.Action, IsAck = true, CorrelationId = message.CorrelationId });
                return;
            case PresenceAction.UnsubscribeAll:
                if (!session.PresenceSubscribedToAll)
                {
                    session.SendError(message, (int)PresenceAction.NotSubscribed, null);
                }
                else
                {
                    RemoveFromEveryone(session);
                }
                session.Send(new Message { Topic = Topic.Presence, Action = message.Action, IsAck = true, CorrelationId = message.CorrelationId });
                return;
            case PresenceAction.Subscribe:
            case PresenceAction.Unsubscribe:
                HandleBulk(session, message);
                return;
            default:
                node.UnknownAction(session, message);
                return;
        }
    }

    private void RemoveFromEveryone(Session session)
    {
        session.PresenceSubscribedToAll = false;
        lock (_gate)
        {
            _everyone = [.. _everyone.Where(s => !ReferenceEquals(s, session))];
        }
    }

    private void HandleBulk(Session session, Message message)
    {
        if (message.Names is not { Length: > 0 } names)
        {
            session.SendError(message, (int)PresenceAction.InvalidPresenceUsers, "SUBSCRIBE and UNSUBSCRIBE need user names");
            return;
        }
        var subscribe = message.Action == (int)PresenceAction.Subscribe;
        foreach (var user in names)
        {
            if (subscribe ? !session.PresenceSubscriptions.Add(user) : !session.PresenceSubscriptions.Remove(user))
            {
                session.SendError(new Message { Topic = Topic.Presence, Action = message.Action, Name = user },
                    (int)(subscribe ? PresenceAction.MultipleSubscriptions : PresenceAction.NotSubscribed), null);
                continue;
            }
            if (subscribe)
            {
                PerUser.Add(user, session);
            }
            else
            {
                PerUser.Remove(user, session);
            }
        }
        session.Send(new Message { Topic = Topic.Presence, Action = message.Action, IsAck = true, CorrelationId = message.CorrelationId });
    }
}
