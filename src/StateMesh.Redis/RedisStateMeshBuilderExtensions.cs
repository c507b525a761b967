using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StateMesh.Cluster;
using StateMesh.Hosting;
using StateMesh.Storage;

namespace StateMesh.Redis;

/// <summary>Registers the Redis cluster with a node.</summary>
public static class RedisStateMeshBuilderExtensions
{
    /// <summary>
    /// Makes this node one of a cluster that meets in Redis: <paramref name="configuration"/> is a StackExchange.Redis
    /// configuration string (<c>"127.0.0.1:6379"</c>, a Sentinel, or several nodes of a Redis Cluster). Every node of
    /// the cluster needs a unique <c>StateMesh:NodeName</c>.
    /// </summary>
    public static IStateMeshBuilder AddRedisCluster(this IStateMeshBuilder builder, string configuration, Action<RedisClusterOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(configuration);
        var services = builder.Services;
        services.AddOptions<RedisClusterOptions>().Configure(options =>
        {
            options.Configuration = configuration;
            configure?.Invoke(options);
        });
        services.TryAddSingleton(sp => new RedisClusterBus(sp.GetRequiredService<IOptions<RedisClusterOptions>>().Value, sp.GetService<ILoggerFactory>()));
        services.TryAddSingleton(sp => new RedisRecordStore(sp.GetRequiredService<RedisClusterBus>(), sp.GetRequiredService<IOptions<RedisClusterOptions>>().Value));
        // AddStateMesh registered a cluster of one (an in-process bus and store): these take their place.
        services.Replace(ServiceDescriptor.Singleton<IClusterBus>(sp => sp.GetRequiredService<RedisClusterBus>()));
        services.Replace(ServiceDescriptor.Singleton<IRecordStore>(sp => sp.GetRequiredService<RedisRecordStore>()));
        services.TryAddSingleton(sp => new RedisClusterRegistry(sp.GetRequiredService<RedisClusterBus>(), sp.GetRequiredService<IOptions<RedisClusterOptions>>().Value, sp.GetService<ILoggerFactory>()));
        services.Replace(ServiceDescriptor.Singleton<IClusterRegistry>(sp => sp.GetRequiredService<RedisClusterRegistry>()));
        return builder;
    }
}
