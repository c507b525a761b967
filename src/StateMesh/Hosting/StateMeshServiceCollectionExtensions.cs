using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using StateMesh;
using StateMesh.Auth;
using StateMesh.Client;
using StateMesh.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers StateMesh nodes and clients.</summary>
public static class StateMeshServiceCollectionExtensions
{
    /// <summary>
    /// Makes this host a StateMesh node: the node runs as a hosted service, <see cref="StateMeshNode"/> and an
    /// in-process <see cref="IStateMeshClient"/> (no socket) are registered, and options are validated on start.
    /// </summary>
    public static IStateMeshBuilder AddStateMesh(this IServiceCollection services) => AddStateMesh(services, static _ => { });

    /// <summary>Like <see cref="AddStateMesh(IServiceCollection)"/>, then configures the node.</summary>
    public static IStateMeshBuilder AddStateMesh(this IServiceCollection services, Action<IStateMeshBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<StateMeshOptions>().ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<StateMeshClientOptions>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<StateMeshOptions>, StateMeshOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(sp => new StateMeshNode(
            sp.GetRequiredService<IOptions<StateMeshOptions>>(),
            sp.GetServices<IAuthenticationHandler>(),
            sp.GetService<Logging.ILoggerFactory>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetService<System.Diagnostics.Metrics.IMeterFactory>(),
            sp.GetRequiredService<StateMesh.Storage.IRecordStore>(),
            sp.GetRequiredService<StateMesh.Storage.IRecordStorage>(),
            sp.GetRequiredService<StateMesh.Cluster.IClusterBus>(),
            sp.GetRequiredService<StateMesh.Cluster.IClusterRegistry>()));
        // A node alone is a cluster of one: a bus and a registry with a hub of their own (StateMesh.Redis replaces them).
        services.TryAddSingleton<StateMesh.Cluster.IClusterBus>(_ => new StateMesh.Cluster.InProcessClusterBus());
        services.TryAddSingleton<StateMesh.Cluster.IClusterRegistry>(_ => new StateMesh.Cluster.InProcessClusterRegistry());
        services.TryAddSingleton<StateMesh.Storage.IRecordStore, StateMesh.Storage.MemoryRecordStore>();
        services.TryAddSingleton<StateMesh.Storage.IRecordStorage, StateMesh.Storage.MemoryRecordStorage>();
        services.TryAddSingleton<InProcessClientHolder>();
        services.TryAddSingleton<IStateMeshClient>(sp => sp.GetRequiredService<InProcessClientHolder>().Client);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, StateMeshHostedService>());
        var builder = new StateMeshBuilder(services);
        configure(builder);
        return builder;
    }

    /// <summary>
    /// Registers an <see cref="IStateMeshClient"/> for a remote node, connected when the host starts.
    /// </summary>
    public static IServiceCollection AddStateMeshClient(this IServiceCollection services, Action<StateMeshRemoteClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions<StateMeshRemoteClientOptions>().Configure(configure);
        services.TryAddSingleton<RemoteClientHolder>();
        services.TryAddSingleton<IStateMeshClient>(sp => sp.GetRequiredService<RemoteClientHolder>().Client);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, RemoteClientHostedService>());
        return services;
    }
}

/// <summary>Configures a node through its builder.</summary>
public static class StateMeshBuilderExtensions
{
    /// <summary>Configures the node's options in code.</summary>
    public static IStateMeshBuilder Configure(this IStateMeshBuilder builder, Action<StateMeshOptions> configure)
    {
        builder.Services.Configure(configure);
        return builder;
    }

