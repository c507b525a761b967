using System.Text;
using StateMesh.Postgres.Tests.Support;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Postgres.Tests;

/// <summary>A node over PostgreSQL: acknowledgements once committed, refusals reported, outside changes, restarts.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresNodeTests(PostgresServer server)
{
    private static Message M(RecordAction action, string? name = null, int? version = null, string? data = null, string? cid = null, bool writeAck = false, string[]? names = null) => new()
    {
        Topic = Topic.Record, Action = (int)action, Name = name, Version = version, CorrelationId = cid, IsWriteAck = writeAck, Names = names,
        Data = data is null ? null : Encoding.UTF8.GetBytes(data),
    };

    private PostgresRecordStorage Create(string? table = null) =>
        new(new PostgresStorageOptions { ConnectionString = server.ConnectionString, Table = table ?? Outside.NewTable() });

    [Fact]
    public async Task A_write_is_acknowledged_only_once_postgres_has_committed_it()
    {
        await using var storage = Create();
        await using var node = await TestNode.StartAsync(storage: storage);
        await using var writer = await RawClient.LoginAsync(node);
        await writer.SendAsync(M(RecordAction.CreateAndUpdate, "acked/0", -1, "{\"n\":0}", "0", true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await writer.ReceiveAsync()).Action);

        // Another program holds a lock every write needs: the writer's transaction waits inside PostgreSQL.
        await using var locker = await Outside.ConnectAsync(server.ConnectionString);
        await using var watcher = await Outside.ConnectAsync(server.ConnectionString);
        await locker.ExecuteAsync("BEGIN");
        await locker.ExecuteAsync($"LOCK TABLE {storage.QualifiedTable} IN SHARE MODE");
        await writer.SendAsync(M(RecordAction.CreateAndUpdate, "acked/1", -1, "{\"n\":1}", "1", true));
        await watcher.WaitUntilAsync("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')", TimeSpan.FromSeconds(10), storage.WriterProcessId!.Value);
        Assert.Equal(0L, await watcher.ScalarAsync<long>($"SELECT count(*) FROM {storage.QualifiedTable} WHERE name = 'acked/1'"));
        // Not committed, so not acknowledged (the commit cannot happen while the lock is held).
        await Assert.ThrowsAsync<TimeoutException>(() => writer.ReceiveAsync(TimeSpan.FromMilliseconds(300)));

        await locker.ExecuteAsync("COMMIT");
        var ack = await writer.ReceiveAsync();
        Assert.Equal(((int)RecordAction.WriteAcknowledgement, "1"), (ack.Action, ack.CorrelationId));
        // By the time the acknowledgement arrives the row is there for everyone.
        Assert.Equal(1, await watcher.ScalarAsync<int>($"SELECT version FROM {storage.QualifiedTable} WHERE name = 'acked/1'"));
    }

    [Fact]
    public async Task A_write_postgres_refuses_is_answered_with_an_error_and_never_shown()
    {
        await using var storage = Create();
        await using var node = await TestNode.StartAsync(storage: storage);
        await using var writer = await RawClient.LoginAsync(node);
        await using var watcher = await RawClient.LoginAsync(node);
        await writer.SendAsync(M(RecordAction.CreateAndUpdate, "limited", -1, "{\"n\":1}", "1", true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await writer.ReceiveAsync()).Action);
        await using (var admin = await Outside.ConnectAsync(server.ConnectionString))
        {
            await admin.ExecuteAsync($"ALTER TABLE {storage.QualifiedTable} ADD CONSTRAINT below_2 CHECK (version < 2)");
        }
        await watcher.SendAsync(M(RecordAction.SubscribeCreateAndRead, names: ["limited"], cid: "s"));
        await watcher.ReceiveAsync();
        Assert.Equal(1, (await watcher.ReceiveAsync()).Version);

        await writer.SendAsync(M(RecordAction.CreateAndUpdate, "limited", -1, "{\"n\":2}", "2", true));
        var error = await writer.ReceiveAsync();
        Assert.Equal(((int)RecordAction.RecordUpdateError, "2", true), (error.Action, error.CorrelationId, error.IsError));
        // The record reads as what PostgreSQL holds.
        await writer.SendAsync(M(RecordAction.Read, "limited"));
        var read = await writer.ReceiveAsync();
        Assert.Equal((1, "{\"n\":1}"), (read.Version, Encoding.UTF8.GetString(read.Data!.Value.Span)));

        // Once PostgreSQL takes writes again, the subscriber's next message is the next stored write: the refused one
        // was never shown, and its version is taken by the data that is stored.
        await using (var admin = await Outside.ConnectAsync(server.ConnectionString))
        {
            await admin.ExecuteAsync($"ALTER TABLE {storage.QualifiedTable} DROP CONSTRAINT below_2");
        }
        await writer.SendAsync(M(RecordAction.CreateAndUpdate, "limited", -1, "{\"n\":3}", "3", true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await writer.ReceiveAsync()).Action);
        var next = await watcher.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Update, 2, "{\"n\":3}"), (next.Action, next.Version, Encoding.UTF8.GetString(next.Data!.Value.Span)));
    }

    [Fact]
    public async Task Notify_after_an_outside_change_to_the_table_pushes_the_new_version()
    {
        await using var storage = Create();
        await using var node = await TestNode.StartAsync(storage: storage);
        await using var writer = await RawClient.LoginAsync(node);
        await using var watcher = await RawClient.LoginAsync(node);
        await writer.SendAsync(M(RecordAction.CreateAndUpdate, "price/1", -1, "{\"p\":1}", "1", true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await writer.ReceiveAsync()).Action);
        await watcher.SendAsync(M(RecordAction.SubscribeCreateAndRead, names: ["price/1"], cid: "s"));
        await watcher.ReceiveAsync();
        Assert.Equal(1, (await watcher.ReceiveAsync()).Version);

        await using (var outside = await Outside.ConnectAsync(server.ConnectionString))
        {
            Assert.Equal(1, await outside.ExecuteAsync($"UPDATE {storage.QualifiedTable} SET version = 5, data = '{{\"p\":42}}', raw = NULL WHERE name = 'price/1'"));
        }
        await writer.SendAsync(M(RecordAction.Notify, names: ["price/1"], cid: "n1"));
        var ack = await writer.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Notify, true), (ack.Action, ack.IsAck));
        var update = await watcher.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Update, 5, "{\"p\": 42}"), (update.Action, update.Version, Encoding.UTF8.GetString(update.Data!.Value.Span)));
    }

    [Fact]
    public async Task A_new_node_on_the_same_table_reads_what_the_first_acknowledged()
    {
        var table = Outside.NewTable();
        await using (var storage = Create(table))
        await using (var node = await TestNode.StartAsync(storage: storage))
        await using (var writer = await RawClient.LoginAsync(node))
        {
            for (var i = 0; i < 50; i++)
            {
                await writer.SendAsync(M(RecordAction.CreateAndUpdate, $"kept/{i % 5}", -1, $"{{\"i\":{i}}}", $"{i}", true));
            }
            for (var i = 0; i < 50; i++)
            {
                Assert.Equal((int)RecordAction.WriteAcknowledgement, (await writer.ReceiveAsync()).Action);
            }
        }
        await using var again = Create(table);
        await using var second = await TestNode.StartAsync(storage: again);
        await using var reader = await RawClient.LoginAsync(second);
        for (var r = 0; r < 5; r++)
        {
            await reader.SendAsync(M(RecordAction.Read, $"kept/{r}"));
            var read = await reader.ReceiveAsync();
            Assert.Equal((10, $"{{\"i\":{45 + r}}}"), (read.Version, Encoding.UTF8.GetString(read.Data!.Value.Span)));
        }
    }
}
