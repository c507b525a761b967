using System.Reactive.Linq;
using System.Reactive.Threading.Tasks;
using StateMesh.Auth;
using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

public sealed record ChatMessage(string From, string Text);

/// <summary>The StateMesh client against a real node over TCP.</summary>
public class ClientEventsTests
{
    private static StateMeshClientOptions Fast => new()
    {
        ReconnectIntervalIncrement = TimeSpan.FromMilliseconds(200),
        MaxReconnectAttempts = 50,
        AckTimeout = TimeSpan.FromSeconds(10),
    };

    private static Task<StateMeshClient> ConnectAsync(StateMeshNode node, object? auth = null, StateMeshClientOptions? options = null) =>
        StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), auth, options ?? Fast);

    [Fact]
    public async Task Typed_events_flow_between_two_clients_and_not_back_to_the_publisher()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node, new { username = "ana" });
        await using var bob = await ConnectAsync(node, new { username = "bob" });
        var toBob = new List<ChatMessage>();
        var toAna = new List<ChatMessage>();
        using var bobSub = await bob.Events.SubscribeAsync<ChatMessage>("chat", toBob.Add);
        using var anaSub = await ana.Events.SubscribeAsync<ChatMessage>("chat", toAna.Add);
        var next = bob.Events.Observe<ChatMessage>("chat").FirstAsync().ToTask();
        await ana.Events.PublishAsync("chat", new ChatMessage("ana", "hello"));
        Assert.Equal(new ChatMessage("ana", "hello"), await next.WaitAsync(TimeSpan.FromSeconds(10)));
        // Bob answers; when Ana has his answer, she has had every message meant for her.
        var answer = ana.Events.Observe<ChatMessage>("chat").FirstAsync().ToTask();
        await bob.Events.PublishAsync("chat", new ChatMessage("bob", "hi"));
        await answer.WaitAsync(TimeSpan.FromSeconds(10));
        lock (toAna)
        {
            Assert.Equal([new ChatMessage("bob", "hi")], toAna);
        }
    }

    [Fact]
    public async Task Observers_share_one_subscription_released_when_the_last_disposes()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await ConnectAsync(node);
        using var first = await client.Events.SubscribeAsync<int>("shared", _ => { });
        var second = client.Events.Observe<int>("shared").Subscribe(_ => { });
        Assert.Single(node.Engine.Events.Registry.Get("shared"));
        first.Dispose();
        // A round trip: had the first dispose unsubscribed, the node would have processed it by now.
        using (await client.Events.SubscribeAsync<int>("round-trip", _ => { })) { }
        Assert.Single(node.Engine.Events.Registry.Get("shared"));
        second.Dispose();
        await WaitUntilAsync(() => node.Engine.Events.Registry.Get("shared").Length == 0);
        // Observing again subscribes again.
        using var third = await client.Events.SubscribeAsync<int>("shared", _ => { });
        Assert.Single(node.Engine.Events.Registry.Get("shared"));
    }

    [Fact]
    public async Task A_payload_of_the_wrong_type_is_skipped_and_the_subscription_goes_on()
    {
        await using var node = await TestNode.StartAsync();
        await using var pub = await ConnectAsync(node);
        await using var sub = await ConnectAsync(node);
        var values = new List<int>();
        using var _ = await sub.Events.SubscribeAsync<int>("n", values.Add);
        var two = sub.Events.Observe<int>("n").Where(v => v == 2).FirstAsync().ToTask();
        await pub.Events.PublishAsync("n", "not a number");
        await pub.Events.PublishAsync("n", 2);
        await two.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([2], values);
    }

    [Fact]
    public async Task A_refused_login_throws_a_typed_exception()
    {
        await using var node = await TestNode.StartAsync(o => o.Users["ana"] = new StateMeshUserOptions { PasswordHash = PasswordHash.Create("pw", 1000) });
        var ex = await Assert.ThrowsAsync<StateMeshAuthenticationException>(() => ConnectAsync(node, new { username = "ana", password = "nope" }));
        Assert.False(ex.TooManyAttempts);
        await using var ok = await ConnectAsync(node, new { username = "ana", password = "pw" });
        Assert.Equal(ConnectionState.Open, ok.ConnectionState);
    }

    [Fact]
    public async Task Client_data_from_login_is_available()
    {
        await using var node = await TestNode.StartAsync(o => o.Users["ana"] = new StateMeshUserOptions { Password = "pw", ClientData = "{\"role\":\"admin\"}" });
        await using var client = await ConnectAsync(node, new { username = "ana", password = "pw" });
        Assert.Equal("admin", client.ClientData!.Value.GetProperty("role").GetString());
    }

    [Fact]
    public async Task Connecting_to_a_port_where_nothing_listens_fails()
    {
        var port = FreePort();
        await Assert.ThrowsAnyAsync<System.Net.Sockets.SocketException>(() => StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{port}", null, Fast));
    }

    [Fact]
    public async Task The_client_reconnects_logs_in_again_and_resubscribes_after_the_node_restarts()
    {
        var node = await TestNode.StartAsync();
        var port = node.TcpEndPoint!.Port;
        var name = node.Options.NodeName;
        await using var client = await ConnectAsync(node, new { username = "ana" });
        var states = new List<ConnectionState>();
        using var stateLog = client.ConnectionStates.Subscribe(s => { lock (states) { states.Add(s); } });
        using var sub = await client.Events.SubscribeAsync<string>("news", _ => { });
        var received = client.Events.Observe<string>("news").FirstAsync().ToTask();

        await node.DisposeAsync();
        await WaitUntilAsync(() => client.ConnectionState != ConnectionState.Open);
        await using var restarted = await TestNode.StartAsync(o => { o.Tcp.Port = port; o.NodeName = name + "-2"; });
        await WaitUntilAsync(() => client.ConnectionState == ConnectionState.Open, TimeSpan.FromSeconds(30));
        await WaitUntilAsync(() => restarted.Engine.Events.Registry.Get("news").Length == 1);
        await using var publisher = await ConnectAsync(restarted);
        await publisher.Events.PublishAsync("news", "back");
        Assert.Equal("back", await received.WaitAsync(TimeSpan.FromSeconds(10)));
        lock (states)
        {
            Assert.Contains(ConnectionState.Reconnecting, states);
            Assert.Equal(ConnectionState.Open, states[^1]);
        }
    }

    [Fact]
    public async Task Emits_while_offline_are_sent_after_a_quick_reconnect()
    {
        var gate = new GateHandler();
        var node = await TestNode.StartAsync();
        var port = node.TcpEndPoint!.Port;
        var options = Fast;
        options.OfflineBufferTimeout = TimeSpan.FromSeconds(20);
        await using var publisher = await ConnectAsync(node, new { username = "pub" }, options);
        await node.DisposeAsync();
        await WaitUntilAsync(() => publisher.ConnectionState != ConnectionState.Open);
        var queued = publisher.Events.PublishAsync("queued", 42);
        Assert.False(queued.IsCompleted);

        // The publisher's login waits at the gate until the subscriber is in place.
        await using var restarted = await TestNode.StartAsync(o => o.Tcp.Port = port, handlers: [gate]);
        await using var subscriber = await ConnectAsync(restarted, new { username = "sub" });
        var received = subscriber.Events.Observe<int>("queued").FirstAsync().ToTask();
        using var _ = await subscriber.Events.SubscribeAsync<int>("queued", _ => { });
        gate.Open();
        await queued.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(42, await received.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Emits_fail_with_a_clear_exception_when_the_offline_window_passes()
    {
        var node = await TestNode.StartAsync();
        var options = Fast;
        options.OfflineBufferTimeout = TimeSpan.FromMilliseconds(300);
        // Few attempts: in a full run this test once took the whole schedule of 50 (4 minutes) before it ended.
        options.MaxReconnectAttempts = 3;
        await using var client = await ConnectAsync(node, null, options);
        await node.DisposeAsync();
        await WaitUntilAsync(() => client.ConnectionState != ConnectionState.Open);
        var queued = client.Events.PublishAsync("lost", 1);
        var ex = await Assert.ThrowsAsync<StateMeshOfflineException>(() => queued.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("offline", ex.Message, StringComparison.Ordinal);
        // After the window, emits fail at once.
        await Assert.ThrowsAsync<StateMeshOfflineException>(() => client.Events.PublishAsync("lost", 2).WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task The_client_gives_up_after_the_configured_attempts()
    {
        var node = await TestNode.StartAsync();
        var options = Fast;
        options.MaxReconnectAttempts = 2;
        options.ReconnectIntervalIncrement = TimeSpan.FromMilliseconds(50);
        await using var client = await ConnectAsync(node, null, options);
        var failed = client.ConnectionStates.Where(s => s == ConnectionState.Failed).FirstAsync().ToTask();
        await node.DisposeAsync();
        Assert.Equal(ConnectionState.Failed, await failed.WaitAsync(TimeSpan.FromSeconds(20)));
    }

    internal static async Task WaitUntilAsync(Func<bool> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("the condition did not become true in time");
            }
            await Task.Delay(10);
        }
    }

    internal static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Two free ports, never the same one twice (both are held until both are known).</summary>
    internal static (int, int) TwoFreePorts()
    {
        using var a = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        using var b = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        a.Start();
        b.Start();
        return (((System.Net.IPEndPoint)a.LocalEndpoint).Port, ((System.Net.IPEndPoint)b.LocalEndpoint).Port);
    }

    private sealed class GateHandler : IAuthenticationHandler
    {
        private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Open() => _open.TrySetResult();

        public async ValueTask<AuthenticationResult?> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken)
        {
            if (context.GetString("username") == "pub")
            {
                await _open.Task.WaitAsync(cancellationToken);
            }
            return null;
        }
    }
}

public class ClientLimitsTests
{
    [Fact]
    public async Task A_payload_over_the_limit_is_refused_before_sending_and_the_connection_stays()
    {
        await using var node = await Support.TestNode.StartAsync();
        await using var client = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString());
        var big = new string('x', 2 * 1024 * 1024);
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => client.Events.PublishAsync("big", big));
        Assert.Contains("MaxOutgoingPayloadSize", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => client.Records.SetDataAsync("big", new { big }));
        using var _ = await client.Events.SubscribeAsync<int>("still-open", _ => { });
        Assert.Equal(ConnectionState.Open, client.ConnectionState);
    }

    [Fact]
    public async Task Sends_past_the_outbound_byte_limit_fail_with_a_backpressure_exception_instead_of_queueing()
    {
        using var node = new Support.FakeNode { StopReadingAfterLogin = true };
        const int Limit = 256 * 1024, Payload = 1024;
        await using var client = await StateMeshClient.ConnectAsync(node.Address, null, new StateMeshClientOptions { OutboundQueueMaxBytes = Limit });
        await node.NextLoginAsync();
        var payload = new string('x', Payload);
        // The in-memory pipe takes 1 MiB before the client's writer waits, and the writer holds at most 256 KiB more
        // (and one 64 KiB frame): past that only the client's own queue grows, up to its limit.
        const int Most = (1024 * 1024 + 256 * 1024 + 64 * 1024 + Limit) / Payload + 16;
        Exception? refused = null;
        var accepted = 0;
        while (accepted < 20 * Most)
        {
            var publish = client.Events.PublishAsync("flood", payload);
            if (publish.IsFaulted)
            {
                refused = publish.Exception!.InnerException;
                break;
            }
            accepted++;
        }
        var backpressure = Assert.IsType<StateMeshBackpressureException>(refused);
        Assert.InRange(accepted, Limit / (2 * Payload), Most);
        Assert.Contains("OutboundQueueMaxBytes", backpressure.Message, StringComparison.Ordinal);
        Assert.Equal(ConnectionState.Open, client.ConnectionState);
    }

    [Fact]
    public async Task Sends_past_the_outbound_message_count_fail_with_a_backpressure_exception()
    {
        using var node = new Support.FakeNode { StopReadingAfterLogin = true };
        const int Capacity = 100;
        await using var client = await StateMeshClient.ConnectAsync(node.Address, null, new StateMeshClientOptions { OutboundQueueCapacity = Capacity });
        await node.NextLoginAsync();
        var payload = new string('x', 16 * 1024);
        // 16 KiB each: the pipe and the writer hold at most (1 MiB + 256 KiB + 64 KiB) / 16 KiB of them, the queue 100.
        const int Most = (1024 * 1024 + 256 * 1024 + 64 * 1024) / (16 * 1024) + Capacity + 4;
        Exception? refused = null;
        var accepted = 0;
        while (accepted < 20 * Most)
        {
            var publish = client.Events.PublishAsync("flood", payload);
            if (publish.IsFaulted)
            {
                refused = publish.Exception!.InnerException;
                break;
            }
            accepted++;
        }
        Assert.IsType<StateMeshBackpressureException>(refused);
        Assert.InRange(accepted, Capacity, Most);
    }
}
