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
/// <remarks>
/// Across nodes: every node says on the bus channel <c>U</c> when a user's first connection on it comes and its last
/// goes, and keeps, per user, the nodes where the user is online. A join is announced here when a user goes from no
/// node to one, a leave when from one to none: once per user, cluster-wide. A node that starts asks the others for
/// their users; a node that leaves (stops or dies) takes its users with it.
/// </remarks>
internal sealed class PresenceTopic(NodeEngine node)
{
    /// <summary>The bus channel every node's presence changes travel on.</summary>
    public const string Channel = "U";

    private const string SyncRequest = "sync";

    private readonly Dictionary<string, int> _connections = new(StringComparer.Ordinal);

    // User → the nodes (this one included) where the user has a connection. Under the gate.
    private readonly Dictionary<string, HashSet<string>> _online = new(StringComparer.Ordinal);
    private readonly object _gate = new();
    private volatile Session[] _everyone = [];

    public SubscriptionRegistry PerUser { get; } = new();

    /// <summary>Users online anywhere in the cluster.</summary>
    public int OnlineCount
    {
        get { lock (_gate) { return _online.Count; } }
    }

    private string Self => node.Options.NodeName;

    /// <summary>Called once the node is on the bus: asks the other nodes who is online with them.</summary>
    public void OnStarted() =>
        node.Bus.Publish(Channel, new Message { Topic = Topic.Presence, Action = (int)PresenceAction.QueryAll, Name = SyncRequest, CorrelationId = Self });

    /// <summary>Adds (user, node); under the gate. True when the user was online nowhere before.</summary>
    private bool AddOnline(string user, string nodeName)
    {
        if (!_online.TryGetValue(user, out var nodes))
        {
            _online[user] = nodes = new HashSet<string>(StringComparer.Ordinal);
        }
        return nodes.Add(nodeName) && nodes.Count == 1;
    }

    /// <summary>Removes (user, node); under the gate. True when the user is now online nowhere.</summary>
    private bool RemoveOnline(string user, string nodeName)
    {
        if (!_online.TryGetValue(user, out var nodes) || !nodes.Remove(nodeName) || nodes.Count > 0)
        {
            return false;
        }
        _online.Remove(user);
        return true;
    }

    /// <summary>A presence change another node published.</summary>
    public void OnRemote(Message message)
    {
        if (message.CorrelationId is not { Length: > 0 } from || from == Self)
        {
            return;
        }
        switch ((PresenceAction)message.Action)
        {
            case PresenceAction.PresenceJoin when message.Name is { } user:
                lock (_gate)
                {
                    if (AddOnline(user, from))
                    {
                        Announce(user, joined: true, except: null);
                    }
                }
                return;
            case PresenceAction.PresenceLeave when message.Name is { } user:
                lock (_gate)
                {
                    if (RemoveOnline(user, from))
                    {
                        Announce(user, joined: false, except: null);
                    }
                }
                return;
            case PresenceAction.QueryAll when message.Name == SyncRequest:
                string[] mine;
                lock (_gate)
                {
                    mine = [.. _connections.Keys];
                }
                node.Bus.Publish(Channel, new Message { Topic = Topic.Presence, Action = (int)PresenceAction.QueryAllResponse, Names = mine, CorrelationId = Self });
                return;
            case PresenceAction.QueryAllResponse when message.Names is { } users:
                lock (_gate)
                {
                    foreach (var user in users)
                    {
                        if (AddOnline(user, from))
                        {
                            Announce(user, joined: true, except: null);
                        }
                    }
                }
                return;
        }
    }

    /// <summary>A node left the cluster: its users leave, where they are online nowhere else.</summary>
    public void OnNodeLeft(string nodeName)
    {
        lock (_gate)
        {
            foreach (var user in _online.Where(e => e.Value.Contains(nodeName)).Select(e => e.Key).ToList())
            {
                if (RemoveOnline(user, nodeName))
                {
                    Announce(user, joined: false, except: null);
                }
            }
        }
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
                if (AddOnline(user, Self))
                {
                    Announce(user, joined: true, except: session);
                }
                node.Bus.Publish(Channel, new Message { Topic = Topic.Presence, Action = (int)PresenceAction.PresenceJoin, Name = user, CorrelationId = Self });
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
            if (RemoveOnline(user2, Self))
            {
                Announce(user2, joined: false, except: session);
            }
            node.Bus.Publish(Channel, new Message { Topic = Topic.Presence, Action = (int)PresenceAction.PresenceLeave, Name = user2, CorrelationId = Self });
        }
    }

    private void Announce(string user, bool joined, Session? except)
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
                    users = [.. _online.Keys.Where(u => u != session.UserId)];
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
                        answer[name] = _online.ContainsKey(name);
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
