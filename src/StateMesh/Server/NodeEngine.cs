using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using StateMesh.Diagnostics;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Server;

/// <summary>The heart of a node: accepts connections, routes messages to topic handlers, tracks sessions.</summary>
internal sealed class NodeEngine : Cluster.IClusterReceiver, Cluster.IClusterMembershipListener
{
    private readonly ConcurrentDictionary<long, Session> _sessions = new();
    private readonly StateMeshMetrics _metrics;
    private volatile bool _stopping;

    public NodeEngine(StateMeshOptions options, Authenticator authenticator, ILogger logger, TimeProvider time, StateMeshMetrics metrics, Storage.IRecordStore store, Storage.IRecordStorage storage, Cluster.IClusterBus bus, Cluster.IClusterRegistry registry)
    {
        Options = options;
        Bus = bus;
        Registry = registry;
        Authenticator = authenticator;
        Logger = logger;
        Time = time;
        _metrics = metrics;
        Limits = new NodeLimits(options.Limits);
        Events = new EventsTopic(this);
        Records = new Records.RecordsTopic(this, store, storage);
        Presence = new Presence.PresenceTopic(this);
        Rpc = new Rpc.RpcTopic(this);
        Permissions = new StateMesh.Permissions.PermissionGate(options.Permissions, logger, time) { ReadRecord = Records.ReadForRuleAsync };
    }

    /// <summary>Who may do what; open (everything allowed) when no permissions are configured.</summary>
    public StateMesh.Permissions.PermissionGate Permissions { get; }

    public StateMeshOptions Options { get; }

    /// <summary>How this node reaches the others of its cluster (a cluster of one when alone).</summary>
    public Cluster.IClusterBus Bus { get; }

    /// <summary>Who else is in the cluster, and which nodes hold what (RPC providers).</summary>
    public Cluster.IClusterRegistry Registry { get; }

    /// <summary>This node's own channel: calls other nodes route here, and answers to calls routed from here.</summary>
    public string OwnChannel => "N/" + Options.NodeName;

    /// <summary>Another node joined, or came back after it was seen gone: ask it again who is online there.</summary>
    public void OnNodeJoined(string nodeName)
    {
        try
        {
            Presence.AskWhoIsOnline();
            Events.Listening.Announce();
            Records.Listening.Announce();
        }
        catch (Exception ex)
        {
            NodeLog.ClusterMessageFailed(Logger, "membership", ex);
        }
    }

    /// <summary>Another node left the cluster.</summary>
    public void OnNodeLeft(string nodeName)
    {
        try
        {
            Rpc.OnNodeLeft(nodeName);
            Presence.OnNodeLeft(nodeName);
            Events.Listening.OnNodeLeft(nodeName);
            Records.Listening.OnNodeLeft(nodeName);
        }
        catch (Exception ex)
        {
            NodeLog.ClusterMessageFailed(Logger, "membership", ex);
        }
    }

    /// <summary>What the node holds for all connections together, against its bounds.</summary>
    public NodeLimits Limits { get; }

    public Authenticator Authenticator { get; }

    public ILogger Logger { get; }

    public TimeProvider Time { get; }

    public EventsTopic Events { get; }

    public Records.RecordsTopic Records { get; }

    public Presence.PresenceTopic Presence { get; }

    public Rpc.RpcTopic Rpc { get; }

    public void OnAuthenticated(Session session) => Presence.OnAuthenticated(session);

    public int SessionCount => _sessions.Count;

    public StateMeshMetrics Metrics => _metrics;

    public IEnumerable<Session> Sessions => _sessions.Values;

    public bool Accept(TransportConnection transport, IMessageCodec codec)
    {
        if (_stopping)
        {
            return false;
        }
        if (!Limits.Unauthenticated.TryTake())
        {
            NodeLog.TooManyUnauthenticated(Logger, transport.RemoteAddress, Limits.Unauthenticated.Max);
            CountDisconnect(DisconnectReason.TooManyUnauthenticated);
            return false;
        }
        var session = new Session(this, transport, codec);
        session.CountAsUnauthenticated();
        _sessions[session.Id] = session;
        _metrics.Connections.Add(1, new KeyValuePair<string, object?>("transport", transport.TransportName));
        _ = Task.Run(session.RunAsync);
        return true;
    }

