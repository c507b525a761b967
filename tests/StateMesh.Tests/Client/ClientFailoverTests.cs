using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StateMesh.Auth;
using StateMesh.Client;
using StateMesh.Cluster;
using StateMesh.Storage;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

/// <summary>
/// A client given the addresses of several nodes of one cluster (over TCP) moves to another node when its own stops:
/// it logs in again, resubscribes, and catches up on the records it holds by version.
/// </summary>
public sealed class ClientFailoverTests : IAsyncLifetime
{
    public sealed record Doc(int N);

    private readonly InProcessClusterHub _hub = new();
    private readonly MemoryRecordStore _store = new();
    private readonly MemoryRecordStorage _storage = new();
    private readonly LoginGate _gate = new("mover");
    private readonly List<StateMeshNode> _nodes = [];
    private readonly CapturingLoggerProvider _logs = new();
    private readonly ILoggerFactory _loggerFactory;

    public ClientFailoverTests() =>
        _loggerFactory = LoggerFactory.Create(b => b.AddProvider(_logs).SetMinimumLevel(LogLevel.Debug));

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }
        _loggerFactory.Dispose();
        _logs.Dispose();
    }

    /// <summary>Nodes of one cluster: one hub, one record store, one storage.</summary>
    private async Task<StateMeshNode[]> StartClusterAsync(int count)
    {
        var nodes = new StateMeshNode[count];
        for (var i = 0; i < count; i++)
        {
            nodes[i] = await TestNode.StartAsync(handlers: [_gate], storage: _storage, clusterBus: new InProcessClusterBus(_hub), store: _store);
            _nodes.Add(nodes[i]);
        }
        return nodes;
    }

    private StateMeshClientOptions Options() => new()
    {
        ReconnectIntervalIncrement = TimeSpan.FromMilliseconds(200),
        MaxReconnectAttempts = 50,
        AckTimeout = TimeSpan.FromSeconds(10),
        ConnectTimeout = TimeSpan.FromSeconds(30),
        LoggerFactory = _loggerFactory,
    };

    private static string[] AddressesOf(IEnumerable<StateMeshNode> nodes) => [.. nodes.Select(n => n.TcpAddress!.ToString())];

    private static bool LoggedIn(StateMeshNode node, string user) => node.Engine.Sessions.Any(s => s.UserId == user);

    [Fact]
    public async Task When_its_node_stops_the_client_moves_to_the_next_node_logs_in_resubscribes_and_resyncs_its_records()
    {
        var nodes = await StartClusterAsync(3);
        await using var mover = await StateMeshClient.ConnectAsync(AddressesOf(nodes), new { username = "mover" }, Options());
        Assert.Equal(nodes[0].TcpAddress, mover.Address);
        Assert.True(LoggedIn(nodes[0], "mover"));
        var news = new List<string>();
        using var subscription = await mover.Events.SubscribeAsync<string>("news", d => { lock (news) { news.Add(d); } });
        await using var other = await StateMeshClient.ConnectAsync(nodes[2].TcpAddress!.ToString(), new { username = "other" }, Options());
        await using var written = await other.Records.GetAsync<Doc>("moving/doc");
        Assert.True((await written.SetWithAckAsync(new Doc(1))).Succeeded);
        await using var copy = await mover.Records.GetAsync<Doc>("moving/doc");
        Assert.Equal((1, 1), (copy.Version, copy.Value!.N));

        // The mover's next login waits at the gate: the write below is made while it is between nodes.
        _gate.Close();
        await nodes[0].DisposeAsync();
        await _gate.Held.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEqual(ConnectionState.Open, mover.ConnectionState);
        var missed = await written.SetWithAckAsync(new Doc(2));
        Assert.True(missed.Succeeded, missed.ToString());
        Assert.Equal(1, copy.Version);
        _gate.Open();

        await ClientEventsTests.WaitUntilAsync(() => mover.ConnectionState == ConnectionState.Open, TimeSpan.FromSeconds(30));
        // The first retry went to the next address, not back to the node that stopped.
        Assert.Equal(nodes[1].TcpAddress, mover.Address);
        Assert.True(LoggedIn(nodes[1], "mover"));
        Assert.Contains(_logs.Lines, l => l.Contains($"Reconnected to {nodes[1].TcpAddress} after 1 attempts", StringComparison.Ordinal));
        await ClientEventsTests.WaitUntilAsync(() => copy.Version == 2);
        Assert.Equal(new Doc(2), copy.Value);

        await ClientEventsTests.WaitUntilAsync(() => nodes[1].Engine.Events.Registry.Get("news").Length == 1);
        await other.Events.PublishAsync("news", "from node 3");
        await ClientEventsTests.WaitUntilAsync(() => { lock (news) { return news.Count > 0; } });
        lock (news)
        {
            Assert.Equal(["from node 3"], news);
        }
    }

    [Fact]
    public async Task A_client_that_loses_node_after_node_goes_on_down_the_list_and_never_retries_a_stopped_node()
    {
        var nodes = await StartClusterAsync(3);
        await using var mover = await StateMeshClient.ConnectAsync(AddressesOf(nodes), new { username = "mover" }, Options());
        var news = new List<string>();
        using var subscription = await mover.Events.SubscribeAsync<string>("news", d => { lock (news) { news.Add(d); } });
        await using var other = await StateMeshClient.ConnectAsync(nodes[2].TcpAddress!.ToString(), new { username = "other" }, Options());

        await nodes[0].DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => mover.ConnectionState == ConnectionState.Open && LoggedIn(nodes[1], "mover"), TimeSpan.FromSeconds(30));
        await nodes[1].DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => mover.ConnectionState == ConnectionState.Open && LoggedIn(nodes[2], "mover"), TimeSpan.FromSeconds(30));

        Assert.Equal(nodes[2].TcpAddress, mover.Address);
        // Every reconnect succeeded at its first attempt: none went to a node that had stopped.
        Assert.DoesNotContain(_logs.Lines, l => l.Contains("Reconnect attempt", StringComparison.Ordinal));
        Assert.Contains(_logs.Lines, l => l.Contains($"Reconnected to {nodes[2].TcpAddress} after 1 attempts", StringComparison.Ordinal));
        await ClientEventsTests.WaitUntilAsync(() => nodes[2].Engine.Events.Registry.Get("news").Length == 1);
        await other.Events.PublishAsync("news", "still here");
        await ClientEventsTests.WaitUntilAsync(() => { lock (news) { return news.Count > 0; } });
        lock (news)
        {
            Assert.Equal(["still here"], news);
        }
    }

    [Fact]
    public async Task The_first_connect_skips_an_address_where_nothing_listens_and_connects_to_the_next()
    {
        var nodes = await StartClusterAsync(2);
        var nobody = $"tcp://127.0.0.1:{ClientEventsTests.FreePort()}";
        await using var client = await StateMeshClient.ConnectAsync([nobody, .. AddressesOf(nodes)], new { username = "ana" }, Options());
        Assert.Equal(nodes[0].TcpAddress, client.Address);
        Assert.Equal(ConnectionState.Open, client.ConnectionState);
        Assert.True(LoggedIn(nodes[0], "ana"));
        Assert.Contains(_logs.Lines, l => l.Contains($"Could not connect to {new Uri(nobody)}; trying {nodes[0].TcpAddress}", StringComparison.Ordinal));
        Assert.Contains(_logs.Lines, l => l.Contains($"Connected to {nodes[0].TcpAddress}", StringComparison.Ordinal));
        using var _ = await client.Events.SubscribeAsync<int>("works", _ => { });
    }

    [Fact]
    public async Task Endpoints_in_the_options_are_tried_after_the_address_given()
    {
        var nodes = await StartClusterAsync(1);
        var options = Options();
        options.Endpoints.Add(nodes[0].TcpAddress!.ToString());
        await using var client = await StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{ClientEventsTests.FreePort()}", new { username = "ana" }, options);
        Assert.Equal(nodes[0].TcpAddress, client.Address);
        Assert.True(LoggedIn(nodes[0], "ana"));
    }

    [Fact]
    public async Task AddStateMeshClient_moves_on_to_the_endpoints_of_its_client_options_and_the_in_process_client_ignores_them()
    {
        var nodes = await StartClusterAsync(1);
        var nobody = $"tcp://127.0.0.1:{ClientEventsTests.FreePort()}";
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddStateMeshClient(o =>
        {
            o.Address = nobody;
            o.AuthData = new System.Text.Json.Nodes.JsonObject { ["username"] = "svc" };
            o.Client.Endpoints.Add(nodes[0].TcpAddress!.ToString());
        });
        using (var host = builder.Build())
        {
            await host.StartAsync();
            var client = (StateMeshClient)host.Services.GetRequiredService<IStateMeshClient>();
            Assert.Equal(nodes[0].TcpAddress, client.Address);
            Assert.True(LoggedIn(nodes[0], "svc"));
            await host.StopAsync();
        }

        var local = Host.CreateApplicationBuilder();
        local.Services.AddStateMesh(mesh => mesh.Configure(o => o.NodeName = $"failover-host-{Environment.ProcessId}").ConfigureClient(o => o.Endpoints.Add(nobody)));
        using (var host = local.Build())
        {
            var client = (StateMeshClient)host.Services.GetRequiredService<IStateMeshClient>();
            Assert.Equal("inproc", Assert.Single(client.Addresses).Scheme);
        }
    }

    [Fact]
    public async Task When_no_address_accepts_the_error_names_each_with_its_reason()
    {
        string[] nobody = [$"tcp://127.0.0.1:{ClientEventsTests.FreePort()}", $"tcp://127.0.0.1:{ClientEventsTests.FreePort()}"];
        var error = await Assert.ThrowsAsync<StateMeshException>(() => StateMeshClient.ConnectAsync(nobody, null, Options()));
        foreach (var address in nobody)
        {
            Assert.Contains(new Uri(address).ToString(), error.Message, StringComparison.Ordinal);
        }
        var reasons = Assert.IsType<AggregateException>(error.InnerException);
        Assert.Equal(2, reasons.InnerExceptions.Count);
        Assert.All(reasons.InnerExceptions, e => Assert.IsAssignableFrom<SocketException>(e));
    }

    [Fact]
    public async Task A_refused_login_is_not_tried_on_the_other_nodes()
    {
        var nodes = await StartClusterAsync(2);
        _gate.RefuseAll();
        await Assert.ThrowsAsync<StateMeshAuthenticationException>(() => StateMeshClient.ConnectAsync(AddressesOf(nodes), new { username = "mover" }, Options()));
        Assert.Equal(1, _gate.Logins);
    }

    [Fact]
    public async Task Every_address_is_checked_before_anything_connects()
    {
        var nodes = await StartClusterAsync(1);
        var good = nodes[0].TcpAddress!.ToString();
        var unsupported = await Assert.ThrowsAsync<ArgumentException>(() => StateMeshClient.ConnectAsync([good, "http://127.0.0.1:8080"], null, Options()));
        Assert.Contains("Unsupported address 'http://127.0.0.1:8080/'", unsupported.Message, StringComparison.Ordinal);
        var relative = await Assert.ThrowsAsync<ArgumentException>(() => StateMeshClient.ConnectAsync([good, "127.0.0.1:6021/x"], null, Options()));
        Assert.Contains("use tcp://host:port", relative.Message, StringComparison.Ordinal);
        var empty = await Assert.ThrowsAsync<ArgumentException>(() => StateMeshClient.ConnectAsync(Array.Empty<string>(), null, Options()));
        Assert.Contains("at least one node address", empty.Message, StringComparison.Ordinal);
        var options = Options();
        options.Endpoints.Add("udp://127.0.0.1:6021");
        var endpoint = await Assert.ThrowsAsync<ArgumentException>(() => StateMeshClient.ConnectAsync(good, null, options));
        Assert.Equal("options", endpoint.ParamName);
        var deepstream = await Assert.ThrowsAsync<ArgumentException>(() => StateMeshClient.ConnectAsync([good, "ws://127.0.0.1:6020/deepstream"], null, Options()));
        Assert.Contains("deepstream protocol", deepstream.Message, StringComparison.Ordinal);
        var mixed = Options();
        mixed.Codec = StateMesh.Protocol.NativeCodec.Instance;
        var mix = await Assert.ThrowsAsync<ArgumentException>(() => StateMeshClient.ConnectAsync([good, "ws://127.0.0.1:6020/deepstream"], null, mixed));
        Assert.Contains("mix", mix.Message, StringComparison.Ordinal);
        // Nothing got as far as a login.
        Assert.Equal(0, _gate.Logins);
        Assert.Equal(0, nodes[0].ConnectionCount);
    }

    [Fact]
    public void Reconnect_attempts_start_at_the_address_after_the_lost_one_and_go_round()
    {
        Assert.Equal([2, 0, 1, 2, 0], Enumerable.Range(0, 5).Select(a => StateMeshClient.ReconnectAddress(1, a, 3)));
        Assert.Equal([0, 0, 0], Enumerable.Range(0, 3).Select(a => StateMeshClient.ReconnectAddress(0, a, 1)));
        // MaxReconnectAttempts may be int.MaxValue: the sum must not overflow.
        Assert.Equal(2, StateMeshClient.ReconnectAddress(1, int.MaxValue - 1, 3));
    }

    /// <summary>Lets logins through until closed; then holds the named user's logins until opened again.</summary>
    private sealed class LoginGate(string user) : IAuthenticationHandler
    {
        private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private volatile TaskCompletionSource? _closed;
        private volatile bool _refuse;
        private int _logins;

        /// <summary>Completes when a login of the user has reached the gate while it was closed.</summary>
        public Task Held => _held.Task;

        public int Logins => Volatile.Read(ref _logins);

        public void Close() => _closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Open() => _closed?.TrySetResult();

        public void RefuseAll() => _refuse = true;

        public async ValueTask<AuthenticationResult?> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _logins);
            if (_refuse)
            {
                return AuthenticationResult.Failure();
            }
            if (context.GetString("username") == user && _closed is { } closed)
            {
                _held.TrySetResult();
                await closed.Task.WaitAsync(cancellationToken);
            }
            return null;
        }
    }
}
