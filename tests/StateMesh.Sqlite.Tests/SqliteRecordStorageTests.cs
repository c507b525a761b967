using System.Text;
using Microsoft.Data.Sqlite;
using StateMesh.Sqlite;
using StateMesh.Storage;
using StateMesh.Tests.Storage;

namespace StateMesh.Sqlite.Tests;

public sealed class SqliteRecordStorageTests : RecordStorageSpecification, IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("statemesh-sqlite-");

    private string PathOf(string name) => Path.Combine(_dir.FullName, name);

    private string _current = "";

    protected override Task<IRecordStorage> CreateAsync()
    {
        _current = PathOf(Guid.NewGuid() + ".db");
        return Task.FromResult<IRecordStorage>(new SqliteRecordStorage(new SqliteStorageOptions { Path = _current }));
    }

    protected override Task<IRecordStorage>? ReopenAsync(IRecordStorage storage) => ReopenCoreAsync(storage);

    private async Task<IRecordStorage> ReopenCoreAsync(IRecordStorage storage)
    {
        await ((SqliteRecordStorage)storage).DisposeAsync();
        return new SqliteRecordStorage(new SqliteStorageOptions { Path = _current });
    }

    [Fact]
    public async Task Concurrent_writes_share_commits()
    {
        var storage = (SqliteRecordStorage)await CreateAsync();
        var writes = Enumerable.Range(0, 500).Select(i => storage.SetAsync($"g{i}", new RecordState(1, "{}"u8.ToArray()), default).AsTask()).ToArray();
        await Task.WhenAll(writes);
        Assert.True(storage.Commits < 500, $"{storage.Commits} commits for 500 writes issued together");
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task The_database_uses_write_ahead_logging()
    {
        var storage = (SqliteRecordStorage)await CreateAsync();
        await storage.SetAsync("x", new RecordState(1, "{}"u8.ToArray()), default);
        await storage.DisposeAsync();
        using var connection = new SqliteConnection($"Data Source={_current}");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode;";
        Assert.Equal("wal", (string)command.ExecuteScalar()!);
    }

    [Fact]
    public async Task Writes_after_dispose_fail_clearly()
    {
        var storage = (SqliteRecordStorage)await CreateAsync();
        await storage.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => storage.SetAsync("late", new RecordState(1, "{}"u8.ToArray()), default).AsTask());
    }

    [Fact]
    public async Task A_record_changed_in_the_file_by_another_program_is_read_as_changed()
    {
        var storage = (SqliteRecordStorage)await CreateAsync();
        await storage.SetAsync("ext", new RecordState(1, "{\"a\":1}"u8.ToArray()), default);
        using (var connection = new SqliteConnection($"Data Source={_current}"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "UPDATE records SET version = 9, data = $d WHERE name = 'ext';";
            command.Parameters.AddWithValue("$d", Encoding.UTF8.GetBytes("{\"a\":9}"));
            Assert.Equal(1, command.ExecuteNonQuery());
        }
        var read = await storage.GetAsync("ext", default);
        Assert.Equal(9, read!.Value.Version);
        await storage.DisposeAsync();
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _dir.Delete(recursive: true);
    }
}
