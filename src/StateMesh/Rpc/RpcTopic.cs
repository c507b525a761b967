using System.Collections.Concurrent;
using System.Text.Json;
using StateMesh.Protocol;
using StateMesh.Server;

namespace StateMesh.Rpc;

/// <summary>
/// Remote procedure calls: providers provide names; a request goes to a random provider that has not been tried,
/// which accepts and then responds or errors; a reject reroutes. The node enforces the accept and response timeouts,
/// gives each forwarded request its own correlation id (callers' ids may collide), and fails fast when a provider
/// disconnects mid-call: rerouted if it had not accepted, else failed at once.
/// </summary>
/// <remarks>
/// Across nodes: each node is in the registry set <c>P/&lt;name&gt;</c> while it has a provider of the name. A call
/// goes to a local provider first; when none is left untried, to a random other node in the set that was not tried,
/// on that node's channel <c>N/&lt;node&gt;</c>. That node serves it with its own providers and answers on the caller
/// node's channel; when its providers are all tried it rejects, and the caller's node tries the next node. A node
/// that leaves fails the calls its providers had accepted and reroutes the others.
/// </remarks>
internal sealed class RpcTopic(NodeEngine node)
{
    private readonly ConcurrentDictionary<string, PendingCall> _calls = new(StringComparer.Ordinal);
    private long _nextId;

    public SubscriptionRegistry Providers { get; } = new();

    public int PendingCount => _calls.Count;

    /// <summary>Calls waiting here whose provider (on this node or another) has accepted them.</summary>
    internal int AcceptedCount => _calls.Values.Count(c => c.Accepted);

    private sealed class PendingCall
    {
        public required string Id { get; init; }
        public required string Name { get; init; }

        /// <summary>The caller on this node, or null for a call another node sent here (see <see cref="ReplyTo"/>).</summary>
        public required Session? Requestor { get; init; }

        /// <summary>For a call from another node: that node, which hears every answer on its channel.</summary>
        public string? ReplyTo { get; init; }
        public required string RequestorCorrelationId { get; init; }

        /// <summary>Other nodes this call was sent to, and the one it is with now (null while with a local provider).</summary>
        public HashSet<string> TriedNodes { get; } = new(StringComparer.Ordinal);
        public string? RemoteNode { get; set; }
        public required Message Request { get; init; }
        public required TimeSpan ResponseTimeout { get; init; }
        public HashSet<Session> Tried { get; } = [];
        public Session? Provider { get; set; }
        public bool Accepted { get; set; }
        public ITimer? AcceptTimer { get; set; }
        public ITimer? ResponseTimer { get; set; }
        public object Gate { get; } = new();
        public bool Done { get; set; }

        /// <summary>Which provider attempt is current; a timer from an earlier attempt does nothing.</summary>
        public int Attempt { get; set; }
    }

    public void Handle(Session session, Message message)
    {
        switch ((RpcAction)message.Action)
        {
            case RpcAction.Provide:
            case RpcAction.Unprovide:
                HandleBulk(session, message);
                return;
            case RpcAction.Request:
                Request(session, message);
                return;
            case RpcAction.Accept:
            case RpcAction.Reject:
            case RpcAction.Response:
            case RpcAction.RequestError:
                FromProvider(session, message);
                return;
            default:
                node.UnknownAction(session, message);
                return;
        }
    }

    private void HandleBulk(Session session, Message message)
    {
        var names = message.Names is { Length: > 0 } n ? n : message.Name is { Length: > 0 } one ? [one] : null;
        if (names is null)
        {
            session.SendError(message, (int)RpcAction.InvalidMessageData, "PROVIDE and UNPROVIDE need RPC names");
            return;
        }
        var provide = message.Action == (int)RpcAction.Provide;
        var limits = node.Options.Limits;
        List<Task>? registered = null;
        foreach (var name in names)
        {
            if (provide)
            {
                Provide(session, message, name, limits, ref registered);
            }
            else if (session.RpcProvides.TryRemove(name, out _))
            {
                node.Limits.ProvidedNames.Release();
                Providers.Remove(name, session);
                node.Registry.Remove(ProvidersSet(name));
            }
            else
            {
                session.SendError(new Message { Topic = Topic.Rpc, Action = message.Action, Name = name }, (int)RpcAction.NotProvided, null);
            }
        }
        var ack = new Message { Topic = Topic.Rpc, Action = message.Action, CorrelationId = message.CorrelationId, IsAck = true };
        if (registered is null || registered.All(t => t.IsCompletedSuccessfully))
        {
            session.Send(ack);
        }
        else
        {
            // Acknowledged once the other nodes can see the providers, so a call made anywhere after the ack finds them.
            _ = AckWhenRegisteredAsync(session, ack, registered);
        }
    }

