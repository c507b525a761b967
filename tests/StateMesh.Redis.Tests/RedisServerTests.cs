using StackExchange.Redis;
using StateMesh.Redis.Tests.Support;

namespace StateMesh.Redis.Tests;

/// <summary>The single-server fixture: a real redis-server on loopback that StackExchange.Redis talks to.</summary>
public sealed class RedisServerTests(RedisServer server) : IClassFixture<RedisServer>
{
    [Fact]
    public void Configuration_names_the_loopback_port_the_server_listens_on()
    {
        Assert.True(server.IsRunning);
        Assert.InRange(server.Port, 1, 65535);
        Assert.Equal($"127.0.0.1:{server.Port}", server.Configuration);
    }

    [Fact]
    public async Task Server_answers_ping_and_returns_what_was_set()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(server.Configuration);
        var db = redis.GetDatabase();
        Assert.Equal("PONG", (string?)await db.ExecuteAsync("PING"));
        var key = $"record/{Guid.NewGuid():N}";
        Assert.True(await db.StringSetAsync(key, "{\"v\":1}"));
        Assert.Equal("{\"v\":1}", (string?)await db.StringGetAsync(key));
        Assert.False((await db.StringGetAsync($"{key}/absent")).HasValue);
    }

    [Fact]
    public async Task Server_keeps_nothing_on_disk()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync($"{server.Configuration},allowAdmin=true");
        var config = redis.GetServer(server.Configuration).ConfigGet("*").ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("", config["save"]);
        Assert.Equal("no", config["appendonly"]);
        Assert.Equal("127.0.0.1", config["bind"]);
    }
}
