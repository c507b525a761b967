using System.Collections.Concurrent;
using System.Text;
using Microsoft.Data.Sqlite;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Sqlite.Tests;

/// <summary>Nodes on SQLite: outside changes, and acknowledged writes surviving kill -9.</summary>
public sealed class SqliteNodeTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("statemesh-node-");

    private static Message M(RecordAction action, string? name = null, int? version = null, string? data = null, string? cid = null, bool writeAck = false, string[]? names = null) => new()
    {
        Topic = Topic.Record, Action = (int)action, Name = name, Version = version, CorrelationId = cid, IsWriteAck = writeAck, Names = names,
        Data = data is null ? null : Encoding.UTF8.GetBytes(data),
    };

    [Fact]
    public async Task Notify_after_an_outside_change_to_the_sqlite_file_pushes_the_new_version()
    {
        var path = Path.Combine(_dir.FullName, "notify.db");
        await using var storage = new SqliteRecordStorage(new SqliteStorageOptions { Path = path });
        await using var node = await TestNode.StartAsync(storage: storage);
        await using var writer = await RawClient.LoginAsync(node);
        await using var watcher = await RawClient.LoginAsync(node);
        await writer.SendAsync(M(RecordAction.CreateAndUpdate, "price/1", -1, "{\"p\":1}", "1", true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await writer.ReceiveAsync()).Action);
        await watcher.SendAsync(M(RecordAction.SubscribeCreateAndRead, names: ["price/1"], cid: "s"));
        await watcher.ReceiveAsync();
        Assert.Equal(1, (await watcher.ReceiveAsync()).Version);

        using (var connection = new SqliteConnection($"Data Source={path}"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "UPDATE records SET version = 5, data = '{\"p\":42}' WHERE name = 'price/1';";
            Assert.Equal(1, command.ExecuteNonQuery());
        }
        await writer.SendAsync(M(RecordAction.Notify, names: ["price/1"], cid: "n1"));
        var ack = await writer.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Notify, true), (ack.Action, ack.IsAck));
        var update = await watcher.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Update, 5, "{\"p\":42}"), (update.Action, update.Version, Encoding.UTF8.GetString(update.Data!.Value.Span)));
    }

    [Fact]
    public async Task Every_acknowledged_write_survives_kill_9_of_the_node()
    {
        var data = Path.Combine(_dir.FullName, "durable");
        var acknowledged = new ConcurrentDictionary<string, int>();
        await using (var server = await ServerProcess.StartAsync($"--StateMesh:DataDirectory={data}"))
        {
            await using var client = await RawClient.LoginAsync(server.Port);
            var killAfter = 300;
            var reader = Task.Run(async () =>
            {
                try
                {
                    while (true)
                    {
                        var m = await client.ReceiveAsync(TimeSpan.FromSeconds(30));
                        if (m.Action == (int)RecordAction.WriteAcknowledgement)
                        {
                            var i = int.Parse(m.CorrelationId!, System.Globalization.CultureInfo.InvariantCulture);
                            acknowledged[m.Name!] = i;
                            if (acknowledged.Count == killAfter)
                            {
                                server.Signal("KILL");
                            }
                        }
                    }
                }
                catch (IOException)
                {
                    // The node is gone.
                }
            });
            for (var i = 0; i < 100_000 && !reader.IsCompleted; i++)
            {
                try
                {
                    await client.SendAsync(
                        M(RecordAction.CreateAndUpdate, $"dur/{i}", -1, $"{{\"i\":{i}}}", i.ToString(System.Globalization.CultureInfo.InvariantCulture), true));
                }
                catch (IOException)
                {
                    break; // killed mid-stream, as intended
                }
                if (i % 50 == 49)
                {
                    await Task.Delay(1);
                }
            }
            await reader.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(acknowledged.Count >= killAfter, $"only {acknowledged.Count} writes were acknowledged before the node died");
            Assert.NotEqual(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }

        await using var restarted = await ServerProcess.StartAsync($"--StateMesh:DataDirectory={data}");
        await using var checker = await RawClient.LoginAsync(restarted.Port);
        foreach (var (name, i) in acknowledged)
        {
            await checker.SendAsync(M(RecordAction.Read, name));
            var read = await checker.ReceiveAsync();
            Assert.True(read.Action == (int)RecordAction.ReadResponse, $"acknowledged write {name} is missing after kill -9: {read}");
            Assert.Equal($"{{\"i\":{i}}}", Encoding.UTF8.GetString(read.Data!.Value.Span));
        }
    }

    /// <summary>
    /// DESIGN §4: the data a client was shown at version N is the data at version N forever. A subscriber logs every
    /// version and data it is shown while a writer writes as fast as it can, and the node is killed -9 three times.
    /// </summary>
    [Fact]
    public async Task No_version_is_ever_shown_with_two_datas_across_kill_9()
    {
        var data = Path.Combine(_dir.FullName, "versions");
        var shown = new ConcurrentDictionary<int, ConcurrentDictionary<string, byte>>();
        void Log(Message m)
        {
            if (m.Action is (int)RecordAction.ReadResponse or (int)RecordAction.Update && m.Version is { } v && v > 0)
            {
                shown.GetOrAdd(v, _ => new()).TryAdd(Encoding.UTF8.GetString(m.Data!.Value.Span), 0);
            }
        }
        for (var round = 0; round < 3; round++)
        {
            await using var server = await ServerProcess.StartAsync($"--StateMesh:DataDirectory={data}");
            await using var subscriber = await RawClient.LoginAsync(server.Port);
            await using var writer = await RawClient.LoginAsync(server.Port);
            await subscriber.SendAsync(M(RecordAction.SubscribeCreateAndRead, names: ["crash/1"], cid: "s"));
            var updates = 0;
            var watching = Task.Run(async () =>
            {
                try
                {
                    while (true)
                    {
                        var m = await subscriber.ReceiveAsync(TimeSpan.FromSeconds(30));
                        Log(m);
                        if (m.Action == (int)RecordAction.Update && ++updates == 300)
                        {
                            server.Signal("KILL");
                        }
                    }
                }
                catch (IOException)
                {
                    // The node is gone.
                }
            });
            for (var i = 0; !watching.IsCompleted && i < 1_000_000; i++)
            {
                try
                {
                    await writer.SendAsync(M(RecordAction.CreateAndUpdate, "crash/1", -1, $"{{\"round\":{round},\"i\":{i}}}"));
                }
                catch (IOException)
                {
                    break;
                }
                if (i % 20 == 19)
                {
                    await Task.Delay(1);
                }
            }
            await watching.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(updates >= 300, $"round {round}: the subscriber saw only {updates} updates");
            Assert.NotEqual(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }
        await using (var last = await ServerProcess.StartAsync($"--StateMesh:DataDirectory={data}"))
        {
            await using var reader = await RawClient.LoginAsync(last.Port);
            await reader.SendAsync(M(RecordAction.Read, "crash/1"));
            Log(await reader.ReceiveAsync());
        }
        var reused = shown.Where(kv => kv.Value.Count > 1).Select(kv => $"v{kv.Key}: {string.Join(" | ", kv.Value.Keys)}").ToList();
        Assert.True(reused.Count == 0, $"{reused.Count} versions were shown with two datas, e.g. {string.Join("; ", reused.Take(3))}");
        Assert.True(shown.Count >= 900, $"only {shown.Count} versions were seen");
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _dir.Delete(recursive: true);
    }
}
