using System.Text;
using System.Text.Json.Nodes;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>Records at the protocol level, with several clients over TCP.</summary>
public class RecordsTests
{
    private static Message M(RecordAction action, string? name = null, int? version = null, string? data = null, string? path = null, string? cid = null, bool writeAck = false, string[]? names = null) => new()
    {
        Topic = Topic.Record, Action = (int)action, Name = name, Version = version, Path = path, CorrelationId = cid, IsWriteAck = writeAck, Names = names,
        Data = data is null ? null : Encoding.UTF8.GetBytes(data),
    };

    private static string Text(Message m) => Encoding.UTF8.GetString(m.Data!.Value.Span);

    private static async Task<Message> SubscribeAsync(RawClient client, string name, RecordAction action = RecordAction.SubscribeCreateAndRead)
    {
        await client.SendAsync(M(action, names: [name], cid: "s"));
        var ack = await client.ReceiveAsync();
        Assert.True(ack.IsAck, ack.ToString());
        Assert.Equal([name], ack.Names!);
        var read = await client.ReceiveAsync();
        Assert.Equal(((int)RecordAction.ReadResponse, name), (read.Action, read.Name));
        return read;
    }

    [Fact]
    public async Task Subscribe_create_and_read_creates_at_version_0_and_a_write_reaches_other_subscribers_only()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        var read = await SubscribeAsync(a, "todo/1");
        Assert.Equal((0, "{}"), (read.Version, Text(read)));
        await SubscribeAsync(b, "todo/1");
        await a.SendAsync(M(RecordAction.Update, "todo/1", 1, "{\"title\":\"milk\"}"));
        var update = await b.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Update, 1, "{\"title\":\"milk\"}"), (update.Action, update.Version, Text(update)));
        // The writer gets nothing back: its next message is the answer to a HEAD.
        await a.SendAsync(M(RecordAction.Head, "todo/1"));
        var head = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.HeadResponse, 1), (head.Action, head.Version));
    }

    [Fact]
    public async Task Patch_and_erase_apply_paths_and_erase_is_broadcast_as_patch_without_data()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        await SubscribeAsync(a, "doc");
        await SubscribeAsync(b, "doc");
        await a.SendAsync(M(RecordAction.Patch, "doc", 1, "\"x\"", "a.b[2].c"));
        var patch = await b.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Patch, 1, "a.b[2].c", "\"x\""), (patch.Action, patch.Version, patch.Path, Text(patch)));
        await a.SendAsync(M(RecordAction.Erase, "doc", 2, path: "a.b"));
        var erase = await b.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Patch, 2, "a.b", (ReadOnlyMemory<byte>?)null), (erase.Action, erase.Version, erase.Path, erase.Data));
        await a.SendAsync(M(RecordAction.Read, "doc"));
        var snapshot = await a.ReceiveAsync();
        Assert.Equal((2, "{\"a\":{}}"), (snapshot.Version, Text(snapshot)));
    }

    [Fact]
    public async Task Paths_grow_arrays_as_deepstream_does()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await SubscribeAsync(a, "grow");
        await a.SendAsync(M(RecordAction.Patch, "grow", 1, "1", "list[2]"));
        await a.SendAsync(M(RecordAction.Patch, "grow", 2, "true", "matrix[1][0]"));
        await a.SendAsync(M(RecordAction.Read, "grow"));
        var snapshot = await a.ReceiveAsync();
        Assert.Equal("{\"list\":[null,null,1],\"matrix\":[null,[true]]}", Text(snapshot));
    }

    [Fact]
    public async Task A_stale_version_gets_version_exists_with_the_current_data()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await SubscribeAsync(a, "r");
        await a.SendAsync(M(RecordAction.Update, "r", 1, "{\"n\":1}"));
        await a.SendAsync(M(RecordAction.Update, "r", 1, "{\"n\":2}", cid: "w2", writeAck: true));
        var conflict = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.VersionExists, 1, "{\"n\":1}", "w2", (int?)RecordAction.Update, true, true),
            (conflict.Action, conflict.Version, Text(conflict), conflict.CorrelationId, conflict.OriginalAction, conflict.IsWriteAck, conflict.IsError));
    }

    [Fact]
    public async Task A_version_gap_gets_invalid_version_and_the_record_stays_writable()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await SubscribeAsync(a, "gap");
        await a.SendAsync(M(RecordAction.Update, "gap", 5, "{}"));
        var invalid = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.InvalidVersion, 0), (invalid.Action, invalid.Version));
        await a.SendAsync(M(RecordAction.Update, "gap", 1, "{\"ok\":true}", cid: "1", writeAck: true));
        var ack = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.WriteAcknowledgement, "1", true), (ack.Action, ack.CorrelationId, ack.IsWriteAck));
    }

    [Fact]
    public async Task Version_minus_one_means_next_and_upserts_create()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await a.SendAsync(M(RecordAction.CreateAndUpdate, "up", -1, "{\"a\":1}", cid: "1", writeAck: true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await a.ReceiveAsync()).Action);
        await a.SendAsync(M(RecordAction.CreateAndPatch, "up", -1, "2", "b", cid: "2", writeAck: true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await a.ReceiveAsync()).Action);
        await a.SendAsync(M(RecordAction.Read, "up"));
        var read = await a.ReceiveAsync();
        Assert.Equal((2, "{\"a\":1,\"b\":2}"), (read.Version, Text(read)));
    }

    [Fact]
    public async Task Update_data_must_be_an_object_or_array_and_bad_input_leaves_the_record_unchanged()
    {
        await using var node = await TestNode.StartAsync(o => o.Records.MaxDocumentSize = 1024);
        await using var a = await RawClient.LoginAsync(node);
        await using var other = await RawClient.LoginAsync(node);
        await SubscribeAsync(a, "safe");
        await a.SendAsync(M(RecordAction.Update, "safe", 1, "{\"keep\":true}"));
        var bad = new (Message Request, string Why)[]
        {
            (M(RecordAction.Update, "safe", 2, "42"), "a number"),
            (M(RecordAction.Update, "safe", 2, "{\"a\":"), "truncated JSON"),
            (M(RecordAction.Update, "safe", 2, "{} {}"), "two values"),
            (M(RecordAction.Update, "safe", 2, "{\"big\":\"" + new string('x', 2000) + "\"}"), "over the size limit"),
            // 1012 bytes of data pass the first check (under 1024); the patched record (1027 bytes) does not.
            (M(RecordAction.Patch, "safe", 2, "\"" + new string('x', 1010) + "\"", "big"), "a patch that makes it too big"),
            (M(RecordAction.Patch, "safe", 2, "1", "__proto__.x"), "__proto__"),
            (M(RecordAction.Patch, "safe", 2, "1", "a.constructor"), "constructor"),
            (M(RecordAction.Patch, "safe", 2, "1", "a..b"), "an empty step"),
            (M(RecordAction.Patch, "safe", 2, "1", "a[x]"), "a bad index"),
            (M(RecordAction.Patch, "safe", 2, "1", "a[999999999]"), "a huge index"),
            (M(RecordAction.Patch, "safe", 2, "nope", "a"), "bad JSON in a patch"),
            (M(RecordAction.Update, "safe", null, "{}"), "no version"),
            (M(RecordAction.Update, "safe", 2, null), "no data"),
        };
        foreach (var (request, why) in bad)
        {
            await a.SendAsync(request);
            var error = await a.ReceiveAsync();
            Assert.True(error.IsError, $"{why}: {error}");
            Assert.True(error.Action is (int)RecordAction.InvalidMessageData or (int)RecordAction.InvalidVersion, $"{why}: {error}");
        }
        await other.SendAsync(M(RecordAction.Read, "safe"));
        var read = await other.ReceiveAsync();
        Assert.Equal((1, "{\"keep\":true}"), (read.Version, Text(read)));
    }

    [Fact]
    public async Task Read_and_head_of_a_missing_record()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await a.SendAsync(M(RecordAction.Read, "missing"));
        var notFound = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.RecordNotFound, (int?)RecordAction.Read, "missing"), (notFound.Action, notFound.OriginalAction, notFound.Name));
        await a.SendAsync(M(RecordAction.Head, "missing"));
        Assert.Equal(-1, (await a.ReceiveAsync()).Version);
        var read = await SubscribeAsync(a, "missing", RecordAction.SubscribeAndRead);
        Assert.Equal((-1, "{}"), (read.Version, Text(read)));
    }

    [Fact]
    public async Task Subscribe_and_head_answers_found_names_in_bulk_and_missing_ones_alone()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await a.SendAsync(M(RecordAction.CreateAndUpdate, "h1", -1, "{}", cid: "1", writeAck: true));
        await a.ReceiveAsync();
        await a.SendAsync(M(RecordAction.SubscribeAndHead, names: ["h1", "h2"], cid: "7"));
        var ack = await a.ReceiveAsync();
        Assert.True(ack.IsAck);
        var bulk = await a.ReceiveAsync();
        Assert.Equal((int)RecordAction.HeadResponseBulk, bulk.Action);
        Assert.Equal(1, bulk.Versions!["h1"]);
        var single = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.HeadResponse, "h2", -1), (single.Action, single.Name, single.Version));
        Assert.Single(node.Engine.Records.Registry.Get("h2"));
    }

    [Fact]
    public async Task Delete_tells_the_deleter_success_and_the_others_deleted_and_a_recreate_starts_over()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        await SubscribeAsync(a, "del");
        await SubscribeAsync(b, "del");
        await a.SendAsync(M(RecordAction.Update, "del", 1, "{\"x\":1}"));
        await b.ReceiveAsync();
        await a.SendAsync(M(RecordAction.Delete, "del"));
        var success = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.DeleteSuccess, "del"), (success.Action, success.Name));
        var deleted = await b.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Deleted, "del"), (deleted.Action, deleted.Name));
        Assert.Empty(node.Engine.Records.Registry.Get("del"));
        var again = await SubscribeAsync(a, "del");
        Assert.Equal((0, "{}"), (again.Version, Text(again)));
    }

    [Fact]
    public async Task Concurrent_writers_on_one_record_get_exactly_one_winner_per_version()
    {
        const int Writers = 8, Rounds = 25;
        await using var node = await TestNode.StartAsync();
        var clients = new List<RawClient>();
        for (var i = 0; i < Writers; i++)
        {
            var c = await RawClient.LoginAsync(node);
            await SubscribeAsync(c, "contended");
            clients.Add(c);
        }
        var wins = new int[Rounds + 1];
        await Task.WhenAll(clients.Select((c, i) => Task.Run(async () =>
        {
            var version = 0;
            var w = 0;
            while (version < Rounds)
            {
                await c.SendAsync(M(RecordAction.Update, "contended", version + 1, $"{{\"writer\":{i},\"v\":{version + 1}}}", cid: $"{i}-{w++}", writeAck: true));
                // Read replies until our write is decided; updates from others move our version along.
                while (true)
                {
                    var m = await c.ReceiveAsync(TimeSpan.FromSeconds(30));
                    if (m.Action == (int)RecordAction.Update)
                    {
                        version = Math.Max(version, m.Version!.Value);
                        continue;
                    }
                    if (m.Action == (int)RecordAction.WriteAcknowledgement)
                    {
                        Interlocked.Increment(ref wins[version + 1]);
                        version++;
                        break;
                    }
                    if (m.Action == (int)RecordAction.VersionExists)
                    {
                        version = Math.Max(version, m.Version!.Value);
                        break;
                    }
                    throw new InvalidOperationException("unexpected " + m);
                }
            }
        })));
        Assert.All(wins.Skip(1), w => Assert.Equal(1, w));
        var finals = new List<string>();
        foreach (var c in clients)
        {
            await c.SendAsync(M(RecordAction.Read, "contended"));
            var read = await c.ReceiveUntilAsync(m => m.Action == (int)RecordAction.ReadResponse);
            Assert.Equal(Rounds, read.Version);
            finals.Add(Text(read));
            await c.DisposeAsync();
        }
        Assert.Single(finals.Distinct());
        Assert.Equal(Rounds, JsonNode.Parse(finals[0])!["v"]!.GetValue<int>());
    }

    [Fact]
    public async Task Unsubscribe_is_acked_and_stops_updates()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        await SubscribeAsync(a, "u1");
        await SubscribeAsync(a, "u2");
        await SubscribeAsync(b, "u1");
        await a.SendAsync(M(RecordAction.Unsubscribe, names: ["u1"], cid: "u1"));
        var ack = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Unsubscribe, "u1", true), (ack.Action, ack.CorrelationId, ack.IsAck));
        await b.SendAsync(M(RecordAction.Update, "u1", 1, "{}"), M(RecordAction.CreateAndUpdate, "u2", -1, "{\"z\":1}"));
        var next = await a.ReceiveAsync();
        Assert.Equal("u2", next.Name);
    }

    [Fact]
    public async Task Storage_exclusion_prefixes_keep_records_out_of_storage()
    {
        var storage = new StateMesh.Storage.MemoryRecordStorage();
        var options = new StateMeshOptions { NodeName = "excl-" + Guid.NewGuid() };
        options.Tcp.Enabled = true;
        options.Tcp.Port = 0;
        options.Records.StorageExclusionPrefixes.Add("temp/");
        await using var node = new StateMeshNode(Microsoft.Extensions.Options.Options.Create(options), recordStorage: storage);
        await node.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await a.SendAsync(M(RecordAction.CreateAndUpdate, "temp/x", -1, "{}", cid: "1", writeAck: true), M(RecordAction.CreateAndUpdate, "kept/x", -1, "{}", cid: "2", writeAck: true));
        await a.ReceiveAsync();
        await a.ReceiveAsync();
        Assert.Null(await storage.GetAsync("temp/x", default));
        Assert.NotNull(await storage.GetAsync("kept/x", default));
    }

    [Fact]
    public async Task Notify_rereads_from_storage_and_pushes_the_change_or_the_deletion()
    {
        var storage = new StateMesh.Storage.MemoryRecordStorage();
        var options = new StateMeshOptions { NodeName = "notify-" + Guid.NewGuid() };
        options.Tcp.Enabled = true;
        options.Tcp.Port = 0;
        await using var node = new StateMeshNode(Microsoft.Extensions.Options.Options.Create(options), recordStorage: storage);
        await node.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        await SubscribeAsync(b, "n1");
        await SubscribeAsync(b, "n2");
        // Changed behind the node's back.
        await storage.SetAsync("n1", new StateMesh.Storage.RecordState(7, Encoding.UTF8.GetBytes("{\"outside\":true}")), default);
        await storage.DeleteAsync("n2", default);
        await a.SendAsync(M(RecordAction.Notify, names: ["n1", "n2"], cid: "n"));
        var ack = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Notify, true, "n"), (ack.Action, ack.IsAck, ack.CorrelationId));
        var update = await b.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Update, "n1", 7, "{\"outside\":true}"), (update.Action, update.Name, update.Version, Text(update)));
        var deleted = await b.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Deleted, "n2"), (deleted.Action, deleted.Name));
    }

    [Fact]
    public async Task A_slow_storage_read_gets_storage_retrieval_timeout()
    {
        var options = new StateMeshOptions { NodeName = "slow-" + Guid.NewGuid() };
        options.Tcp.Enabled = true;
        options.Tcp.Port = 0;
        options.Records.StorageRetrievalTimeout = TimeSpan.FromMilliseconds(100);
        await using var node = new StateMeshNode(Microsoft.Extensions.Options.Options.Create(options), recordStorage: new HangingStorage());
        await node.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await a.SendAsync(M(RecordAction.Read, "any"));
        var error = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.StorageRetrievalTimeout, "any"), (error.Action, error.Name));
    }

    private sealed class HangingStorage : StateMesh.Storage.IRecordStorage
    {
        public async ValueTask<StateMesh.Storage.RecordState?> GetAsync(string name, CancellationToken cancellationToken)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return null;
        }

        public ValueTask SetAsync(string name, StateMesh.Storage.RecordState state, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DeleteAsync(string name, CancellationToken cancellationToken) => ValueTask.CompletedTask;
    }
}

