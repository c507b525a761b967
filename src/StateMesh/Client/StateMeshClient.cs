using System.Collections.Concurrent;
using System.Reactive.Linq;
using System.Reactive.Subjects;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Client;

/// <summary>
/// A client of a StateMesh node. The URI picks the transport: <c>tcp://host:6021</c> or <c>inproc://name</c>.
/// Reconnects with backoff after a loss, logs in again, and resubscribes. Given the addresses of several nodes of one
/// cluster, it moves to another node when the one it is on goes away.
/// </summary>
public sealed class StateMeshClient : IStateMeshClient
{
    internal const string SdkType = "dotnet";
    internal const string ProtocolVersion = "0.1a";
    private static readonly string SdkVersion = typeof(StateMeshClient).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    private readonly Uri[] _addresses;
    private int _addressIndex;
    private readonly string? _trustedUserId;
    private readonly System.Text.Json.Nodes.JsonNode? _trustedServerData;
    private readonly ReadOnlyMemory<byte> _authData;
    private readonly StateMeshClientOptions _options;
    private readonly ILogger _logger;
    // The link whose node said CLOSING: its end is a planned stop, not a lost connection.
    private volatile ClientLink? _stoppingLink;
    private readonly BehaviorSubject<ConnectionState> _states = new(ConnectionState.Closed);
    private readonly ConcurrentDictionary<string, TaskCompletionSource<Message>> _pendingAcks = new(StringComparer.Ordinal);
    private readonly List<(Message Message, TaskCompletionSource Sent)> _offline = [];
    private long _offlineBytes;
    private readonly CancellationTokenSource _closing = new();
    private readonly object _gate = new();
    private readonly EventsClient _events;
    private readonly RecordsClient _records;
    private readonly PresenceClient _presence;
    private readonly RpcClient _rpc;
    private readonly ListenClient _eventListeners;
    private readonly ListenClient _recordListeners;
    private readonly ITimer _heartbeat;
    private ClientLink? _link;
    private bool _open;
    private long _limboUntil;
    private ITimer? _limboTimer;
    private TaskCompletionSource<Message>? _handshake;
    private TaskCompletionSource<Message>? _login;
    private int _correlation;
    private JsonElement? _clientData;

