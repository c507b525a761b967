using StateMesh.Cluster;
using StateMesh.Redis;
using StateMesh.Redis.Tests.Support;
using StateMesh.Storage;
using StateMesh.Tests.Cluster;

namespace StateMesh.Redis.Tests;

/// <summary>The bus specification over one real redis-server.</summary>
[Collection(RedisCollection.Name)]
public sealed class RedisClusterBusTests(RedisServer redis) : ClusterBusSpecification
{
    private readonly string _prefix = "t" + Guid.NewGuid().ToString("N")[..8] + ":";

    protected override IClusterBus CreateBus() => new RedisClusterBus(new RedisClusterOptions { Configuration = redis.Configuration, Prefix = _prefix });

    // An UNSUBSCRIBE is on its way when Unsubscribe returns.
    protected override Task SettleAsync() => Task.Delay(100);
}

/// <summary>The bus specification over a real three-master Redis Cluster: sharded pub/sub.</summary>
[Collection(RedisClusterCollection.Name)]
public sealed class RedisClusterShardedBusTests(RedisClusterServer cluster) : ClusterBusSpecification
{
    private readonly string _prefix = "t" + Guid.NewGuid().ToString("N")[..8] + ":";

    protected override IClusterBus CreateBus() => new RedisClusterBus(new RedisClusterOptions { Configuration = cluster.Configuration, Prefix = _prefix });

    protected override Task SettleAsync() => Task.Delay(100);
}

/// <summary>Several nodes on one real redis-server behave as one.</summary>
[Collection(RedisCollection.Name)]
public sealed class RedisClusterNodesTests(RedisServer redis) : ClusterNodesSpecification
{
    private readonly string _prefix = "t" + Guid.NewGuid().ToString("N")[..8] + ":";

    protected override (IClusterBus Bus, IRecordStore Store, IClusterRegistry Registry) CreateMember()
    {
        var options = new RedisClusterOptions { Configuration = redis.Configuration, Prefix = _prefix };
        var bus = new RedisClusterBus(options);
        return (bus, new RedisRecordStore(bus, options), new RedisClusterRegistry(bus, options));
    }
}

/// <summary>Several nodes on a real three-master Redis Cluster behave as one.</summary>
[Collection(RedisClusterCollection.Name)]
public sealed class RedisClusterShardedNodesTests(RedisClusterServer cluster) : ClusterNodesSpecification
{
    private readonly string _prefix = "t" + Guid.NewGuid().ToString("N")[..8] + ":";

    protected override (IClusterBus Bus, IRecordStore Store, IClusterRegistry Registry) CreateMember()
    {
        var options = new RedisClusterOptions { Configuration = cluster.Configuration, Prefix = _prefix };
        var bus = new RedisClusterBus(options);
        return (bus, new RedisRecordStore(bus, options), new RedisClusterRegistry(bus, options));
    }
}
