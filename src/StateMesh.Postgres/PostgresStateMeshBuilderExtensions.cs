using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StateMesh.Hosting;
using StateMesh.Postgres;
using StateMesh.Storage;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers PostgreSQL as the node's durable record storage.</summary>
public static class PostgresStateMeshBuilderExtensions
{
    /// <summary>
    /// Keeps records in PostgreSQL (a table of name, version, jsonb data and the exact bytes; created if missing), with
    /// group commit; a write is acknowledged only once its transaction has committed. The options are validated when the
    /// host starts, and the storage commits what is queued and closes when the host's services are disposed.
    /// </summary>
    /// <param name="builder">The node's builder.</param>
    /// <param name="connectionString">An Npgsql connection string.</param>
    /// <param name="configure">Further settings (schema, table, batch and queue sizes).</param>
    public static IStateMeshBuilder AddPostgresStorage(this IStateMeshBuilder builder, string connectionString, Action<PostgresStorageOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        return AddPostgresStorageCore(builder, options =>
        {
            options.ConnectionString = connectionString;
            configure?.Invoke(options);
        });
    }

    private static IStateMeshBuilder AddPostgresStorageCore(IStateMeshBuilder builder, Action<PostgresStorageOptions> configure)
    {
        var services = builder.Services;
        services.AddOptions<PostgresStorageOptions>().Configure(configure).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PostgresStorageOptions>, PostgresStorageOptionsValidator>());
        services.TryAddSingleton(sp => new PostgresRecordStorage(
            sp.GetRequiredService<IOptions<PostgresStorageOptions>>().Value,
            sp.GetService<ILoggerFactory>()));
        // AddStateMesh registered memory storage already: this one takes its place.
        services.Replace(ServiceDescriptor.Singleton<IRecordStorage>(sp => sp.GetRequiredService<PostgresRecordStorage>()));
        return builder;
    }
}
