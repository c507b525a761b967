using System.Text;
using Microsoft.Extensions.Time.Testing;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Server;

/// <summary>The session state machine's timeouts, driven by fake time over the in-memory transport.</summary>
public class SessionTimeTests
{
    private static async Task<(StateMeshNode Node, FakeTimeProvider Time)> StartAsync(Action<StateMeshOptions>? configure = null)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var node = await TestNode.StartAsync(o =>
        {
            o.Tcp.Enabled = false;
            o.HeartbeatInterval = TimeSpan.FromSeconds(30);
            o.UnauthenticatedTimeout = TimeSpan.FromSeconds(180);
            configure?.Invoke(o);
        }, time);
        return (node, time);
    }

    private static async Task PingPongAsync(RawClient client)
    {
        await client.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        Assert.Equal((int)ConnectionAction.Pong, (await client.ReceiveAsync()).Action);
    }

    [Fact]
    public async Task Unauthenticated_timeout_fires_at_the_configured_time_and_not_before()
    {
        var (node, time) = await StartAsync(o => o.HeartbeatInterval = TimeSpan.FromHours(1));
        await using var _ = node;
        await using var client = RawClient.ConnectInProcess(node);
        await client.HandshakeAsync();
        time.Advance(TimeSpan.FromSeconds(179));
        // Still served: a message before login is answered with AUTH INVALID_MESSAGE.
        await client.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = ["e"] });
        var alive = await client.ReceiveAsync();
        Assert.Equal((Topic.Auth, (int)AuthAction.InvalidMessage), (alive.Topic, alive.Action));
        time.Advance(TimeSpan.FromSeconds(1));
        var m = await client.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.AuthenticationTimeout), (m.Topic, m.Action));
        await client.Closed.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_logged_in_client_is_not_timed_out_as_unauthenticated()
    {
        var (node, time) = await StartAsync(o => o.HeartbeatInterval = TimeSpan.FromHours(1));
        await using var _ = node;
        await using var client = await RawClient.LoginInProcessAsync(node);
        time.Advance(TimeSpan.FromSeconds(200));
        await PingPongAsync(client);
    }

    [Fact]
    public async Task Silence_of_more_than_twice_the_heartbeat_closes_and_traffic_keeps_it_open()
    {
        var (node, time) = await StartAsync();
        await using var _ = node;
        await using var client = await RawClient.LoginInProcessAsync(node);
        for (var i = 0; i < 5; i++)
        {
            time.Advance(TimeSpan.FromSeconds(30));
            await PingPongAsync(client);
        }
        time.Advance(TimeSpan.FromSeconds(60)); // exactly 2x: still allowed
        await PingPongAsync(client);
        time.Advance(TimeSpan.FromSeconds(90)); // 3x at the next check
        await client.Closed.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