    public ValueTask DispatchAsync(Session session, Message message) =>
        !Permissions.IsOpen && MessagePermissions.Applies(message) ? DispatchCheckedAsync(session, message) : DispatchAllowed(session, message);

    private async ValueTask DispatchCheckedAsync(Session session, Message message)
    {
        if (await MessagePermissions.FilterAsync(Permissions, session, message).ConfigureAwait(false) is { } allowed)
        {
            await DispatchAllowed(session, allowed).ConfigureAwait(false);
        }
    }

    private ValueTask DispatchAllowed(Session session, Message message)
    {
        switch (message.Topic)
        {
            case Topic.Event:
                Events.Handle(session, message);
                break;
            case Topic.Record:
                return Records.HandleAsync(session, message);
            case Topic.Presence:
                Presence.Handle(session, message);
                break;
            case Topic.Rpc:
                Rpc.Handle(session, message);
                break;
            default:
                session.SendParserError(ParserAction.UnknownTopic, $"unknown topic {(int)message.Topic}", message);
                break;
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>What another node published on a channel this node subscribes to. Never throws into the bus.</summary>
    public void OnMessage(string channel, Message message)
    {
        try
        {
            if (Cluster.ClusterChannels.TryEvent(channel, out var name))
            {
                Events.OnRemoteEmit(name, message);
            }
            else if (Cluster.ClusterChannels.TryRecord(channel, out var record))
            {
                Records.OnRemoteChange(record, message);
            }
            else if (channel == OwnChannel && message.Topic == Topic.Rpc)
            {
                Rpc.OnNodeMessage(message);
            }
            else if (channel == StateMesh.Presence.PresenceTopic.Channel)
            {
                Presence.OnRemote(message);
            }
            else if (channel == Records.Listening.Channel)
            {
                Records.Listening.OnRemote(message);
            }
            else if (channel == Events.Listening.Channel)
            {
                Events.Listening.OnRemote(message);
            }
        }
        catch (Exception ex)
        {
            NodeLog.ClusterMessageFailed(Logger, channel, ex);
        }
    }

    public void UnknownAction(Session session, Message message)
    {
        NodeLog.UnknownAction(Logger, session.Id, message.Topic, message.Action);
        session.SendParserError(ParserAction.UnknownAction, $"unknown action {message.Action} on topic {message.Topic}", message);
    }

    public void OnSessionClosed(Session session)
    {
        if (_sessions.TryRemove(session.Id, out _))
        {
            _metrics.Connections.Add(-1);
            Events.RemoveSession(session);
            Records.RemoveSession(session);
            Presence.RemoveSession(session);
            Rpc.RemoveSession(session);
        }
    }

    public async Task StopAsync(TimeSpan drainTimeout)
    {
        _stopping = true;
        Permissions.Dispose();
        Events.Listening.Dispose();
        Records.Listening.Dispose();
        var sessions = _sessions.Values.ToArray();
        NodeLog.NodeStopping(Logger, sessions.Length);
        foreach (var session in sessions)
        {
            session.Close(DisconnectReason.NodeStopping, new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Closing });
        }
        try
        {
            await Task.WhenAll(sessions.Select(s => s.Completion)).WaitAsync(drainTimeout, Time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            foreach (var session in sessions)
            {
                session.Abort(DisconnectReason.NodeStopping);
            }
        }
    }

    public void CountReceived() => _metrics.MessagesReceived.Add(1);

    public void CountSent(int messages) => _metrics.MessagesSent.Add(messages);

    public void CountError(Topic topic, int action) =>
        _metrics.Errors.Add(1, new KeyValuePair<string, object?>("topic", topic.ToString()), new KeyValuePair<string, object?>("action", ActionNames.Of(topic, action)));

    public void CountDisconnect(DisconnectReason reason) =>
        _metrics.Disconnects.Add(1, new TagList { { "reason", reason.ToString() } });
}
