using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StateMesh.Auth;
using StateMesh.Diagnostics;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh;

/// <summary>
/// A StateMesh node: serves clients over its endpoints (in-process, and native TCP when enabled).
/// In a generic host, <c>services.AddStateMesh()</c> runs it as a hosted service.
/// </summary>
public sealed class StateMeshNode : IAsyncDisposable
{
    private readonly StateMeshOptions _options;
    private readonly ILogger _logger;
    private readonly StateMeshMetrics _metrics;
    private readonly Server.NodeEngine _engine;
    private IDisposable? _inProcess;
    private TcpListenerLoop? _tcp;
    private int _state; // 0 new, 1 started, 2 stopped
    private HttpAuthenticationHandler? _httpAuthentication;

    /// <summary>Creates a node. Handlers are tried in order; configured users come first, anonymous logins last when allowed.</summary>
    public StateMeshNode(
        IOptions<StateMeshOptions> options,
        IEnumerable<IAuthenticationHandler>? authenticationHandlers = null,
        ILoggerFactory? loggerFactory = null,
        TimeProvider? timeProvider = null,
        System.Diagnostics.Metrics.IMeterFactory? meterFactory = null,
        Storage.IRecordStore? recordStore = null,
        Storage.IRecordStorage? recordStorage = null,
        Cluster.IClusterBus? clusterBus = null,
        Cluster.IClusterRegistry? clusterRegistry = null)
    {
        _options = options.Value;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("StateMesh.Node");
        _metrics = new StateMeshMetrics(meterFactory);
        var time = timeProvider ?? TimeProvider.System;
        var custom = (authenticationHandlers ?? []).ToList();
        var strategies = new Dictionary<string, IAuthenticationHandler[]>(StringComparer.OrdinalIgnoreCase)
        {
            ["users"] = _options.Users.Count > 0 ? [new ConfiguredUsersAuthenticationHandler(options)] : [],
            ["http"] = _options.Auth.Http.EndpointUrl is not null ? [_httpAuthentication = new HttpAuthenticationHandler(_options.Auth.Http, _logger, time)] : [],
            ["storage"] = _options.Auth.Storage.Enabled ? [new StorageAuthenticationHandler(_options.Auth.Storage, () => _engine!.Records)] : [],
            ["handlers"] = [.. custom],
            // By default anyone may log in only when no users, webhook or storage users say who may (a handler added in
            // code decides for itself: JWT logins turn anonymous logins off unless AllowAnonymous says otherwise).
            ["anonymous"] = _options.AllowAnonymous ?? (_options.Users.Count == 0 && _options.Auth.Http.EndpointUrl is null && !_options.Auth.Storage.Enabled)
                ? [new OpenAuthenticationHandler()] : [],
        };
        var order = _options.Auth.Order is { Count: > 0 } given ? given : ["users", "http", "storage", "handlers", "anonymous"];
        var handlers = new List<IAuthenticationHandler>();
        foreach (var strategy in order)
        {
            handlers.AddRange(strategies.TryGetValue(strategy, out var found)
                ? found
                : throw new OptionsValidationException("StateMesh:Auth:Order", typeof(StateMeshOptions), [$"StateMesh:Auth:Order: unknown strategy '{strategy}' (use users, http, storage, handlers, anonymous)"]));
        }
        _engine = new Server.NodeEngine(_options, new Server.Authenticator(handlers), _logger, time, _metrics,
            recordStore ?? new Storage.MemoryRecordStore(), recordStorage ?? new Storage.MemoryRecordStorage(),
            clusterBus ?? new Cluster.InProcessClusterBus(), clusterRegistry ?? new Cluster.InProcessClusterRegistry());
    }

    /// <summary>The node's options.</summary>
    public StateMeshOptions Options => _options;

    /// <summary>The address in-process clients use: <c>inproc://{NodeName}</c>.</summary>
    public Uri InProcessAddress => new($"inproc://{_options.NodeName}");

    /// <summary>The TCP endpoint actually bound (useful with port 0), or null when TCP is off or the node is not started.</summary>
    public IPEndPoint? TcpEndPoint => _tcp?.LocalEndPoint;

    /// <summary>The native TCP address clients use, or null.</summary>
    public Uri? TcpAddress => TcpEndPoint is { } ep ? new Uri($"tcp://{ep.Address}:{ep.Port}") : null;

    /// <summary>True between start and stop.</summary>
    public bool IsRunning => Volatile.Read(ref _state) == 1;

    /// <summary>Open connections.</summary>
    public int ConnectionCount => _engine.SessionCount;

    internal Server.NodeEngine Engine => _engine;

    /// <summary>Joins the cluster (a cluster of one when alone), then starts the endpoints.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            throw new InvalidOperationException("The node was already started.");
        }
        cancellationToken.ThrowIfCancellationRequested();
        foreach (var (name, user) in _options.Users)
        {
            if (user.PasswordHash is null && user.Password is not null)
            {
                NodeLog.PlainTextPassword(_logger, name);
            }
        }
        _engine.Permissions.Watch();
        await _engine.Bus.StartAsync(_options.NodeName, _engine, cancellationToken).ConfigureAwait(false);
        await _engine.Bus.Subscribe(_engine.OwnChannel).WaitAsync(cancellationToken).ConfigureAwait(false);
        await _engine.Bus.Subscribe(StateMesh.Presence.PresenceTopic.Channel).WaitAsync(cancellationToken).ConfigureAwait(false);
        await _engine.Bus.Subscribe(_engine.Events.Listening.Channel).WaitAsync(cancellationToken).ConfigureAwait(false);
        await _engine.Bus.Subscribe(_engine.Records.Listening.Channel).WaitAsync(cancellationToken).ConfigureAwait(false);
        await _engine.Registry.StartAsync(_options.NodeName, _engine, cancellationToken).ConfigureAwait(false);
        _engine.Presence.AskWhoIsOnline();
        _engine.Events.Listening.Announce();
        _engine.Records.Listening.Announce();
        _inProcess = InMemoryTransport.Listen(_options.NodeName, connection => _engine.Accept(connection, NativeCodec.Instance));
        if (_options.Tcp.Enabled)
        {
            var address = IPAddress.Parse(_options.Tcp.Host == "localhost" ? "127.0.0.1" : _options.Tcp.Host);
            _tcp = new TcpListenerLoop(new IPEndPoint(address, _options.Tcp.Port), connection => _engine.Accept(connection, NativeCodec.Instance), _engine.Logger);
            _tcp.Start();
            NodeLog.Listening(_logger, _tcp.LocalEndPoint.ToString());
        }
        NodeLog.NodeStarted(_logger, _options.NodeName);
    }

    /// <summary>Accepts a connection from another transport (used by adapters such as WebSockets).</summary>
    internal bool Accept(TransportConnection connection, IMessageCodec codec) => _engine.Accept(connection, codec);

    /// <summary>Stops accepting, tells every client CLOSING, and waits for their queues to drain.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _state, 2) != 1)
        {
            return;
        }
        _inProcess?.Dispose();
        if (_tcp is not null)
        {
            await _tcp.DisposeAsync().ConfigureAwait(false);
        }
        await _engine.StopAsync(TimeSpan.FromSeconds(5)).WaitAsync(cancellationToken).ConfigureAwait(false);
        await _engine.Registry.StopAsync(cancellationToken).ConfigureAwait(false);
        await _engine.Bus.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _httpAuthentication?.Dispose();
        _metrics.Dispose();
    }
}