public class WriteAckDurabilityTests
{
    private sealed class GatedStorage : StateMesh.Storage.IRecordStorage
    {
        public TaskCompletionSource Gate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ValueTask<StateMesh.Storage.RecordState?> GetAsync(string name, CancellationToken cancellationToken) => ValueTask.FromResult<StateMesh.Storage.RecordState?>(null);

        public ValueTask SetAsync(string name, StateMesh.Storage.RecordState state, CancellationToken cancellationToken) => new(Gate.Task);

        public ValueTask DeleteAsync(string name, CancellationToken cancellationToken) => new(Gate.Task);
    }

    [Fact]
    public async Task The_write_ack_waits_for_storage_while_the_connection_keeps_working()
    {
        var storage = new GatedStorage();
        await using var node = await TestNode.StartAsync(storage: storage);
        await using var a = await RawClient.LoginAsync(node);
        await a.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.CreateAndUpdate, Name = "slow", Version = -1, Data = "{}"u8.ToArray(), CorrelationId = "w", IsWriteAck = true });
        await a.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Head, Name = "other" });
        // The head of another record comes first: the connection goes on while the write waits to be durable, and
        // until then the write is not acknowledged (nor shown to anyone: DESIGN §4).
        var head = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.HeadResponse, "other", -1), (head.Action, head.Name, head.Version));
        Assert.Equal(0, node.Engine.Records.Registry.NameCount);
        storage.Gate.SetResult();
        var ack = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.WriteAcknowledgement, "w"), (ack.Action, ack.CorrelationId));
        await a.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Head, Name = "slow" });
        Assert.Equal(1, (await a.ReceiveAsync()).Version);
    }

    [Fact]
    public async Task A_failed_storage_write_is_reported_to_the_writer()
    {
        var storage = new GatedStorage();
        await using var node = await TestNode.StartAsync(storage: storage);
        await using var a = await RawClient.LoginAsync(node);
        storage.Gate.SetException(new IOException("disk full"));
        await a.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.CreateAndUpdate, Name = "fail", Version = -1, Data = "{}"u8.ToArray(), CorrelationId = "w", IsWriteAck = true });
        var error = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.RecordUpdateError, "w", true), (error.Action, error.CorrelationId, error.IsWriteAck));
        // A stable reason on the wire; the exception's own message stays in the node's log.
        Assert.Equal("\"the write could not be stored\"", Encoding.UTF8.GetString(error.Data!.Value.Span));
    }
}
