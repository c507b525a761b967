using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;
using StateMesh.Redis.Tests.Support;

namespace StateMesh.Redis.Tests;

/// <summary>The server stopped, killed and started again: same port, no data, clients reconnect.</summary>
public sealed class RedisRestartTests(RedisServer server) : IClassFixture<RedisServer>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Started_again_the_server_is_empty_on_the_same_port_and_an_earlier_multiplexer_reconnects()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(server.Configuration);
        var db = redis.GetDatabase();
        Assert.True(await db.StringSetAsync("before-restart", "1"));
        var port = server.Port;
        var failed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var restored = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        redis.ConnectionFailed += (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Interactive)
            {
                failed.TrySetResult();
            }
        };
        redis.ConnectionRestored += (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Interactive)
            {
                restored.TrySetResult();
            }
        };

        await server.StopAsync();
        Assert.False(server.IsRunning);
        await failed.Task.WaitAsync(Timeout);
        await server.StartAgainAsync();
        await restored.Task.WaitAsync(Timeout);

        Assert.Equal(port, server.Port);
        Assert.True(redis.IsConnected);
        Assert.False(await db.KeyExistsAsync("before-restart"));
        Assert.True(await db.StringSetAsync("after-restart", "2"));
        Assert.Equal("2", (string?)await db.StringGetAsync("after-restart"));
    }

    [Fact]
    public async Task Killed_server_refuses_connections_until_started_again()
    {
        await server.KillAsync();
        Assert.False(server.IsRunning);
        using (var client = new TcpClient())
        {
            var refused = await Assert.ThrowsAsync<SocketException>(() => client.ConnectAsync(IPAddress.Loopback, server.Port));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }

        await server.StartAgainAsync();

        Assert.True(server.IsRunning);
        await using var redis = await ConnectionMultiplexer.ConnectAsync(server.Configuration);
        Assert.Equal("PONG", (string?)await redis.GetDatabase().ExecuteAsync("PING"));
    }

    [Fact]
    public async Task Append_only_server_started_again_keeps_its_data_when_asked_and_loses_it_otherwise()
    {
        await using var aof = new RedisServer { AppendOnly = true };
        await aof.InitializeAsync();
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(aof.Configuration))
        {
            Assert.True(await redis.GetDatabase().StringSetAsync("kept", "yes"));
        }

        await aof.StartAgainAsync(keepData: true);
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(aof.Configuration))
        {
            Assert.Equal("yes", (string?)await redis.GetDatabase().StringGetAsync("kept"));
        }

        await aof.StartAgainAsync();
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(aof.Configuration))
        {
            Assert.False(await redis.GetDatabase().KeyExistsAsync("kept"));
        }
    }
}
