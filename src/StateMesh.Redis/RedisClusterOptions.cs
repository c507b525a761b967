namespace StateMesh.Redis;

/// <summary>Settings of a node's link to the cluster's Redis.</summary>
public sealed class RedisClusterOptions
{
    /// <summary>A StackExchange.Redis configuration string: one server, Sentinel, or several nodes of a Redis Cluster.</summary>
    public string Configuration { get; set; } = "";

    /// <summary>Put before every channel and key this cluster uses, so that several clusters can share one Redis.</summary>
    public string Prefix { get; set; } = "statemesh:";
}