    private async Task AckWhenRegisteredAsync(Session session, Message ack, List<Task> registered)
    {
        try
        {
            await Task.WhenAll(registered).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // Provided here all the same: local callers reach it, and the registry catches up when the cluster is back.
            Diagnostics.NodeLog.ClusterMessageFailed(node.Logger, "registry", ex);
        }
        session.Send(ack);
    }

    private static string ProvidersSet(string name) => "P/" + name;

    private static string NodeChannel(string nodeName) => "N/" + nodeName;

    private void Provide(Session session, Message message, string name, LimitOptions limits, ref List<Task>? registered)
    {
        if (session.RpcProvides.ContainsKey(name))
        {
            session.SendError(new Message { Topic = Topic.Rpc, Action = message.Action, Name = name }, (int)RpcAction.MultipleProviders, null);
            return;
        }
        var denied = session.RpcProvides.Count >= limits.ProvidedNamesPerConnection
            ? $"a connection may provide at most {limits.ProvidedNamesPerConnection} RPC names"
            : !node.Limits.ProvidedNames.TryTake() ? $"the node holds its maximum of {limits.ProvidedNamesPerNode} provided RPC names" : null;
        if (denied is not null)
        {
            session.SendError(new Message { Topic = Topic.Rpc, Action = message.Action, Name = name, CorrelationId = message.CorrelationId }, (int)RpcAction.MessageDenied, denied);
            return;
        }
        session.RpcProvides.TryAdd(name, 0);
        Providers.Add(name, session);
        var adding = node.Registry.AddAsync(ProvidersSet(name));
        if (!adding.IsCompletedSuccessfully)
        {
            (registered ??= []).Add(adding);
        }
    }

