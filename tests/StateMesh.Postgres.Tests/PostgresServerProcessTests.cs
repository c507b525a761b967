using StateMesh.Client;
using StateMesh.Postgres.Tests.Support;
using StateMesh.Tests.Support;

namespace StateMesh.Postgres.Tests;

/// <summary>The runnable node, StateMesh.Server, started with StateMesh:Postgres:ConnectionString.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresServerProcessTests(PostgresServer server)
{
    [Fact]
    public async Task The_server_with_a_postgres_connection_string_keeps_records_in_postgres_and_not_in_sqlite()
    {
        var table = Outside.NewTable("server");
        var data = Directory.CreateTempSubdirectory("statemesh-server-pg-");
        try
        {
            string[] args =
            [
                $"--StateMesh:DataDirectory={data.FullName}",
                $"--StateMesh:Postgres:ConnectionString={server.ConnectionString}",
                // The rest of the section reaches the storage's options too.
                $"--StateMesh:Postgres:Table={table}",
            ];
            await using (var node = await ServerProcess.StartAsync(args))
            {
                await using var client = await StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{node.Port}", new { username = "ana" });
                var result = await client.Records.SetDataWithAckAsync("server/1", new { theme = "dark" });
                Assert.True(result.Succeeded, result.ToString());
                await using var outside = await Outside.ConnectAsync(server.ConnectionString);
                Assert.Equal("dark", await outside.ScalarAsync<string>($"SELECT data->>'theme' FROM \"public\".\"{table}\" WHERE name = 'server/1'"));
            }
            Assert.Empty(data.GetFileSystemInfos());

            // What another program writes into the table is what the next node reads: it reads from PostgreSQL.
            await using (var outside = await Outside.ConnectAsync(server.ConnectionString))
            {
                Assert.Equal(1, await outside.ExecuteAsync($"UPDATE \"public\".\"{table}\" SET version = version + 1, data = '{{\"theme\":\"light\"}}', raw = NULL WHERE name = 'server/1'"));
            }
            await using (var node = await ServerProcess.StartAsync(args))
            {
                await using var client = await StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{node.Port}", new { username = "ana" });
                var snapshot = await client.Records.SnapshotAsync<Settings>("server/1");
                Assert.Equal("light", snapshot?.Value.Theme);
            }
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    private sealed record Settings(string Theme);
}
