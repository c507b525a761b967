using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using StateMesh.Hosting;
using StateMesh.Postgres.Tests.Support;
using StateMesh.Storage;

namespace StateMesh.Postgres.Tests;

/// <summary>mesh.AddPostgresStorage(connectionString) in a generic host.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresHostingTests(PostgresServer server)
{
    private static IHost Build(Action<IStateMeshBuilder> mesh)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddStateMesh(m => mesh(m.Configure(o => o.NodeName = $"pg-hosting-{Guid.NewGuid():N}")));
        return builder.Build();
    }

    [Fact]
    public async Task AddPostgresStorage_makes_postgres_the_nodes_storage_and_closes_it_with_the_host()
    {
        var table = Outside.NewTable();
        var host = Build(m => m.AddPostgresStorage(server.ConnectionString, o => o.Table = table));
        await host.StartAsync();
        var storage = Assert.IsType<PostgresRecordStorage>(host.Services.GetRequiredService<IRecordStorage>());
        Assert.Same(storage, host.Services.GetRequiredService<PostgresRecordStorage>());
        var client = host.Services.GetRequiredService<StateMesh.Client.IStateMeshClient>();
        var result = await client.Records.SetDataWithAckAsync("hosted/1", new { theme = "dark" });
        Assert.True(result.Succeeded);
        await using (var outside = await Outside.ConnectAsync(server.ConnectionString))
        {
            Assert.Equal("dark", await outside.ScalarAsync<string>($"SELECT data->>'theme' FROM \"public\".\"{table}\" WHERE name = 'hosted/1'"));
        }
        await host.StopAsync();
        host.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => storage.SetAsync("late", RecordState.Empty, default).AsTask());
    }

    [Fact]
    public async Task A_bad_table_name_stops_the_host_at_start_with_a_clear_message()
    {
        using var host = Build(m => m.AddPostgresStorage(server.ConnectionString, o => o.Table = "Bad-Name"));
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("PostgresStorageOptions.Table 'Bad-Name' is not a plain PostgreSQL identifier", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_connection_string_is_refused_at_once()
    {
        var services = new ServiceCollection();
        Assert.Throws<ArgumentException>(() => services.AddStateMesh(m => m.AddPostgresStorage(" ")));
    }
}