    private void Request(Session requestor, Message message)
    {
        if (string.IsNullOrEmpty(message.Name) || string.IsNullOrEmpty(message.CorrelationId))
        {
            requestor.SendError(message, (int)RpcAction.InvalidMessageData, "REQUEST needs an RPC name and a correlation id");
            return;
        }
        var limits = node.Options.Limits;
        if (Volatile.Read(ref requestor.PendingRpcCount) >= limits.PendingRpcsPerConnection)
        {
            requestor.SendError(message, (int)RpcAction.MessageDenied, $"a connection may have at most {limits.PendingRpcsPerConnection} RPC calls waiting for an answer");
            return;
        }
        if (!node.Limits.PendingRpcs.TryTake())
        {
            requestor.SendError(message, (int)RpcAction.MessageDenied, $"the node has its maximum of {limits.PendingRpcsPerNode} RPC calls waiting for an answer");
            return;
        }
        Interlocked.Increment(ref requestor.PendingRpcCount);
        var options = node.Options.Rpc;
        var timeout = message.RequestTimeout is > 0 and var ms && TimeSpan.FromMilliseconds(ms) < options.ResponseTimeout
            ? TimeSpan.FromMilliseconds(ms)
            : options.ResponseTimeout;
        var call = new PendingCall
        {
            Id = "r" + Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture),
            Name = message.Name,
            Requestor = requestor,
            RequestorCorrelationId = message.CorrelationId,
            Request = new Message
            {
                Topic = Topic.Rpc, Action = (int)RpcAction.Request, Name = message.Name, Data = message.Data,
                RequestorName = options.ProvideRequestorName ? requestor.UserId : null,
                RequestorData = options.ProvideRequestorData ? requestor.ClientData : null,
            },
            ResponseTimeout = timeout,
        };
        _calls[call.Id] = call;
        lock (call.Gate)
        {
            RouteToNextProvider(call);
        }
    }

    /// <summary>Sends the call to a random provider not yet tried, or fails it with NO_RPC_PROVIDER. Call under the call's gate.</summary>
    private void RouteToNextProvider(PendingCall call)
    {
        call.AcceptTimer?.Dispose();
        call.ResponseTimer?.Dispose();
        call.Accepted = false;
        var attempt = ++call.Attempt;
        call.RemoteNode = null;
        call.Provider = null;
        var candidates = Providers.Get(call.Name).Where(p => !call.Tried.Contains(p) && p.State == SessionState.Open).ToArray();
        if (candidates.Length == 0)
        {
            if (call.Requestor is null)
            {
                // A call from another node: its node tries the next node.
                Finish(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Reject });
                return;
            }
            _ = RouteToOtherNodeAsync(call, attempt);
            return;
        }
        var provider = candidates[Random.Shared.Next(candidates.Length)];
        call.Tried.Add(provider);
        call.Provider = provider;
        StartTimers(call, attempt);
        provider.Send(call.Request with { CorrelationId = call.Id });
    }

    /// <summary>Both timers start with each attempt, as in deepstream.</summary>
    private void StartTimers(PendingCall call, int attempt)
    {
        call.AcceptTimer = node.Time.CreateTimer(static s => { var (topic, c, a) = ((RpcTopic, PendingCall, int))s!; topic.OnAcceptTimeout(c, a); }, (this, call, attempt), node.Options.Rpc.AckTimeout, Timeout.InfiniteTimeSpan);
        call.ResponseTimer = node.Time.CreateTimer(static s => { var (topic, c, a) = ((RpcTopic, PendingCall, int))s!; topic.OnResponseTimeout(c, a); }, (this, call, attempt), call.ResponseTimeout, Timeout.InfiniteTimeSpan);
    }

    /// <summary>
    /// No local provider is left untried: the call goes to a random other node with one, or fails with NO_RPC_PROVIDER.
    /// The providers' nodes are as this node read them a moment ago; only when none of them is left untried is the
    /// cluster asked what it holds now, before the call fails.
    /// </summary>
    private async Task RouteToOtherNodeAsync(PendingCall call, int attempt)
    {
        for (var latest = false; ; latest = true)
        {
            IReadOnlyList<string> nodes;
            try
            {
                nodes = await node.Registry.OtherNodesInAsync(ProvidersSet(call.Name), latest, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Diagnostics.NodeLog.ClusterMessageFailed(node.Logger, "registry", ex);
                nodes = [];
                latest = true;
            }
            lock (call.Gate)
            {
                if (call.Done || call.Attempt != attempt)
                {
                    return;
                }
                var untried = nodes.Where(n => !call.TriedNodes.Contains(n)).ToArray();
                if (untried.Length == 0)
                {
                    if (!latest)
                    {
                        continue;
                    }
                    Finish(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.NoRpcProvider, Name = call.Name, IsError = true });
                    return;
                }
                var target = untried[Random.Shared.Next(untried.Length)];
                call.TriedNodes.Add(target);
                call.RemoteNode = target;
                StartTimers(call, attempt);
                node.Bus.Publish(NodeChannel(target), call.Request with
                {
                    // Where to answer, which call, which attempt: "<node>/<call id>/<attempt>".
                    CorrelationId = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{node.Options.NodeName}/{call.Id}/{attempt}"),
                    RequestTimeout = (int)Math.Ceiling(call.ResponseTimeout.TotalMilliseconds),
                });
                return;
            }
        }
    }

    /// <summary>Ends the call: tells the requestor (with its own correlation id), stops the timers.</summary>
    private void Finish(PendingCall call, Message toRequestor)
    {
        if (call.Done)
        {
            return;
        }
        call.Done = true;
        call.AcceptTimer?.Dispose();
        call.ResponseTimer?.Dispose();
        Forget(call);
        if (toRequestor.IsError)
        {
            node.CountError(Topic.Rpc, toRequestor.Action);
        }
        Reply(call, toRequestor);
    }

    /// <summary>To the caller: on this node directly, or on its node's channel for a call from another node.</summary>
    private void Reply(PendingCall call, Message message)
    {
        if (call.Requestor is { } requestor)
        {
            requestor.Send(message with { CorrelationId = call.RequestorCorrelationId, Name = call.Name });
        }
        else
        {
            node.Bus.Publish(NodeChannel(call.ReplyTo!), message with { CorrelationId = call.RequestorCorrelationId, Name = call.Name });
        }
    }

    /// <summary>The call no longer counts against the requestor's and the node's bounds.</summary>
    private void Forget(PendingCall call)
    {
        if (_calls.TryRemove(call.Id, out _))
        {
            if (call.Requestor is { } requestor)
            {
                Interlocked.Decrement(ref requestor.PendingRpcCount);
            }
            node.Limits.PendingRpcs.Release();
        }
    }

    private void FromProvider(Session provider, Message message)
    {
        if (message.CorrelationId is null || !_calls.TryGetValue(message.CorrelationId, out var call))
        {
            provider.SendError(message, (int)RpcAction.InvalidRpcCorrelationId, $"no call with correlation id '{message.CorrelationId}' is waiting");
            return;
        }
        lock (call.Gate)
        {
            if (call.Done || !ReferenceEquals(call.Provider, provider))
            {
                provider.SendError(message, (int)RpcAction.InvalidRpcCorrelationId, "this call is not yours to answer");
                return;
            }
            if (!Apply(call, message))
            {
                provider.SendError(message, (int)RpcAction.MultipleAccept, null);
            }
        }
    }

    /// <summary>
    /// A provider's answer to its call, from this node or another: ACCEPT, REJECT (the next provider), RESPONSE, or an
    /// error the caller hears as it was. Under the call's gate. False for a second ACCEPT.
    /// </summary>
    private bool Apply(PendingCall call, Message message)
    {
        switch ((RpcAction)message.Action)
        {
            case RpcAction.Accept:
                if (call.Accepted)
                {
                    return false;
                }
                call.Accepted = true;
                call.AcceptTimer?.Dispose();
                Reply(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Accept });
                return true;
            case RpcAction.Reject:
                RouteToNextProvider(call);
                return true;
            case RpcAction.Response:
                Finish(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Response, Data = message.Data });
                return true;
            default:
                // REQUEST_ERROR, or a timeout or refusal on another node.
                Finish(call, new Message { Topic = Topic.Rpc, Action = message.Action, Data = message.Data, IsError = true });
                return true;
        }
    }

    private void OnAcceptTimeout(PendingCall call, int attempt)
    {
        lock (call.Gate)
        {
            if (!call.Done && !call.Accepted && call.Attempt == attempt)
            {
                if (call.RemoteNode is not null)
                {
                    // Another node that does not even accept may be dead and not yet noticed: the call moves on to
                    // the next provider (that node stays tried), as when the node is seen gone.
                    RouteToNextProvider(call);
                    return;
                }
                Finish(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.AcceptTimeout, IsError = true });
            }
        }
    }

    private void OnResponseTimeout(PendingCall call, int attempt)
    {
        lock (call.Gate)
        {
            if (call.Attempt == attempt)
            {
                Finish(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.ResponseTimeout, IsError = true });
            }
        }
    }

    /// <summary>A message on this node's channel: a call another node sends here, or an answer to a call sent from here.</summary>
    public void OnNodeMessage(Message message)
    {
        if (message.Action == (int)RpcAction.Request)
        {
            FromOtherNode(message);
            return;
        }
        // An answer: "<this node>/<call id>/<attempt>".
        var parts = message.CorrelationId?.Split('/') ?? [];
        if (parts.Length < 3 || !_calls.TryGetValue(parts[^2], out var call) || !int.TryParse(parts[^1], System.Globalization.CultureInfo.InvariantCulture, out var attempt))
        {
            return; // the call ended here meanwhile (a timeout, its caller left)
        }
        lock (call.Gate)
        {
            if (call.Done || call.Attempt != attempt || call.RemoteNode is null)
            {
                return;
            }
            Apply(call, message); // a second ACCEPT was already answered on the other node
        }
    }

    /// <summary>A call another node sends to this node's providers; every answer goes back on that node's channel.</summary>
    private void FromOtherNode(Message message)
    {
        var replyTo = message.CorrelationId is { } cid && cid.LastIndexOf('/') is var slash and > 0 && cid.LastIndexOf('/', slash - 1) is var first and > 0
            ? cid[..first] : null;
        if (replyTo is null || string.IsNullOrEmpty(message.Name))
        {
            return;
        }
        if (!node.Limits.PendingRpcs.TryTake())
        {
            node.Bus.Publish(NodeChannel(replyTo), new Message
            {
                Topic = Topic.Rpc, Action = (int)RpcAction.MessageDenied, Name = message.Name, CorrelationId = message.CorrelationId, IsError = true,
            });
            return;
        }
        var timeout = message.RequestTimeout is > 0 and var ms ? TimeSpan.FromMilliseconds(ms) : node.Options.Rpc.ResponseTimeout;
        var call = new PendingCall
        {
            Id = "r" + Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture),
            Name = message.Name,
            Requestor = null,
            ReplyTo = replyTo,
            RequestorCorrelationId = message.CorrelationId!,
            Request = message with { CorrelationId = null, RequestTimeout = null },
            ResponseTimeout = timeout,
        };
        _calls[call.Id] = call;
        lock (call.Gate)
        {
            RouteToNextProvider(call);
        }
    }

    /// <summary>
    /// Another node left: calls its providers had accepted fail, the others go to the next provider. A node that stops
    /// answers its calls itself on the way out, and those answers may still be on the bus: they get a moment to arrive
    /// first (a node that died sends nothing, and the moment is short next to the time it took to notice).
    /// </summary>
    public void OnNodeLeft(string nodeName) =>
        _ = Task.Delay(LeftGrace, node.Time).ContinueWith(_ => FailCallsWith(nodeName), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    private static readonly TimeSpan LeftGrace = TimeSpan.FromMilliseconds(200);

    private void FailCallsWith(string nodeName)
    {
        foreach (var call in _calls.Values)
        {
            lock (call.Gate)
            {
                if (call.Done || call.RemoteNode != nodeName)
                {
                    continue;
                }
                if (call.Accepted)
                {
                    Finish(call, new Message
                    {
                        Topic = Topic.Rpc, Action = (int)RpcAction.RequestError, IsError = true,
                        Data = JsonSerializer.SerializeToUtf8Bytes($"the node of the provider of '{call.Name}' left during the call", StateMeshJsonContext.Default.String),
                    });
                }
                else
                {
                    RouteToNextProvider(call);
                }
            }
        }
    }

    public void RemoveSession(Session session)
    {
        if (session.HasRpcProvides)
        {
            foreach (var name in session.RpcProvides.Keys)
            {
                if (session.RpcProvides.TryRemove(name, out _))
                {
                    node.Limits.ProvidedNames.Release();
                    Providers.Remove(name, session);
                    node.Registry.Remove(ProvidersSet(name));
                }
            }
        }
        foreach (var call in _calls.Values)
        {
            lock (call.Gate)
            {
                if (call.Done)
                {
                    continue;
                }
                if (ReferenceEquals(call.Requestor, session))
                {
                    // Nobody is left to answer; a late response from the provider finds no call.
                    call.Done = true;
                    call.AcceptTimer?.Dispose();
                    call.ResponseTimer?.Dispose();
                    Forget(call);
                }
                else if (ReferenceEquals(call.Provider, session))
                {
                    if (call.Accepted)
                    {
                        Finish(call, new Message
                        {
                            Topic = Topic.Rpc, Action = (int)RpcAction.RequestError, IsError = true,
                            Data = JsonSerializer.SerializeToUtf8Bytes($"the provider of '{call.Name}' disconnected during the call", StateMeshJsonContext.Default.String),
                        });
                    }
                    else
                    {
                        RouteToNextProvider(call);
                    }
                }
            }
        }
    }
}
