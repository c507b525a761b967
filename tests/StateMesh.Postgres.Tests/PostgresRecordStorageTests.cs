using System.Text;
using Npgsql;
using StateMesh.Postgres.Tests.Support;
using StateMesh.Storage;
using StateMesh.Tests.Storage;

namespace StateMesh.Postgres.Tests;

/// <summary>The storage specification on PostgreSQL, and what is particular to it: jsonb, group commit, the table.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresRecordStorageTests(PostgresServer server) : RecordStorageSpecification
{
    private PostgresStorageOptions _current = new();

    private static RecordState State(int version, string json) => new(version, Encoding.UTF8.GetBytes(json));

    private static string Text(RecordState? state) => Encoding.UTF8.GetString(state!.Value.Data.Span);

    protected override Task<IRecordStorage> CreateAsync() => Task.FromResult<IRecordStorage>(Create());

    private PostgresRecordStorage Create(Action<PostgresStorageOptions>? configure = null)
    {
        _current = new PostgresStorageOptions { ConnectionString = server.ConnectionString, Table = Outside.NewTable() };
        configure?.Invoke(_current);
        return new PostgresRecordStorage(_current);
    }

    protected override Task<IRecordStorage>? ReopenAsync(IRecordStorage storage) => ReopenCoreAsync(storage);

    private async Task<IRecordStorage> ReopenCoreAsync(IRecordStorage storage)
    {
        await ((PostgresRecordStorage)storage).DisposeAsync();
        return new PostgresRecordStorage(_current);
    }

    /// <summary>
    /// Makes the writer wait inside its first transaction: an outside transaction holds a lock that every write needs.
    /// Writes issued meanwhile queue up and go together into the next batch once the lock is released.
    /// </summary>
    private async Task<(Outside Locker, Task First)> HoldTheWriterAsync(PostgresRecordStorage storage)
    {
        // The table exists once something was written.
        await storage.SetAsync("warm-up", State(1, "{}"), default);
        var locker = await Outside.ConnectAsync(server.ConnectionString);
        await locker.ExecuteAsync("BEGIN");
        await locker.ExecuteAsync($"LOCK TABLE {storage.QualifiedTable} IN SHARE MODE");
        var first = storage.SetAsync("first", State(1, "{}"), default).AsTask();
        // Watched from a connection outside any transaction: inside one, pg_stat_activity is a snapshot.
        await using var watcher = await Outside.ConnectAsync(server.ConnectionString);
        await watcher.WaitUntilAsync("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')", TimeSpan.FromSeconds(10), storage.WriterProcessId!.Value);
        return (locker, first);
    }

    [Fact]
    public async Task Concurrent_writes_share_commits()
    {
        var storage = Create();
        var writes = Enumerable.Range(0, 500).Select(i => storage.SetAsync($"g{i}", State(1, "{}"), default).AsTask()).ToArray();
        await Task.WhenAll(writes);
        Assert.True(storage.Commits < 500, $"{storage.Commits} commits for 500 writes issued together");
        await using var outside = await Outside.ConnectAsync(server.ConnectionString);
        Assert.Equal(500L, await outside.ScalarAsync<long>($"SELECT count(*) FROM {storage.QualifiedTable}"));
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task Writes_queued_behind_a_commit_go_together_and_the_later_write_of_a_record_wins()
    {
        var storage = Create();
        var (locker, first) = await HoldTheWriterAsync(storage);
        var commitsBefore = storage.Commits;
        var queued = new List<Task>
        {
            storage.SetAsync("twice", State(1, "{\"v\":1}"), default).AsTask(),
            storage.SetAsync("gone", State(1, "{}"), default).AsTask(),
            storage.SetAsync("twice", State(2, "{\"v\":2}"), default).AsTask(),
            storage.DeleteAsync("gone", default).AsTask(),
            storage.DeleteAsync("back", default).AsTask(),
            storage.SetAsync("back", State(7, "{\"back\":true}"), default).AsTask(),
        };
        Assert.All(queued, t => Assert.False(t.IsCompleted));
        await locker.ExecuteAsync("COMMIT");
        await first;
        await Task.WhenAll(queued);
        Assert.Equal(2, storage.Commits - commitsBefore); // the held one, then all six in one
        var twice = await storage.GetAsync("twice", default);
        Assert.Equal((2, "{\"v\":2}"), (twice!.Value.Version, Text(twice)));
        Assert.Null(await storage.GetAsync("gone", default));
        Assert.Equal(7, (await storage.GetAsync("back", default))!.Value.Version);
        await locker.DisposeAsync();
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task A_write_completes_only_once_its_transaction_has_committed()
    {
        var storage = Create();
        var (locker, first) = await HoldTheWriterAsync(storage);
        await using var reader = await Outside.ConnectAsync(server.ConnectionString);
        // While the writer waits, its write is neither complete nor visible to anyone else.
        Assert.False(first.IsCompleted);
        Assert.Equal(0L, await reader.ScalarAsync<long>($"SELECT count(*) FROM {storage.QualifiedTable} WHERE name = 'first'"));
        await locker.ExecuteAsync("COMMIT");
        await first;
        Assert.Equal(1L, await reader.ScalarAsync<long>($"SELECT count(*) FROM {storage.QualifiedTable} WHERE name = 'first'"));
        await locker.DisposeAsync();
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task Records_are_rows_of_name_version_and_jsonb_data_that_sql_can_query()
    {
        var storage = Create();
        await storage.SetAsync("todos/1", State(3, "{\"title\":\"buy milk\",  \"done\":false}"), default);
        await using var outside = await Outside.ConnectAsync(server.ConnectionString);
        Assert.Equal("buy milk", await outside.ScalarAsync<string>($"SELECT data->>'title' FROM {storage.QualifiedTable} WHERE version = 3"));
        Assert.Equal("{\"done\": false, \"title\": \"buy milk\"}", await outside.ScalarAsync<string>($"SELECT data::text FROM {storage.QualifiedTable} WHERE name = 'todos/1'"));
        var columns = await outside.ScalarAsync<string>(
            "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
            _current.Table);
        Assert.Equal("name text, version integer, data jsonb, raw bytea", columns);
        // The bytes as written come back, not jsonb's normal form.
        Assert.Equal("{\"title\":\"buy milk\",  \"done\":false}", Text(await storage.GetAsync("todos/1", default)));
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task Json_that_jsonb_cannot_hold_is_kept_byte_for_byte_without_failing_the_writes_beside_it()
    {
        var storage = Create();
        var (locker, first) = await HoldTheWriterAsync(storage);
        var nul = "{\"s\":\"a\\u0000b\"}";
        var huge = "{\"n\":1e1000000}";
        var writes = new[]
        {
            storage.SetAsync("nul", State(1, nul), default).AsTask(),
            storage.SetAsync("huge", State(1, huge), default).AsTask(),
            storage.SetAsync("fine", State(1, "{\"ok\":1}"), default).AsTask(),
        };
        await locker.ExecuteAsync("COMMIT");
        await first;
        await Task.WhenAll(writes);
        Assert.Equal(nul, Text(await storage.GetAsync("nul", default)));
        Assert.Equal(huge, Text(await storage.GetAsync("huge", default)));
        await using var outside = await Outside.ConnectAsync(server.ConnectionString);
        Assert.Equal("nul: , huge: , fine: 1", await outside.ScalarAsync<string>(
            $"SELECT string_agg(name || ': ' || coalesce(data->>'ok', ''), ', ' ORDER BY version, name DESC) FROM {storage.QualifiedTable} WHERE name IN ('nul', 'huge', 'fine')"));
        Assert.Equal(2L, await outside.ScalarAsync<long>($"SELECT count(*) FROM {storage.QualifiedTable} WHERE data IS NULL"));
        await locker.DisposeAsync();
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task A_write_postgres_refuses_fails_alone_and_the_others_of_its_batch_are_stored()
    {
        var storage = Create();
        await storage.SetAsync("warm-up", State(1, "{}"), default);
        await using (var admin = await Outside.ConnectAsync(server.ConnectionString))
        {
            await admin.ExecuteAsync($"ALTER TABLE {storage.QualifiedTable} ADD CONSTRAINT below_1000 CHECK (version < 1000)");
        }
        var (locker, first) = await HoldTheWriterAsync(storage);
        var before = storage.SetAsync("before", State(1, "{}"), default).AsTask();
        var refused = storage.SetAsync("refused", State(1000, "{}"), default).AsTask();
        var after = storage.SetAsync("after", State(2, "{}"), default).AsTask();
        await locker.ExecuteAsync("COMMIT");
        await first;
        await before;
        await after;
        var error = await Assert.ThrowsAsync<PostgresException>(() => refused);
        Assert.Equal(PostgresErrorCodes.CheckViolation, error.SqlState);
        Assert.Null(await storage.GetAsync("refused", default));
        Assert.Equal(2, (await storage.GetAsync("after", default))!.Value.Version);
        // The writer goes on.
        await storage.SetAsync("later", State(5, "{}"), default);
        await locker.DisposeAsync();
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task A_record_changed_in_the_table_by_another_program_is_read_as_changed()
    {
        var storage = Create();
        await storage.SetAsync("ext", State(1, "{\"a\":1}"), default);
        await storage.SetAsync("ext2", State(1, "{\"a\":1}"), default);
        await using (var outside = await Outside.ConnectAsync(server.ConnectionString))
        {
            // One program changes data only, another also clears raw, as the column's comment asks.
            Assert.Equal(1, await outside.ExecuteAsync($"UPDATE {storage.QualifiedTable} SET version = 9, data = '{{\"a\":9}}' WHERE name = 'ext'"));
            Assert.Equal(1, await outside.ExecuteAsync($"UPDATE {storage.QualifiedTable} SET version = 4, data = '{{\"a\":4}}', raw = NULL WHERE name = 'ext2'"));
        }
        var read = await storage.GetAsync("ext", default);
        Assert.Equal((9, "{\"a\": 9}"), (read!.Value.Version, Text(read)));
        var read2 = await storage.GetAsync("ext2", default);
        Assert.Equal((4, "{\"a\": 4}"), (read2!.Value.Version, Text(read2)));
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task A_full_queue_makes_writers_wait_for_room_and_their_token_cancels_the_wait()
    {
        var storage = Create(o => o.QueueCapacity = 2);
        var (locker, first) = await HoldTheWriterAsync(storage);
        var queued = new[]
        {
            storage.SetAsync("q1", State(1, "{}"), default).AsTask(),
            storage.SetAsync("q2", State(1, "{}"), default).AsTask(),
        };
        using var cancel = new CancellationTokenSource();
        var waiting = storage.SetAsync("q3", State(1, "{}"), cancel.Token).AsTask();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        // Once queued, a write no longer listens to its token: it is committed with its batch.
        await locker.ExecuteAsync("COMMIT");
        await first;
        await Task.WhenAll(queued);
        Assert.Null(await storage.GetAsync("q3", default));
        await locker.DisposeAsync();
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task A_read_waits_asynchronously_and_its_token_cancels_it_on_the_server()
    {
        var storage = Create();
        await storage.SetAsync("blocked", State(1, "{}"), default);
        await using var locker = await Outside.ConnectAsync(server.ConnectionString);
        await locker.ExecuteAsync("BEGIN");
        await locker.ExecuteAsync($"LOCK TABLE {storage.QualifiedTable} IN ACCESS EXCLUSIVE MODE");
        using var cancel = new CancellationTokenSource();
        var read = storage.GetAsync("blocked", cancel.Token).AsTask();
        await using var watcher = await Outside.ConnectAsync(server.ConnectionString);
        await watcher.WaitUntilAsync(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'SELECT version%')", TimeSpan.FromSeconds(10));
        Assert.False(read.IsCompleted);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read);
        // The server stopped the query: nothing waits on the lock any more.
        await watcher.WaitUntilAsync(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'SELECT version%')", TimeSpan.FromSeconds(10));
        await locker.ExecuteAsync("ROLLBACK");
        Assert.Equal(1, (await storage.GetAsync("blocked", default))!.Value.Version);
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task A_missing_schema_is_created_with_the_table()
    {
        var schema = Outside.NewTable("mesh");
        var storage = Create(o => o.Schema = schema);
        await storage.SetAsync("s", State(1, "{}"), default);
        await using var outside = await Outside.ConnectAsync(server.ConnectionString);
        Assert.Equal(1L, await outside.ScalarAsync<long>($"SELECT count(*) FROM \"{schema}\".\"{_current.Table}\""));
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task Storages_created_together_on_one_new_table_all_work()
    {
        var table = Outside.NewTable();
        var storages = Enumerable.Range(0, 4).Select(_ => new PostgresRecordStorage(new PostgresStorageOptions { ConnectionString = server.ConnectionString, Table = table })).ToArray();
        await Task.WhenAll(storages.Select((s, i) => s.SetAsync($"n{i}", State(1, "{}"), default).AsTask()));
        foreach (var storage in storages)
        {
            await storage.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_database_that_is_not_utf8_is_refused_with_a_clear_message()
    {
        var connectionString = await server.CreateDatabaseAsync(Outside.NewTable("latin"), "LATIN1");
        var storage = new PostgresRecordStorage(new PostgresStorageOptions { ConnectionString = connectionString });
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => storage.GetAsync("x", default).AsTask());
        Assert.Contains("needs a UTF8 database", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidOperationException>(() => storage.SetAsync("x", State(1, "{}"), default).AsTask());
        await storage.DisposeAsync();
    }

    [Theory]
    [InlineData("Records")]
    [InlineData("records; DROP TABLE x")]
    [InlineData("\"quoted\"")]
    [InlineData("")]
    public void A_table_name_that_is_not_a_plain_identifier_is_refused(string table)
    {
        var error = Assert.Throws<ArgumentException>(() => new PostgresRecordStorage(new PostgresStorageOptions { ConnectionString = "Host=127.0.0.1", Table = table }));
        Assert.Contains("PostgresStorageOptions.Table", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_connection_string_is_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => new PostgresRecordStorage(new PostgresStorageOptions()));
        Assert.Contains("ConnectionString is empty", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Writes_after_dispose_fail_clearly()
    {
        var storage = Create();
        await storage.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => storage.SetAsync("late", State(1, "{}"), default).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => storage.DeleteAsync("late", default).AsTask());
    }

    [Fact]
    public async Task Dispose_commits_what_is_queued()
    {
        var storage = Create();
        var writes = Enumerable.Range(0, 200).Select(i => storage.SetAsync($"d{i}", State(1, "{}"), default).AsTask()).ToArray();
        await storage.DisposeAsync();
        await Task.WhenAll(writes);
        await using var outside = await Outside.ConnectAsync(server.ConnectionString);
        Assert.Equal(200L, await outside.ScalarAsync<long>($"SELECT count(*) FROM \"public\".\"{_current.Table}\""));
    }
}