    internal StateMeshClient(Uri[] addresses, ReadOnlyMemory<byte> authData, StateMeshClientOptions options, string? trustedUserId = null, System.Text.Json.Nodes.JsonNode? trustedServerData = null)
    {
        ArgumentOutOfRangeException.ThrowIfZero(addresses.Length, nameof(addresses));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.OutboundQueueCapacity, 1, "options.OutboundQueueCapacity");
        ArgumentOutOfRangeException.ThrowIfLessThan(options.OutboundQueueMaxBytes, 1L, "options.OutboundQueueMaxBytes");
        _trustedUserId = trustedUserId;
        _trustedServerData = trustedServerData;
        _addresses = addresses;
        _authData = authData;
        _options = options;
        _logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("StateMesh.Client");
        _events = new EventsClient(this);
        _records = new RecordsClient(this);
        _presence = new PresenceClient(this);
        _rpc = new RpcClient(this);
        _eventListeners = new ListenClient(this, Topic.Event);
        _recordListeners = new ListenClient(this, Topic.Record);
        _heartbeat = options.TimeProvider.CreateTimer(static s => ((StateMeshClient)s!).OnHeartbeat(), this, options.HeartbeatInterval, options.HeartbeatInterval);
    }

    /// <summary>Connects and logs in. Throws <see cref="StateMeshAuthenticationException"/> when the node refuses the login.</summary>
    /// <param name="uri"><c>tcp://host:port</c> or <c>inproc://node-name</c>.</param>
    /// <param name="authData">Login data, serialized as a JSON object (for example <c>new { username = "ana", password = "…" }</c>); null sends <c>{}</c>.</param>
    /// <param name="options">Client settings.</param>
    /// <param name="cancellationToken">Cancels the connect.</param>
    public static Task<StateMeshClient> ConnectAsync(string uri, object? authData = null, StateMeshClientOptions? options = null, CancellationToken cancellationToken = default) =>
        ConnectAsync(new Uri(uri), ToAuthObject(authData, options), options, cancellationToken);

    /// <summary>Connects and logs in with login data given as a JSON object.</summary>
    public static Task<StateMeshClient> ConnectAsync(Uri uri, JsonObject? authData, StateMeshClientOptions? options = null, CancellationToken cancellationToken = default) =>
        OpenNewAsync(Create(uri, authData, options), cancellationToken);

    /// <summary>
    /// Connects to one of several nodes of one cluster and logs in; after a loss the client reconnects to the next
    /// address in the list, then the one after, so a node that is gone is not retried until the others have been.
    /// </summary>
    /// <remarks>
    /// The first connect tries the addresses in the order given (then those of <see cref="StateMeshClientOptions.Endpoints"/>)
    /// and stays on the first that accepts, as Npgsql does with several hosts: the order says which node is preferred
    /// (the nearest one first, for example), and which node a client is on is predictable. To spread many clients
    /// over the nodes, give each client the list in a different (for example shuffled) order. An address where the
    /// connect fails or times out (<see cref="StateMeshClientOptions.ConnectTimeout"/>) is skipped; a refused login is
    /// not, since every node of a cluster would refuse it too. When no address accepts, a
    /// <see cref="StateMeshException"/> names each one with its error.
    /// </remarks>
    /// <param name="uris">The nodes' addresses (<c>tcp://host:port</c>, <c>ws://host:port/statemesh</c>, <c>inproc://node-name</c>), at least one.</param>
    /// <param name="authData">Login data, serialized as a JSON object (for example <c>new { username = "ana", password = "…" }</c>); null sends <c>{}</c>.</param>
    /// <param name="options">Client settings.</param>
    /// <param name="cancellationToken">Cancels the connect.</param>
    /// <exception cref="ArgumentException">The list is empty, or an address is not absolute or uses a transport the client lacks.</exception>
    public static Task<StateMeshClient> ConnectAsync(IEnumerable<string> uris, object? authData = null, StateMeshClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(uris);
        var parsed = new List<Uri>();
        foreach (var uri in uris)
        {
            parsed.Add(ParseAddress(uri, nameof(uris)));
        }
        return ConnectAsync(parsed, ToAuthObject(authData, options), options, cancellationToken);
    }

    /// <summary>Connects to one of several nodes of one cluster and logs in with login data given as a JSON object.</summary>
    /// <remarks>The order of the addresses works as in <see cref="ConnectAsync(IEnumerable{string}, object?, StateMeshClientOptions?, CancellationToken)"/>.</remarks>
    /// <exception cref="ArgumentException">The list is empty, or an address uses a transport the client lacks.</exception>
    public static Task<StateMeshClient> ConnectAsync(IEnumerable<Uri> uris, JsonObject? authData, StateMeshClientOptions? options = null, CancellationToken cancellationToken = default) =>
        OpenNewAsync(Create(uris, authData, options, nameof(uris)), cancellationToken);

    private static async Task<StateMeshClient> OpenNewAsync(StateMeshClient client, CancellationToken cancellationToken)
    {
        try
        {
            await client.OpenAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return client;
    }

    private static JsonObject? ToAuthObject(object? authData, StateMeshClientOptions? options) =>
        authData is null ? null : authData as JsonObject ?? JsonSerializer.SerializeToNode(authData, authData.GetType(), (options ?? DefaultOptions).SerializerOptions) as JsonObject
            ?? throw new ArgumentException("Login data must serialize to a JSON object.", nameof(authData));

    private static readonly StateMeshClientOptions DefaultOptions = new();

    /// <summary>
    /// A client of the node at <paramref name="uri"/> and of those in <see cref="StateMeshClientOptions.Endpoints"/>; the
    /// in-process client of a node (<paramref name="trustedUserId"/> set) belongs to that node and uses only its address.
    /// </summary>
    internal static StateMeshClient Create(Uri uri, JsonObject? authData, StateMeshClientOptions? options, string? trustedUserId = null, System.Text.Json.Nodes.JsonNode? trustedServerData = null) =>
        Create([uri], authData, options, nameof(uri), trustedUserId, trustedServerData);

    private static StateMeshClient Create(IEnumerable<Uri> uris, JsonObject? authData, StateMeshClientOptions? options, string paramName, string? trustedUserId = null, System.Text.Json.Nodes.JsonNode? trustedServerData = null)
    {
        ArgumentNullException.ThrowIfNull(uris, paramName);
        var addresses = new List<Uri>();
        foreach (var uri in uris)
        {
            AddAddress(addresses, uri ?? throw new ArgumentException("The list of node addresses holds a null.", paramName), options, paramName);
        }
        if (addresses.Count == 0)
        {
            throw new ArgumentException("Give at least one node address, such as tcp://127.0.0.1:6021.", paramName);
        }
        if (trustedUserId is null && options is not null)
        {
            foreach (var endpoint in options.Endpoints)
            {
                AddAddress(addresses, ParseAddress(endpoint, nameof(options)), options, nameof(options));
            }
        }
        // One client speaks one protocol, so its addresses must all need the same one.
        if (addresses.Select(IsDeepstreamAddress).Distinct().Count() > 1)
        {
            throw new ArgumentException($"The addresses mix the deepstream protocol (ws://…/deepstream) with the native one ({string.Join(", ", addresses)}); a client speaks one of them, so give addresses of one kind.", paramName);
        }
        var auth = JsonSerializer.SerializeToUtf8Bytes(authData ?? new JsonObject(), StateMeshJsonContext.Default.JsonNode);
        return new StateMeshClient([.. addresses], auth, options ?? new StateMeshClientOptions(), trustedUserId, trustedServerData);
    }

    private static Uri ParseAddress(string? address, string paramName) =>
        Uri.TryCreate(address, UriKind.Absolute, out var uri) ? uri
            : throw new ArgumentException($"'{address}' is not a node address: use tcp://host:port, ws://host:port/statemesh, ws://host:port/deepstream or inproc://node-name.", paramName);

    private static bool IsDeepstreamAddress(Uri uri) =>
        uri.Scheme is "ws" or "wss" && uri.AbsolutePath.TrimEnd('/').EndsWith("/deepstream", StringComparison.Ordinal);

    /// <summary>Checks that the client can reach <paramref name="uri"/> and adds it, once.</summary>
    private static void AddAddress(List<Uri> addresses, Uri uri, StateMeshClientOptions? options, string paramName)
    {
        if (!uri.IsAbsoluteUri || uri.Scheme is not ("tcp" or "inproc" or "ws" or "wss"))
        {
            throw new ArgumentException($"Unsupported address '{uri}': use tcp://host:port, ws://host:port/statemesh, ws://host:port/deepstream or inproc://node-name.", paramName);
        }
        if (IsDeepstreamAddress(uri) && options?.Codec is null)
        {
            throw new ArgumentException($"'{uri}' speaks the deepstream protocol: reference StateMesh.Deepstream and set StateMeshClientOptions.Codec = DeepstreamCodec.Instance (or call options.UseDeepstreamProtocol()).", paramName);
        }
        if (!addresses.Contains(uri))
        {
            addresses.Add(uri);
        }
    }

    /// <summary>
    /// The address of the node the client is connected to; while it connects or reconnects, the one it is trying.
    /// </summary>
    public Uri Address => _addresses[Volatile.Read(ref _addressIndex)];

    /// <summary>Every address the client may use, in the order it tries them.</summary>
    internal IReadOnlyList<Uri> Addresses => _addresses;

    /// <inheritdoc />
    public ConnectionState ConnectionState => _states.Value;

    /// <inheritdoc />
    public IObservable<ConnectionState> ConnectionStates => _states.DistinctUntilChanged();

    /// <inheritdoc />
    public JsonElement? ClientData => _clientData;

    /// <inheritdoc />
    public IEventsClient Events => _events;

    /// <inheritdoc />
    public IRecordsClient Records => _records;

    /// <inheritdoc />
    public IPresenceClient Presence => _presence;

    /// <inheritdoc />
    public IRpcClient Rpc => _rpc;

    internal StateMeshClientOptions Options => _options;

    internal ILogger Logger => _logger;

    internal TimeProvider Time => _options.TimeProvider;

    internal bool IsOpen => _open;

    /// <summary>One lock for the connection and every topic's subscription state, so that (re)subscribing never races opening.</summary>
    internal object Gate => _gate;

    /// <summary>Type metadata from the configured serializer options (reflection unless a source-generated resolver is set).</summary>
    internal System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> GetTypeInfo<T>()
    {
        var serializer = _options.SerializerOptions;
        if (!serializer.IsReadOnly)
        {
            lock (serializer)
            {
                if (!serializer.IsReadOnly)
                {
                    serializer.TypeInfoResolver ??= new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver();
                    serializer.MakeReadOnly();
                }
            }
        }
        return (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)serializer.GetTypeInfo(typeof(T));
    }

    /// <summary>Refuses a payload the node would refuse, before anything is sent.</summary>
    internal void CheckPayloadSize(int length, string what)
    {
        if (length > _options.MaxOutgoingPayloadSize)
        {
            throw new ArgumentException($"{what} is {length} bytes; the limit is {_options.MaxOutgoingPayloadSize} (StateMeshClientOptions.MaxOutgoingPayloadSize, which should match the node's StateMesh:MaxMessageSize).");
        }
    }

    internal ListenClient EventListeners => _eventListeners;

    internal ListenClient RecordListeners => _recordListeners;

    internal string NextCorrelationId() => Interlocked.Increment(ref _correlation).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// The first connect: the addresses in order, each once, until one accepts. Throws when none does (with one
    /// address, that address's error as it is); no reconnect loop starts.
    /// </summary>
    internal async Task OpenAsync(CancellationToken cancellationToken)
    {
        SetState(ConnectionState.Connecting);
        lock (_gate)
        {
            EnterLimbo();
        }
        List<Exception>? errors = null;
        for (var index = 0; index < _addresses.Length; index++)
        {
            if (index > 0)
            {
                SetState(ConnectionState.Connecting);
            }
            try
            {
                await EstablishAsync(index, cancellationToken).ConfigureAwait(false);
                ClientLog.Connected(_logger, _addresses[index].ToString());
                return;
            }
            catch (StateMeshAuthenticationException)
            {
                SetState(ConnectionState.AuthenticationFailed);
                throw;
            }
            catch (Exception ex) when (_addresses.Length > 1 && !cancellationToken.IsCancellationRequested && !_closing.IsCancellationRequested)
            {
                (errors ??= []).Add(ex);
                if (index + 1 < _addresses.Length)
                {
                    ClientLog.ConnectFailed(_logger, _addresses[index].ToString(), _addresses[index + 1].ToString(), ex);
                }
            }
            catch
            {
                SetState(ConnectionState.Closed);
                throw;
            }
        }
        SetState(ConnectionState.Closed);
        throw new StateMeshException(
            $"No node accepted the connection: {string.Join("; ", errors!.Select((e, i) => $"{_addresses[i]}: {e.Message}"))}. Check that the nodes are running and that the addresses are right.",
            new AggregateException(errors!));
    }

    private async Task<TransportConnection> ConnectTransportAsync(Uri uri, CancellationToken cancellationToken) => uri.Scheme switch
    {
        "tcp" => await TcpTransport.ConnectAsync(uri.Host, uri.Port < 0 ? 6021 : uri.Port, cancellationToken).ConfigureAwait(false),
        "ws" or "wss" => await WebSocketClientTransport.ConnectAsync(uri, _options.MaxMessageSize, localAddress: null, _options.RemoteCertificateValidationCallback, cancellationToken).ConfigureAwait(false),
        _ => InMemoryTransport.Connect(uri.Host, _trustedUserId, _trustedServerData),
    };

    /// <summary>Connects to the address at <paramref name="index"/>, logs in, and resubscribes; throws when any of it fails.</summary>
    private async Task EstablishAsync(int index, CancellationToken cancellationToken)
    {
        var uri = _addresses[index];
        Volatile.Write(ref _addressIndex, index);
        using var deadline = new CancellationTokenSource(_options.ConnectTimeout, Time);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closing.Token, deadline.Token);
        TransportConnection transport;
        try
        {
            transport = await ConnectTransportAsync(uri, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested && !_closing.IsCancellationRequested)
        {
            // An address that drops packets (a host gone from the network) takes the connect timeout, then the next is tried.
            throw new TimeoutException($"No connection to {uri} within {_options.ConnectTimeout}.");
        }
        var link = new ClientLink(transport, _options.Codec ?? NativeCodec.Instance, OnMessage, Time, _options.MaxMessageSize, _options.OutboundQueueCapacity, _options.OutboundQueueMaxBytes, _logger, uri.ToString());
        var handshake = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        var login = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            _link = link;
            _handshake = handshake;
            _login = login;
        }
        link.Start();
        _ = link.Closed.ContinueWith(t => OnLinkClosed(link, index, t.Exception?.GetBaseException()), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        try
        {
            link.TrySend(new Message
            {
                Topic = Topic.Connection, Action = (int)ConnectionAction.Challenge, Url = uri.ToString(),
                ProtocolVersion = ProtocolVersion, SdkVersion = SdkVersion, SdkType = SdkType,
            });
            var reply = await handshake.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
            if (reply.Action != (int)ConnectionAction.Accept)
            {
                throw new StateMeshException($"The node did not accept the connection ({ActionNames.Of(Topic.Connection, reply.Action)}).");
            }
            SetState(ConnectionState.Authenticating);
            link.TrySend(new Message { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = _authData });
            var result = await login.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
            if (result.Action != (int)AuthAction.AuthSuccessful)
            {
                var reason = result.Data is { } d ? System.Text.Encoding.UTF8.GetString(d.Span) : null;
                var tooMany = result.Action == (int)AuthAction.TooManyAuthAttempts;
                throw new StateMeshAuthenticationException(
                    tooMany ? "The node refused the login and closed the connection after too many attempts." : $"The node refused the login{(reason is null ? "" : ": " + reason)}. Check the username and password.",
                    reason, tooMany);
            }
            _clientData = result.Data is { } data ? JsonDocument.Parse(data).RootElement.Clone() : null;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !_closing.IsCancellationRequested)
        {
            await link.DisposeAsync().ConfigureAwait(false);
            throw new TimeoutException($"The node at {uri} did not complete the handshake and login within {_options.ConnectTimeout}.");
        }
        catch
        {
            await link.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        List<(Message Message, TaskCompletionSource Sent)> queued;
        lock (_gate)
        {
            if (_link != link)
            {
                throw new StateMeshException($"The connection to {uri} was lost during login.");
            }
            _open = true;
            _events.OnOpened(link);
            _records.OnOpened(link);
            _presence.OnOpened(link);
            _rpc.OnOpened(link);
            _eventListeners.OnOpened(link);
            _recordListeners.OnOpened(link);
            queued = [.. _offline];
            _offline.Clear();
            _offlineBytes = 0;
            _limboTimer?.Dispose();
            _limboTimer = null;
            foreach (var (message, sent) in queued)
            {
                if (link.TrySend(message))
                {
                    sent.TrySetResult();
                }
                else
                {
                    sent.TrySetException(Backpressure(message, $"{link.QueuedMessages} messages and {link.QueuedBytes} bytes wait to be written to {uri}"));
                }
            }
        }
        SetState(ConnectionState.Open);
    }

    private void OnMessage(Message message)
    {
        try
        {
            Dispatch(message);
        }
        catch (Exception ex)
        {
            // A throwing observer must not take the connection down.
            ClientLog.ObserverFailed(_logger, message.Name ?? message.Topic.ToString(), ex);
        }
    }

    private void Dispatch(Message message)
    {
        // A subscription to several events at once is refused name by name; the names allowed are acknowledged after.
        var refusedName = message.Topic == Topic.Event && message.OriginalAction == (int)EventAction.Subscribe
            && message.Action is (int)EventAction.MessageDenied or (int)EventAction.MessagePermissionError && message.Name is not null;
        if (message.IsError && !refusedName && message.CorrelationId is not null && message.OriginalAction is { } original
            && _pendingAcks.TryRemove(AckKey(message.Topic, original, message.CorrelationId), out var failed))
        {
            failed.TrySetException(new StateMeshProtocolException(
                $"The node answered {ActionNames.Of(message.Topic, original)} with {ActionNames.Of(message.Topic, message.Action)}{(message.Data is { } d ? ": " + System.Text.Encoding.UTF8.GetString(d.Span) : "")}.",
                message.Topic, message.Action));
        }
        if (message.IsAck && message.CorrelationId is not null && _pendingAcks.TryRemove(AckKey(message.Topic, message.Action, message.CorrelationId), out var ack))
        {
            ack.TrySetResult(message);
            return;
        }
        switch (message.Topic)
        {
            case Topic.Connection:
                switch ((ConnectionAction)message.Action)
                {
                    case ConnectionAction.Accept:
                    case ConnectionAction.Reject:
                    case ConnectionAction.Redirect:
                        _handshake?.TrySetResult(message);
                        break;
                    case ConnectionAction.Closing:
                        // The node is stopping: close this link cleanly and reconnect (to another node, or to this one
                        // when it is back). A planned stop, so it is logged as information, not as a lost connection.
                        if (_link is { } stopping)
                        {
                            _stoppingLink = stopping;
                            ClientLog.NodeStopping(_logger, stopping.Address);
                            _ = stopping.DisposeAsync().AsTask();
                        }
                        break;
                }
                break;
            case Topic.Auth:
                _login?.TrySetResult(message);
                break;
            case Topic.Event:
                if (!_eventListeners.Handle(message))
                {
                    _events.Handle(message);
                }
                break;
            case Topic.Record:
                if (!_recordListeners.Handle(message))
                {
                    _records.Handle(message);
                }
                break;
            case Topic.Presence:
                _presence.Handle(message);
                break;
            case Topic.Rpc:
                _rpc.Handle(message);
                break;
            default:
                if (message.IsError)
                {
                    ClientLog.NodeError(_logger, message.ToString());
                }
                break;
        }
    }

    private void OnLinkClosed(ClientLink link, int index, Exception? error)
    {
        var uri = _addresses[index];
        bool reconnect;
        lock (_gate)
        {
            if (_link != link)
            {
                return;
            }
            _link = null;
            var wasOpen = _open;
            _open = false;
            _handshake?.TrySetException(new IOException($"The connection to {uri} was lost."));
            _login?.TrySetException(new IOException($"The connection to {uri} was lost."));
            foreach (var key in _pendingAcks.Keys)
            {
                if (_pendingAcks.TryRemove(key, out var pending))
                {
                    pending.TrySetException(new StateMeshException($"The connection to {uri} was lost before the node acknowledged."));
                }
            }
            _records.OnConnectionLost();
            _rpc.OnConnectionLost();
            _eventListeners.OnConnectionLost();
            _recordListeners.OnConnectionLost();
            reconnect = wasOpen && !_closing.IsCancellationRequested;
            if (reconnect)
            {
                EnterLimbo();
            }
        }
        if (reconnect)
        {
            if (ReferenceEquals(link, _stoppingLink))
            {
                ClientLog.NodeStoppedReconnecting(_logger, uri.ToString());
            }
            else
            {
                ClientLog.ConnectionLost(_logger, uri.ToString(), error);
            }
            SetState(ConnectionState.Reconnecting);
            _ = Task.Run(() => ReconnectLoopAsync(index));
        }
    }

    /// <summary>
    /// Publishes a state under the gate, so that states appear in the order they happen; once the client is closing,
    /// only Closed is published.
    /// </summary>
    private void SetState(ConnectionState state)
    {
        lock (_gate)
        {
            if (_closing.IsCancellationRequested)
            {
                return;
            }
            if (state == ConnectionState.Open && !_open)
            {
                return; // lost again before it could be announced
            }
            _states.OnNext(state);
        }
    }

    /// <summary>Starts the offline window: sends are queued until it ends, then fail. Called under the gate.</summary>
    private void EnterLimbo()
    {
        _limboUntil = Time.GetTimestamp() + (long)(_options.OfflineBufferTimeout.TotalSeconds * Time.TimestampFrequency);
        _limboTimer?.Dispose();
        _limboTimer = Time.CreateTimer(static s => ((StateMeshClient)s!).FailOffline(), this, _options.OfflineBufferTimeout, Timeout.InfiniteTimeSpan);
    }

    /// <summary>
    /// The wait before reconnect attempt <paramref name="attempt"/> (0-based): the increment times the attempt, at most
    /// the maximum, plus <paramref name="random"/> (in [0, 1)) times the jitter, so that the clients of a node that
    /// restarts do not all come back in the same instant. The jitter is at most one increment.
    /// </summary>
    internal static TimeSpan ReconnectDelay(StateMeshClientOptions options, int attempt, double random)
    {
        var schedule = Math.Min(options.MaxReconnectInterval.Ticks, options.ReconnectIntervalIncrement.Ticks * attempt);
        var jitter = Math.Min(options.ReconnectJitter.Ticks, options.ReconnectIntervalIncrement.Ticks);
        return TimeSpan.FromTicks(schedule + (long)(Math.Max(0, jitter) * random));
    }

    /// <summary>
    /// The address of reconnect attempt <paramref name="attempt"/> (0-based) after losing the one at
    /// <paramref name="lost"/>: the next in the list, then the one after, around; so the first retry goes to another
    /// node when there is one, and a dead node is tried again only after all the others.
    /// </summary>
    internal static int ReconnectAddress(int lost, int attempt, int count) => (int)((lost + 1L + attempt) % count);

    private async Task ReconnectLoopAsync(int lost)
    {
        for (var attempt = 0; attempt < _options.MaxReconnectAttempts; attempt++)
        {
            var index = ReconnectAddress(lost, attempt, _addresses.Length);
            var delay = ReconnectDelay(_options, attempt, Random.Shared.NextDouble());
            try
            {
                if (delay > TimeSpan.Zero)
                {
                    await Task.Delay(delay, Time, _closing.Token).ConfigureAwait(false);
                }
                SetState(ConnectionState.Connecting);
                await EstablishAsync(index, _closing.Token).ConfigureAwait(false);
                ClientLog.Reconnected(_logger, _addresses[index].ToString(), attempt + 1);
                return;
            }
            catch (OperationCanceledException) when (_closing.IsCancellationRequested)
            {
                return;
            }
            catch (StateMeshAuthenticationException)
            {
                ClientLog.ReauthenticationFailed(_logger, _addresses[index].ToString());
                SetState(ConnectionState.AuthenticationFailed);
                FailOffline();
                return;
            }
            catch (Exception ex)
            {
                ClientLog.ReconnectFailed(_logger, attempt + 1, _addresses[index].ToString(), ex);
                SetState(ConnectionState.Reconnecting);
            }
        }
        ClientLog.GaveUp(_logger, string.Join(", ", _addresses.Select(a => a.ToString())), _options.MaxReconnectAttempts);
        SetState(ConnectionState.Failed);
        FailOffline();
    }

    private void FailOffline()
    {
        List<(Message Message, TaskCompletionSource Sent)> failed;
        lock (_gate)
        {
            failed = [.. _offline];
            _offline.Clear();
            _offlineBytes = 0;
        }
        foreach (var (message, sent) in failed)
        {
            sent.TrySetException(new StateMeshOfflineException(
                $"{ActionNames.Of(message.Topic, message.Action)} '{message.Name}' was not sent: the client stayed offline longer than the offline buffer ({_options.OfflineBufferTimeout})."));
        }
    }

    private void OnHeartbeat()
    {
        ClientLink? link;
        lock (_gate)
        {
            link = _open ? _link : null;
        }
        if (link is null)
        {
            return;
        }
        var silence = link.SinceLastMessage;
        if (silence > 2 * _options.HeartbeatInterval)
        {
            ClientLog.HeartbeatTimeout(_logger, Address.ToString(), silence);
            _ = link.DisposeAsync().AsTask();
            return;
        }
        link.TrySend(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
    }

    /// <summary>Sends now when open; while reconnecting within the offline window, queues; otherwise fails.</summary>
    internal Task SendOrQueue(Message message)
    {
        lock (_gate)
        {
            if (_open && _link is { } link)
            {
                switch (link.Send(message))
                {
                    case ClientLink.SendResult.Sent:
                        return Task.CompletedTask;
                    case ClientLink.SendResult.Full:
                        return Task.FromException(Backpressure(message, $"{link.QueuedMessages} messages and {link.QueuedBytes} bytes wait to be written to {Address}"));
                }
            }
            if (!_closing.IsCancellationRequested && Time.GetTimestamp() < _limboUntil)
            {
                var size = OfflineSize(message);
                if (_offline.Count >= _options.OutboundQueueCapacity || (_offline.Count > 0 && _offlineBytes + size > _options.OutboundQueueMaxBytes))
                {
                    return Task.FromException(Backpressure(message, $"{_offline.Count} messages and {_offlineBytes} bytes wait in the offline buffer for the connection to {Address}"));
                }
                var sent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _offline.Add((message, sent));
                _offlineBytes += size;
                return sent.Task;
            }
        }
        return Task.FromException(new StateMeshOfflineException(
            $"{ActionNames.Of(message.Topic, message.Action)} '{message.Name}' was not sent: the client is {_states.Value}, not connected to {Address}."));
    }

    private static long OfflineSize(Message message) => (message.Data?.Length ?? 0) + (message.Name?.Length ?? 0) + (message.Path?.Length ?? 0);

    private StateMeshBackpressureException Backpressure(Message message, string waiting) => new(
        $"{ActionNames.Of(message.Topic, message.Action)} '{message.Name}' was not sent: {waiting}, at the limit of " +
        $"StateMeshClientOptions.OutboundQueueCapacity ({_options.OutboundQueueCapacity}) or OutboundQueueMaxBytes ({_options.OutboundQueueMaxBytes}). " +
        "The connection does not drain as fast as the application sends: send less, wait for acknowledgements, or raise the limits.");

    /// <summary>Sends when open (else drops: subscriptions are re-sent on reconnect).</summary>
    internal bool TrySendIfOpen(Message message)
    {
        lock (_gate)
        {
            return _open && _link is { } link && link.TrySend(message);
        }
    }

    internal Task<Message> WaitForAckAsync(Topic topic, int action, string correlationId, CancellationToken cancellationToken)
    {
        var key = AckKey(topic, action, correlationId);
        var tcs = _pendingAcks.GetOrAdd(key, static _ => new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously));
        var wait = tcs.Task.WaitAsync(_options.AckTimeout, Time, cancellationToken);
        _ = wait.ContinueWith(t => _pendingAcks.TryRemove(new KeyValuePair<string, TaskCompletionSource<Message>>(key, tcs)), CancellationToken.None, TaskContinuationOptions.NotOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return wait;
    }

    private static string AckKey(Topic topic, int action, string correlationId) => $"{(int)topic}/{action}/{correlationId}";

    /// <inheritdoc />
    public async Task CloseAsync(CancellationToken cancellationToken = default)
    {
        if (_closing.IsCancellationRequested)
        {
            return;
        }
        await _closing.CancelAsync().ConfigureAwait(false);
        ClientLink? link;
        lock (_gate)
        {
            link = _link;
            _open = false;
        }
        if (link is not null)
        {
            await link.DisposeAsync().ConfigureAwait(false);
        }
        FailOffline();
        lock (_gate)
        {
            _states.OnNext(ConnectionState.Closed);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await CloseAsync().ConfigureAwait(false);
        await _heartbeat.DisposeAsync().ConfigureAwait(false);
        _limboTimer?.Dispose();
        _states.OnCompleted();
    }
}
