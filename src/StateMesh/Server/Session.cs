using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using StateMesh.Auth;
using StateMesh.Diagnostics;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Server;

internal enum SessionState { AwaitingChallenge, AwaitingAuthentication, Open, Closed }

/// <summary>
/// One client connection on a node: handshake, login, heartbeat and limits, then messages handed to the
/// topic handlers. One read loop processes messages in order; one writer loop drains the bounded outbound queue.
/// </summary>
internal sealed class Session
{
    private static long s_nextId;
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);

    private readonly NodeEngine _node;
    private readonly TransportConnection _transport;
    private readonly OutboundQueue _outbound;
    private readonly CancellationTokenSource _abort = new();
    private readonly NameRate _names;
    private bool _throttled;
    private readonly CancellationTokenSource _closingToken = new();
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ITimer? _authTimer;
    private ITimer? _heartbeatTimer;
    private int _closing;
    private int _authAttempts;
    private long _lastReceived;
    private volatile SessionState _state = SessionState.AwaitingChallenge;
    private int _countedUnauthenticated;

    /// <summary>Record subscriptions held, counted against <see cref="LimitOptions.RecordSubscriptionsPerConnection"/>.</summary>
    public int RecordSubscriptionCount;

    /// <summary>RPC calls this session made that wait for an answer.</summary>
    public int PendingRpcCount;

    public Session(NodeEngine node, TransportConnection transport, IMessageCodec codec)
    {
        _node = node;
        _transport = transport;
        _outbound = new OutboundQueue(codec, node.Options.OutboundQueueCapacity, node.Options.OutboundQueueMaxBytes);
        // Set before the session runs, so that a control frame (a WebSocket pong) is never dropped for want of a queue.
        transport.ControlSink = _outbound.TryEnqueueRaw;
        Id = Interlocked.Increment(ref s_nextId);
        _lastReceived = node.Time.GetTimestamp();
        _names = new NameRate(node.Options.Limits.NamesPerSecondPerConnection, node.Options.Limits.NamesBurstPerConnection, node.Time);
    }

    public long Id { get; }

    public IMessageCodec Codec => _outbound.Codec;

    public SessionState State => _state;

    public string RemoteAddress => _transport.RemoteAddress;

    public string? UserId { get; private set; }

    public JsonNode? ServerData { get; private set; }

    /// <summary>The client data of the login, as JSON (passed to RPC providers when configured).</summary>
    public ReadOnlyMemory<byte>? ClientData { get; private set; }

    /// <summary>Counts for presence: logged in with a real user id, not anonymously, and not the node's own client.</summary>
    public bool CountsForPresence => _state == SessionState.Open && UserId is { } id && id != OpenAuthenticationHandler.AnonymousId && _transport.TrustedUserId is null;

    /// <summary>RPC names this session provides.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, byte> RpcProvides =>
        _rpcProvides ?? LazyInitializer.EnsureInitialized(ref _rpcProvides, static () => new(StringComparer.Ordinal));

    // The per-session sets are created on first use: most connections never provide, listen or subscribe to records,
    // and an idle connection should cost as little memory as it can.
    private System.Collections.Concurrent.ConcurrentDictionary<string, byte>? _rpcProvides;

    // For teardown: whether there is anything to undo, without creating the set to find out.
    public bool HasRpcProvides => _rpcProvides is { IsEmpty: false };

    public bool HasListenPatterns => _listenPatterns is { IsEmpty: false };

    public bool HasRecordSubscriptions => _recordSubscriptions is { IsEmpty: false };
    private System.Collections.Concurrent.ConcurrentDictionary<(Topic Topic, string Pattern), byte>? _listenPatterns;
    private System.Collections.Concurrent.ConcurrentDictionary<string, byte>? _recordSubscriptions;

    /// <summary>Listen patterns this session registered, per topic.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<(Topic Topic, string Pattern), byte> ListenPatterns =>
        _listenPatterns ?? LazyInitializer.EnsureInitialized(ref _listenPatterns, static () => new());

    /// <summary>Set when presence counted this connection (so that its close is counted too).</summary>
    public bool CountedForPresence { get; set; }

    /// <summary>Users whose joins and leaves this session is subscribed to; touched only by its read loop.</summary>
    public HashSet<string> PresenceSubscriptions { get; } = new(StringComparer.Ordinal);

    /// <summary>True while subscribed to every join and leave.</summary>
    public bool PresenceSubscribedToAll { get; set; }

    public DisconnectReason? CloseReason { get; private set; }

    /// <summary>Event names this session subscribes to; touched only by its read loop.</summary>
    public HashSet<string> EventSubscriptions { get; } = new(StringComparer.Ordinal);

    /// <summary>Record names this session subscribes to; other sessions change it too (a delete unsubscribes everyone).</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, byte> RecordSubscriptions =>
        _recordSubscriptions ?? LazyInitializer.EnsureInitialized(ref _recordSubscriptions, static () => new(StringComparer.Ordinal));

    public Task Completion => _completed.Task;

    private ILogger Logger => _node.Logger;

    public async Task RunAsync()
    {
        NodeLog.ConnectionOpened(Logger, Id, RemoteAddress, _transport.TransportName);
        var options = _node.Options;
        _authTimer = _node.Time.CreateTimer(static s => ((Session)s!).OnAuthTimeout(), this, options.UnauthenticatedTimeout, Timeout.InfiniteTimeSpan);
        _heartbeatTimer = _node.Time.CreateTimer(static s => ((Session)s!).OnHeartbeatCheck(), this, options.HeartbeatInterval, options.HeartbeatInterval);
        var writer = RunWriterAsync();
        try
        {
            await ReadLoopAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            if (Volatile.Read(ref _closing) == 0)
            {
                NodeLog.TransportFailed(Logger, Id, ex.GetType().Name, ex.Message);
            }
            Close(DisconnectReason.TransportError);
        }
        catch (Exception ex)
        {
            NodeLog.SessionFailed(Logger, Id, ex);
            Close(DisconnectReason.TransportError);
        }
        finally
        {
            try
            {
                Close(DisconnectReason.ClientClosed);
                LeaveUnauthenticated();
                _state = SessionState.Closed;
                _authTimer.Dispose();
                _heartbeatTimer.Dispose();
                _node.OnSessionClosed(this);
                try
                {
                    await writer.WaitAsync(DrainTimeout, _node.Time).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // Stuck on a peer that does not read: cancel the write, and let it unwind before the transport goes.
                    await _abort.CancelAsync().ConfigureAwait(false);
                    await Task.WhenAny(writer, Task.Delay(TimeSpan.FromSeconds(1), _node.Time)).ConfigureAwait(false);
                }
                await _transport.DisposeAsync().ConfigureAwait(false);
                NodeLog.ConnectionClosed(Logger, Id, UserId, CloseReason ?? DisconnectReason.ClientClosed);
            }
            catch (Exception ex)
            {
                NodeLog.SessionFailed(Logger, Id, ex);
            }
            finally
            {
                _completed.TrySetResult();
            }
        }
    }

    private async Task RunWriterAsync()
    {
        try
        {
            await _outbound.RunWriterAsync(_transport.Output, _node.CountSent, _abort.Token, _transport.WriteFrameHeader).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            if (Volatile.Read(ref _closing) == 0)
            {
                NodeLog.TransportFailed(Logger, Id, ex.GetType().Name, ex.Message);
            }
            Close(DisconnectReason.TransportError);
        }
        finally
        {
            // The queue is drained (or the socket is gone): stop reading too.
            _transport.Input.CancelPendingRead();
        }
    }

    private async Task ReadLoopAsync()
    {
        var input = _transport.Input;
        var messages = new List<Message>();
        var maxFrame = _node.Options.MaxMessageSize;
        while (Volatile.Read(ref _closing) == 0)
        {
            var result = await input.ReadAsync(_abort.Token).ConfigureAwait(false);
            if (result.IsCanceled)
            {
                return;
            }
            var buffer = result.Buffer;
            try
            {
                while (Volatile.Read(ref _closing) == 0)
                {
                    var status = Framing.TryReadFrame(ref buffer, maxFrame, out var frame, out var declared);
                    if (status == Framing.Status.NeedMore)
                    {
                        break;
                    }
                    if (status == Framing.Status.TooLarge)
                    {
                        NodeLog.FrameTooLarge(Logger, Id, declared, maxFrame);
                        SendParserError(ParserAction.MaximumMessageSizeExceeded, $"a frame of {declared} bytes exceeds the maximum message size of {maxFrame} bytes");
                        Close(DisconnectReason.MessageTooLarge);
                        // Nothing more is read from this connection; the whole rest of the input is dropped.
                        buffer = buffer.Slice(buffer.End);
                        return;
                    }
                    _lastReceived = _node.Time.GetTimestamp();
                    messages.Clear();
                    var error = Codec.ParseFrame(frame, messages);
                    foreach (var message in messages)
                    {
                        if (message.Names is { Length: > 0 } names && _names.Take(names.Length) is { Ticks: > 0 } wait)
                        {
                            if (!_throttled)
                            {
                                _throttled = true;
                                NodeLog.Throttled(Logger, Id, UserId, _node.Options.Limits.NamesPerSecondPerConnection);
                            }
                            await Task.Delay(wait, _node.Time, _abort.Token).ConfigureAwait(false);
                        }
                        var pending = ProcessAsync(message);
                        if (!pending.IsCompletedSuccessfully)
                        {
                            await pending.ConfigureAwait(false);
                        }
                    }
                    if (error is { } e)
                    {
                        NodeLog.ParseError(Logger, Id, e.Action.ToString(), e.Description);
                        SendParserError(e.Action, e.Description);
                        if (Codec.ClosesOnParseError)
                        {
                            Close(DisconnectReason.ProtocolError);
                        }
                    }
                }
            }
            finally
            {
                input.AdvanceTo(buffer.Start, buffer.End);
            }
            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    private ValueTask ProcessAsync(Message message)
    {
        _node.CountReceived();
        if (message.Topic is not (Topic.Connection or Topic.Auth or Topic.Event or Topic.Record or Topic.Rpc or Topic.Presence))
        {
            // As deepstream: whatever the state, an unknown topic is answered and the connection stays.
            SendParserError(ParserAction.UnknownTopic, $"unknown topic {(int)message.Topic}", message);
            return ValueTask.CompletedTask;
        }
        switch (_state)
        {
            case SessionState.AwaitingChallenge:
                if (message.Topic == Topic.Connection && message.Action == (int)ConnectionAction.Challenge)
                {
                    _state = SessionState.AwaitingAuthentication;
                    Send(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Accept });
                }
                else if (!(message.Topic == Topic.Connection && message.Action == (int)ConnectionAction.Ping))
                {
                    SendError(new Message { Topic = Topic.Connection, Action = message.Action }, (int)ConnectionAction.InvalidMessage, "send CONNECTION CHALLENGE first");
                }
                return ValueTask.CompletedTask;
            case SessionState.AwaitingAuthentication:
                if (message.Topic == Topic.Auth && message.Action == (int)AuthAction.Request)
                {
                    return AuthenticateAsync(message);
                }
                if (message.Topic != Topic.Connection)
                {
                    SendError(new Message { Topic = Topic.Auth, Action = message.Action, OriginalTopic = message.Topic }, (int)AuthAction.InvalidMessage, "log in first (AUTH REQUEST)");
                }
                return ValueTask.CompletedTask;
            case SessionState.Open:
                if (message.Topic == Topic.Connection)
                {
                    if (message.Action == (int)ConnectionAction.Ping)
                    {
                        Send(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Pong });
                    }
                    else if (message.Action == (int)ConnectionAction.Closing)
                    {
                        Close(DisconnectReason.ClientClosed);
                    }
                    return ValueTask.CompletedTask;
                }
                return _node.DispatchAsync(this, message);
            default:
                return ValueTask.CompletedTask;
        }
    }

    private async ValueTask AuthenticateAsync(Message message)
    {
        JsonDocument? document = null;
        try
        {
            document = message.Data is { } data ? JsonDocument.Parse(data) : null;
        }
        catch (JsonException)
        {
        }
        if (document is null || document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document?.Dispose();
            SendError(new Message { Topic = Topic.Auth, Action = message.Action }, (int)AuthAction.InvalidMessageData, "login data must be a JSON object");
            Close(DisconnectReason.ProtocolError);
            return;
        }
        AuthenticationResult? result;
        if (_transport.TrustedUserId is { } trusted)
        {
            document.Dispose();
            result = AuthenticationResult.Success(trusted, serverData: _transport.TrustedServerData);
        }
        else
        {
            using var _ = document;
            try
            {
                result = await _node.Authenticator.AuthenticateAsync(new AuthenticationContext(document.RootElement, RemoteAddress), _closingToken.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_closingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                // The handler's exception stays in the log; the client sees an ordinary failed login.
                NodeLog.AuthHandlerFailed(Logger, Id, ex);
                result = AuthenticationResult.Failure();
            }
        }
        if (result.IsValid)
        {
            UserId = result.Id ?? OpenAuthenticationHandler.AnonymousId;
            ServerData = result.ServerData;
            ClientData = ToJson(result.ClientData);
            _state = SessionState.Open;
            LeaveUnauthenticated();
            _authTimer?.Dispose();
            Send(new Message { Topic = Topic.Auth, Action = (int)AuthAction.AuthSuccessful, Data = ToJson(result.ClientData) });
            _node.OnAuthenticated(this);
            return;
        }
        _authAttempts++;
        NodeLog.AuthFailed(Logger, Id, RemoteAddress, _authAttempts);
        if (_authAttempts >= _node.Options.MaxAuthAttempts)
        {
            NodeLog.TooManyAuthAttempts(Logger, Id, RemoteAddress);
            Send(new Message { Topic = Topic.Auth, Action = (int)AuthAction.TooManyAuthAttempts, IsError = true });
            Close(DisconnectReason.TooManyAuthAttempts);
            return;
        }
        Send(new Message { Topic = Topic.Auth, Action = (int)AuthAction.AuthUnsuccessful, Data = ToJson(result.ClientData) });
    }

    /// <summary>Counted as a connection that has not logged in yet (the node bounds how many there are).</summary>
    public void CountAsUnauthenticated() => _countedUnauthenticated = 1;

    private void LeaveUnauthenticated()
    {
        if (Interlocked.Exchange(ref _countedUnauthenticated, 0) == 1)
        {
            _node.Limits.Unauthenticated.Release();
        }
    }

    private static ReadOnlyMemory<byte>? ToJson(JsonNode? node) => node is null ? (ReadOnlyMemory<byte>?)null : JsonSerializer.SerializeToUtf8Bytes(node, StateMeshJsonContext.Default.JsonNode);

    private void OnAuthTimeout()
    {
        if (_state is SessionState.AwaitingChallenge or SessionState.AwaitingAuthentication)
        {
            Send(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.AuthenticationTimeout, IsError = true });
            Close(DisconnectReason.AuthenticationTimeout);
        }
    }

    private void OnHeartbeatCheck()
    {
        var silence = _node.Time.GetElapsedTime(Volatile.Read(ref _lastReceived));
        if (silence > 2 * _node.Options.HeartbeatInterval)
        {
            NodeLog.HeartbeatMissing(Logger, Id, UserId, silence);
            Close(DisconnectReason.HeartbeatTimeout);
        }
    }

    public ReadOnlyMemory<byte> Encode(Message message) => _outbound.Encode(message);

    public bool Send(Message message) => SendEncoded(Encode(message));

    /// <summary>Queues an encoded message; a full queue makes this a slow consumer, which is closed at once.</summary>
    public bool SendEncoded(ReadOnlyMemory<byte> encoded)
    {
        if (Volatile.Read(ref _closing) != 0)
        {
            return false;
        }
        if (_outbound.TryEnqueue(encoded))
        {
            return true;
        }
        if (Volatile.Read(ref _closing) == 0)
        {
            NodeLog.SlowConsumer(Logger, Id, UserId, _outbound.Count, _outbound.QueuedBytes, _node.Options.OutboundQueueCapacity, _node.Options.OutboundQueueMaxBytes);
            Abort(DisconnectReason.SlowConsumer);
        }
        return false;
    }

    /// <summary>Sends an error reply for <paramref name="request"/>: same topic, the error action, the original action.</summary>
    /// <summary>MESSAGE_DENIED or MESSAGE_PERMISSION_ERROR for one name of a request, as deepstream sends them.</summary>
    public void SendRefusal(Message request, int action, string? name, string? reason)
    {
        _node.CountError(request.Topic, action);
        Send(new Message
        {
            Topic = request.Topic,
            Action = action,
            Name = name,
            CorrelationId = request.CorrelationId,
            IsError = true,
            IsWriteAck = request.IsWriteAck,
            OriginalAction = request.Action,
            Data = reason is null ? (ReadOnlyMemory<byte>?)null : JsonSerializer.SerializeToUtf8Bytes(reason, StateMeshJsonContext.Default.String),
        });
    }

    private Permissions.RuleValue? _ruleUser;

    /// <summary>The user as permission rules see it: <c>{ id, isAuthenticated, data }</c> (data: the login's serverData).</summary>
    public Permissions.RuleValue RuleUser => _ruleUser ??= BuildRuleUser();

    private Permissions.RuleValue BuildRuleUser() => Permissions.PermissionGate.UserValue(UserId, ServerData);

    public void SendError(Message request, int errorAction, string? description)
    {
        _node.CountError(request.Topic, errorAction);
        Send(new Message
        {
            Topic = request.Topic,
            Action = errorAction,
            Name = request.Name,
            CorrelationId = request.CorrelationId,
            IsError = true,
            IsWriteAck = request.IsWriteAck,
            OriginalAction = request.Action,
            OriginalTopic = request.OriginalTopic,
            Data = description is null ? (ReadOnlyMemory<byte>?)null : JsonSerializer.SerializeToUtf8Bytes(description, StateMeshJsonContext.Default.String),
        });
    }

    /// <summary>Sends a PARSER error; with the offending message when there is one (unknown topic or action).</summary>
    public void SendParserError(ParserAction action, string description, Message? offending = null)
    {
        _node.CountError(Topic.Parser, (int)action);
        Send(new Message
        {
            Topic = Topic.Parser,
            Action = (int)action,
            IsError = true,
            OriginalTopic = offending?.Topic,
            OriginalAction = offending?.Action,
            Data = JsonSerializer.SerializeToUtf8Bytes(description, StateMeshJsonContext.Default.String),
        });
    }

    /// <summary>Closes after what is queued has been written (so a final message reaches the client).</summary>
    public void Close(DisconnectReason reason, Message? finalMessage = null)
    {
        if (finalMessage is not null && Volatile.Read(ref _closing) == 0)
        {
            _outbound.TryEnqueue(Encode(finalMessage));
        }
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }
        CloseReason = reason;
        _closingToken.Cancel();
        _node.CountDisconnect(reason);
        _outbound.Complete();
        _transport.Input.CancelPendingRead();
    }

    /// <summary>Closes without writing what is queued.</summary>
    public void Abort(DisconnectReason reason)
    {
        Close(reason);
        if (_completed.Task.IsCompleted)
        {
            return;
        }
        try
        {
            _abort.Cancel();
            _transport.Output.CancelPendingFlush();
        }
        catch (ObjectDisposedException)
        {
            // The transport finished closing meanwhile: nothing is left to abort.
        }
    }
}
