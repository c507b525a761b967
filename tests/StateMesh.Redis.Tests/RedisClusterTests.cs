using System.Net;
using StackExchange.Redis;
using StateMesh.Redis.Tests.Support;

namespace StateMesh.Redis.Tests;

/// <summary>The cluster fixture: three real masters that share the slots, with sharded pub/sub between them.</summary>
public sealed class RedisClusterTests(RedisClusterServer cluster) : IClassFixture<RedisClusterServer>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Configuration_names_three_masters()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(cluster.Configuration);
        var servers = redis.GetServers();
        Assert.Equal(RedisClusterServer.Masters, servers.Length);
        Assert.All(servers, s => Assert.Equal(ServerType.Cluster, s.ServerType));
        Assert.All(servers, s => Assert.False(s.IsReplica));
        Assert.Equal(cluster.Ports.Order(), servers.Select(s => ((IPEndPoint)s.EndPoint).Port).Order());
        Assert.All(cluster.Ports, p => Assert.InRange(p + 10000, 10001, 65535));
    }

    [Fact]
    public async Task Keys_with_different_hash_tags_land_on_different_masters()
    {
        // CLUSTER KEYSLOT is an admin command to StackExchange.Redis.
        await using var redis = await ConnectionMultiplexer.ConnectAsync($"{cluster.Configuration},allowAdmin=true");
        var db = redis.GetDatabase();
        var slots = redis.GetServers()[0].ClusterConfiguration!;
        // One tag, one slot, whatever follows the tag.
        Assert.Equal(await KeySlotAsync(db, "{room-1}a"), await KeySlotAsync(db, "{room-1}b"));

        var routed = new Dictionary<string, EndPoint>();
        for (var i = 0; i < 30; i++)
        {
            var key = $"{{room-{i}}}:tag-test";
            Assert.True(await db.StringSetAsync(key, i));
            var endpoint = redis.GetServer((RedisKey)key).EndPoint;
            // The multiplexer routes the key to the master that owns its slot, by the cluster's own account.
            Assert.Equal(endpoint, slots.GetBySlot(await KeySlotAsync(db, key))!.EndPoint);
            routed[key] = endpoint;
        }

        Assert.Equal(RedisClusterServer.Masters, routed.Values.Distinct().Count());
        foreach (var server in redis.GetServers())
        {
            // SCAN on one node sees that node's keys only.
            var held = server.Keys(pattern: "*:tag-test").Select(k => (string)k!).Order();
            Assert.Equal(routed.Where(r => r.Value.Equals(server.EndPoint)).Select(r => r.Key).Order(), held);
        }
    }

    [Fact]
    public async Task Sharded_pub_sub_delivers_between_two_multiplexers_on_every_master()
    {
        await using var subscriber = await ConnectionMultiplexer.ConnectAsync(cluster.Configuration);
        await using var publisher = await ConnectionMultiplexer.ConnectAsync(cluster.Configuration);
        // A channel for each master: a sharded channel lives on the master of its name's slot.
        var channels = Enumerable.Range(0, 100)
            .Select(i => $"{{presence-{i}}}:shard-test")
            .GroupBy(name => subscriber.GetServer((RedisKey)name).EndPoint)
            .Select(g => g.First())
            .ToList();
        Assert.Equal(RedisClusterServer.Masters, channels.Count);

        var received = new Dictionary<string, TaskCompletionSource<(RedisChannel, RedisValue)>>();
        foreach (var name in channels)
        {
            var message = new TaskCompletionSource<(RedisChannel, RedisValue)>(TaskCreationOptions.RunContinuationsAsynchronously);
            received[name] = message;
            await subscriber.GetSubscriber().SubscribeAsync(RedisChannel.Sharded(name), (channel, value) => message.TrySetResult((channel, value)));
        }

        foreach (var name in channels)
        {
            // SPUBLISH counts the subscribers on the channel's shard: the other multiplexer.
            Assert.Equal(1, await publisher.GetSubscriber().PublishAsync(RedisChannel.Sharded(name), $"hello {name}"));
        }

        foreach (var name in channels)
        {
            var (channel, value) = await received[name].Task.WaitAsync(Timeout);
            Assert.True(channel.IsSharded);
            Assert.Equal(name, (string?)channel);
            Assert.Equal($"hello {name}", (string?)value);
        }
    }

    private static async Task<int> KeySlotAsync(IDatabase db, string key) => (int)await db.ExecuteAsync("CLUSTER", "KEYSLOT", key);
}
