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
internal sealed class RpcTopic(NodeEngine node)
{
    private readonly ConcurrentDictionary<string, PendingCall> _calls = new(StringComparer.Ordinal);
    private long _nextId;

    public SubscriptionRegistry Providers { get; } = new();

    public int PendingCount => _calls.Count;

    private sealed class PendingCall
    {
        public required string Id { get; init; }
        public required string Name { get; init; }
        public required Session Requestor { get; init; }
        public required string RequestorCorrelationId { get; init; }
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
        foreach (var name in names)
        {
            if (provide)
            {
                Provide(session, message, name, limits);
            }
            else if (session.RpcProvides.TryRemove(name, out _))
            {
                node.Limits.ProvidedNames.Release();
                Providers.Remove(name, session);
            }
            else
            {
                session.SendError(new Message { Topic = Topic.Rpc, Action = message.Action, Name = name }, (int)RpcAction.NotProvided, null);
            }
        }
        session.Send(new Message { Topic = Topic.Rpc, Action = message.Action, CorrelationId = message.CorrelationId, IsAck = true });
    }

    private void Provide(Session session, Message message, string name, LimitOptions limits)
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
        var candidates = Providers.Get(call.Name).Where(p => !call.Tried.Contains(p) && p.State == SessionState.Open).ToArray();
        if (candidates.Length == 0)
        {
            Finish(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.NoRpcProvider, Name = call.Name, IsError = true });
            return;
        }
        var provider = candidates[Random.Shared.Next(candidates.Length)];
        call.Tried.Add(provider);
        call.Provider = provider;
        // Both timers start with each attempt, as in deepstream.
        call.AcceptTimer = node.Time.CreateTimer(static s => { var (topic, c, a) = ((RpcTopic, PendingCall, int))s!; topic.OnAcceptTimeout(c, a); }, (this, call, attempt), node.Options.Rpc.AckTimeout, Timeout.InfiniteTimeSpan);
        call.ResponseTimer = node.Time.CreateTimer(static s => { var (topic, c, a) = ((RpcTopic, PendingCall, int))s!; topic.OnResponseTimeout(c, a); }, (this, call, attempt), call.ResponseTimeout, Timeout.InfiniteTimeSpan);
        provider.Send(call.Request with { CorrelationId = call.Id });
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
        call.Requestor.Send(toRequestor with { CorrelationId = call.RequestorCorrelationId, Name = call.Name });
    }

    /// <summary>The call no longer counts against the requestor's and the node's bounds.</summary>
    private void Forget(PendingCall call)
    {
        if (_calls.TryRemove(call.Id, out _))
        {
            Interlocked.Decrement(ref call.Requestor.PendingRpcCount);
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
            switch ((RpcAction)message.Action)
            {
                case RpcAction.Accept:
                    if (call.Accepted)
                    {
                        provider.SendError(message, (int)RpcAction.MultipleAccept, null);
                        return;
                    }
                    call.Accepted = true;
                    call.AcceptTimer?.Dispose();
                    call.Requestor.Send(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Accept, Name = call.Name, CorrelationId = call.RequestorCorrelationId });
                    return;
                case RpcAction.Reject:
                    RouteToNextProvider(call);
                    return;
                case RpcAction.Response:
                    Finish(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Response, Data = message.Data });
                    return;
                case RpcAction.RequestError:
                    Finish(call, new Message { Topic = Topic.Rpc, Action = (int)RpcAction.RequestError, Data = message.Data, IsError = true });
                    return;
            }
        }
    }

    private void OnAcceptTimeout(PendingCall call, int attempt)
    {
        lock (call.Gate)
        {
            if (!call.Done && !call.Accepted && call.Attempt == attempt)
            {
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
