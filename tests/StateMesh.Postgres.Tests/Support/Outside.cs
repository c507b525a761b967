using Npgsql;

namespace StateMesh.Postgres.Tests.Support;

/// <summary>Another program working on the same database: a connection of its own, outside the storage.</summary>
internal sealed class Outside : IAsyncDisposable
{
    private static int s_tables;

    private Outside(NpgsqlConnection connection) => Connection = connection;

    public NpgsqlConnection Connection { get; }

    public static async Task<Outside> ConnectAsync(string connectionString)
    {
        var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        return new Outside(connection);
    }

    /// <summary>A table name no other test uses.</summary>
    public static string NewTable(string prefix = "records") => $"{prefix}_{Environment.ProcessId}_{Interlocked.Increment(ref s_tables)}";

    public async Task<int> ExecuteAsync(string sql, params object[] parameters)
    {
        await using var command = Command(sql, parameters);
        return await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql, params object[] parameters)
    {
        await using var command = Command(sql, parameters);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// Waits until <paramref name="sql"/> (a boolean query) is true: the way to await a state of the server. Use a
    /// connection outside any transaction: inside one, pg_stat_activity stays as it was at its first read.
    /// </summary>
    public async Task WaitUntilAsync(string sql, TimeSpan timeout, params object[] parameters)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await ScalarAsync<bool>(sql, parameters))
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"'{sql}' did not become true within {timeout}");
            }
            await Task.Delay(20);
        }
    }

    private NpgsqlCommand Command(string sql, object[] parameters)
    {
        var command = new NpgsqlCommand(sql, Connection);
        foreach (var p in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = p });
        }
        return command;
    }

    public ValueTask DisposeAsync() => Connection.DisposeAsync();
}
