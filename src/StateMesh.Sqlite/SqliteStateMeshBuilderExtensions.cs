using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using StateMesh;
using StateMesh.Hosting;
using StateMesh.Sqlite;
using StateMesh.Storage;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers SQLite as the node's durable record storage.</summary>
public static class SqliteStateMeshBuilderExtensions
{
    /// <summary>Keeps records in the SQLite file at <paramref name="path"/> (relative paths are under the node's DataDirectory).</summary>
    public static IStateMeshBuilder AddSqliteStorage(this IStateMeshBuilder builder, string path = "statemesh.db") =>
        builder.AddSqliteStorage(o => o.Path = path);

    /// <summary>Keeps records in SQLite, configured in code.</summary>
    public static IStateMeshBuilder AddSqliteStorage(this IStateMeshBuilder builder, Action<SqliteStorageOptions> configure)
    {
        builder.Services.Configure(configure);
        builder.Services.Replace(ServiceDescriptor.Singleton<IRecordStorage>(sp =>
        {
            var options = sp.GetRequiredService<IOptions<SqliteStorageOptions>>().Value;
            var node = sp.GetRequiredService<IOptions<StateMeshOptions>>().Value;
            var resolved = new SqliteStorageOptions
            {
                Path = Path.IsPathRooted(options.Path) ? options.Path : Path.Combine(node.DataDirectory, options.Path),
                SyncEveryCommit = options.SyncEveryCommit,
                MaxBatchSize = options.MaxBatchSize,
            };
            return new SqliteRecordStorage(resolved);
        }));
        return builder;
    }
}