    /// <summary>
    /// Binds the node's options from a configuration section (usually <c>configuration.GetSection("StateMesh")</c>).
    /// A user's ClientData and ServerData may be JSON objects in the configuration or JSON text.
    /// </summary>
    public static IStateMeshBuilder BindConfiguration(this IStateMeshBuilder builder, IConfiguration section)
    {
        builder.Services.Configure<StateMeshOptions>(section);
        builder.Services.PostConfigure<StateMeshOptions>(options =>
        {
            // Users are read here rather than by the binder: ClientData and ServerData may be objects in the configuration.
            foreach (var user in section.GetSection("Users").GetChildren())
            {
                options.Users[user.Key] = new StateMeshUserOptions
                {
                    PasswordHash = user["PasswordHash"],
                    Password = user["Password"],
                    ClientData = JsonFromSection(user.GetSection("ClientData")),
                    ServerData = JsonFromSection(user.GetSection("ServerData")),
                };
            }
        });
        return builder;
    }

    /// <summary>Listens for native-protocol clients on TCP.</summary>
    public static IStateMeshBuilder AddTcpEndpoint(this IStateMeshBuilder builder, int port = 6021, string host = "127.0.0.1") =>
        builder.Configure(o =>
        {
            o.Tcp.Enabled = true;
            o.Tcp.Port = port;
            o.Tcp.Host = host;
        });

    /// <summary>
    /// Puts permissions in force, in deepstream's shape (as in a <c>permissions.yml</c>), given as YAML or JSON text:
    /// <c>record</c>, <c>event</c>, <c>rpc</c> and <c>presence</c>, each with name patterns and their rules.
    /// </summary>
    public static IStateMeshBuilder AddPermissions(this IStateMeshBuilder builder, string rules) =>
        builder.Configure(o => o.Permissions.Rules = rules);

    /// <summary>Puts the permissions of a file in force (YAML, or JSON when it ends in .json); a change to it is read while the node runs.</summary>
    public static IStateMeshBuilder AddPermissionsFile(this IStateMeshBuilder builder, string path, bool reload = true) =>
        builder.Configure(o =>
        {
            o.Permissions.Path = path;
            o.Permissions.Reload = reload;
        });

    /// <summary>Adds a user who logs in with a username and password (hashed with PBKDF2 here).</summary>
    public static IStateMeshBuilder AddUser(this IStateMeshBuilder builder, string username, string password, JsonObject? clientData = null, JsonObject? serverData = null)
    {
        var hash = PasswordHash.Create(password);
        return builder.Configure(o => o.Users[username] = new StateMeshUserOptions
        {
            PasswordHash = hash,
            ClientData = clientData?.ToJsonString(),
            ServerData = serverData?.ToJsonString(),
        });
    }

    /// <summary>Adds an authentication handler to the chain (after configured users, before anonymous logins).</summary>
    public static IStateMeshBuilder AddAuthenticationHandler<THandler>(this IStateMeshBuilder builder)
        where THandler : class, IAuthenticationHandler
    {
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IAuthenticationHandler, THandler>());
        return builder;
    }

    /// <summary>Configures the in-process client.</summary>
    public static IStateMeshBuilder ConfigureClient(this IStateMeshBuilder builder, Action<StateMeshClientOptions> configure)
    {
        builder.Services.Configure(configure);
        return builder;
    }

    private static string? JsonFromSection(IConfigurationSection section)
    {
        if (section.Value is not null)
        {
            return section.Value;
        }
        var node = ToJson(section);
        return node?.ToJsonString();
    }

    private static JsonNode? ToJson(IConfigurationSection section)
    {
        var children = section.GetChildren().ToList();
        if (children.Count == 0)
        {
            return section.Value is null ? null : JsonValue.Create(section.Value);
        }
        var isArray = children.All(c => int.TryParse(c.Key, out _));
        if (isArray)
        {
            var array = new JsonArray();
            foreach (var child in children.OrderBy(c => int.Parse(c.Key, System.Globalization.CultureInfo.InvariantCulture)))
            {
                array.Add(ToJson(child));
            }
            return array;
        }
        var obj = new JsonObject();
        foreach (var child in children)
        {
            obj[child.Key] = ToJson(child);
        }
        return obj;
    }
}
