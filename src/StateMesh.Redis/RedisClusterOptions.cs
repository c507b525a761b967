namespace StateMesh.Redis;

/// <summary>Settings of a node's link to the cluster's Redis.</summary>
public sealed class RedisClusterOptions
{
    /// <summary>A StackExchange.Redis configuration string: one server, Sentinel, or several nodes of a Redis Cluster.</summary>
    public string Configuration { get; set; } = "";

    /// <summary>Put before every channel and key this cluster uses, so that several clusters can share one Redis.</summary>
    public string Prefix { get; set; } = "statemesh:";

    /// <summary>How often a node tells Redis it is alive, and looks at who else is.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>A node silent for longer than this is dead for the others (its providers and users are gone).</summary>
    public TimeSpan NodeTimeout { get; set; } = TimeSpan.FromMilliseconds(1500);
}
