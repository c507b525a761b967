using System.Reactive.Linq;
using System.Reactive.Threading.Tasks;
using System.Text.Json.Nodes;
using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

public sealed record Todo(string Title, bool Done);

public class ClientRecordsTests
{
    private static StateMeshClientOptions Fast(MergeStrategy? merge = null) => new()
    {
        ReconnectIntervalIncrement = TimeSpan.FromMilliseconds(200),
        MaxReconnectAttempts = 50,
        MergeStrategy = merge ?? MergeStrategy.RemoteWins,
    };

    private static Task<StateMeshClient> ConnectAsync(StateMeshNode node, StateMeshClientOptions? options = null) =>
        StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), null, options ?? Fast());

    private static Task<T> Next<T>(IObservable<T> source, Func<T, bool> match) =>
        source.Where(match).FirstAsync().ToTask().WaitAsync(TimeSpan.FromSeconds(10));

    [Fact]
    public async Task Observe_gives_the_current_value_then_every_change_from_other_clients()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var record = await ana.Records.GetAsync<Todo>("todos/1");
        await record.SetWithAckAsync(new Todo("milk", false));
        var seen = new List<Todo>();
        var done = bob.Records.Observe<Todo>("todos/1").Do(t => { lock (seen) { seen.Add(t); } }).Where(t => t.Done).FirstAsync().ToTask();
        await ClientEventsTests.WaitUntilAsync(() => { lock (seen) { return seen.Count == 1; } });
        await record.SetAsync(new Todo("milk", true));
        Assert.Equal(new Todo("milk", true), await done.WaitAsync(TimeSpan.FromSeconds(10)));
        lock (seen)
        {
            Assert.Equal(new Todo("milk", false), seen[0]);
        }
        Assert.Equal(2, record.Version);
    }

    [Fact]
    public async Task Path_writes_and_erases_reach_others_and_path_observers()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var a = await ana.Records.GetAsync<JsonObject>("profile");
        await using var b = await bob.Records.GetAsync<JsonObject>("profile");
        var city = Next(bob.Records.Observe<string>("profile", "address.city"), c => c == "Lyon");
        await a.SetAsync("address.city", "Lyon");
        Assert.Equal("Lyon", await city);
        var erased = Next(b.Changes, o => o["address"] is JsonObject addr && !addr.ContainsKey("city"));
        var result = await a.EraseWithAckAsync("address.city");
        Assert.True(result.Succeeded);
        await erased;
        Assert.Equal(2, b.Version);
        await Assert.ThrowsAsync<ArgumentException>(() => a.SetAsync("__proto__.x", 1));
        Assert.Equal(2, a.Version);
    }

    [Fact]
    public async Task Concurrent_acknowledged_writes_one_wins_and_remote_wins_makes_both_converge()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var a = await ana.Records.GetAsync<Todo>("race");
        await using var b = await bob.Records.GetAsync<Todo>("race");
        var results = await Task.WhenAll(a.SetWithAckAsync(new Todo("from ana", false)), b.SetWithAckAsync(new Todo("from bob", false)));
        Assert.Single(results, r => r.Succeeded);
        var loser = Assert.Single(results, r => !r.Succeeded);
        Assert.Equal(ConflictResolution.AdoptedRemote, loser.Conflict!.Resolution);
        Assert.Equal(1, loser.Conflict.RemoteVersion);
        await ClientEventsTests.WaitUntilAsync(() => a.Version == 1 && b.Version == 1 && a.Value == b.Value);
    }

    [Fact]
    public async Task Local_wins_rewrites_on_top_and_everyone_converges_on_the_local_value()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node, Fast(MergeStrategy.LocalWins));
        await using var bob = await ConnectAsync(node);
        await using var a = await ana.Records.GetAsync<Todo>("stubborn");
        await using var b = await bob.Records.GetAsync<Todo>("stubborn");
        // Both write version 1 at once. If Ana loses, local-wins writes hers again on top; if Bob loses, he adopts hers.
        var results = await Task.WhenAll(a.SetWithAckAsync(new Todo("ana", true)), b.SetWithAckAsync(new Todo("bob", false)));
        Assert.Single(results, r => r.Conflict is not null);
        Assert.True(results[0].Succeeded);
        await ClientEventsTests.WaitUntilAsync(() => a.Value == new Todo("ana", true) && b.Value == new Todo("ana", true) && a.Version == b.Version);
    }

    [Fact]
    public async Task A_custom_merge_decides_and_the_result_is_written_on_top()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var a = await ana.Records.GetAsync<JsonObject>("counter");
        await using var b = await bob.Records.GetAsync<JsonObject>("counter");
        a.MergeStrategy = MergeStrategy.Custom(c => new JsonObject { ["n"] = (c.Remote?["n"]?.GetValue<int>() ?? 0) + 100 });
        b.MergeStrategy = a.MergeStrategy;
        var results = await Task.WhenAll(a.SetWithAckAsync(new JsonObject { ["n"] = 1 }), b.SetWithAckAsync(new JsonObject { ["n"] = 2 }));
        var rewritten = Assert.Single(results, r => r.Conflict is not null);
        Assert.Equal(ConflictResolution.Rewrote, rewritten.Conflict!.Resolution);
        Assert.True(rewritten.Succeeded);
        await ClientEventsTests.WaitUntilAsync(() => a.Version == 2 && b.Version == 2);
        Assert.Equal(a.Data!.ToJsonString(), b.Data!.ToJsonString());
        Assert.True(a.Data!["n"]!.GetValue<int>() > 100);
    }

    [Fact]
    public async Task Snapshot_head_and_has_read_without_subscribing()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await ConnectAsync(node);
        Assert.Null(await client.Records.SnapshotAsync<Todo>("nope"));
        Assert.Equal(-1, await client.Records.HeadAsync("nope"));
        Assert.False(await client.Records.HasAsync("nope"));
        Assert.True((await client.Records.SetDataWithAckAsync("yes", new Todo("t", false))).Succeeded);
        await client.Records.SetDataAsync("yes", "done", true);
        await ClientEventsTests.WaitUntilAsync(() => client.Records.HeadAsync("yes").Result == 2);
        var snapshot = await client.Records.SnapshotAsync<Todo>("yes");
        Assert.Equal(new RecordSnapshot<Todo>("yes", 2, new Todo("t", true)), snapshot);
        Assert.True(await client.Records.HasAsync("yes"));
        var many = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => client.Records.HeadAsync("yes")));
        Assert.All(many, v => Assert.Equal(2, v));
        Assert.Empty(node.Engine.Records.Registry.Get("yes"));
    }

    [Fact]
    public async Task Deleting_completes_other_observers_and_the_record_can_be_recreated()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var a = await ana.Records.GetAsync<Todo>("temp");
        await a.SetWithAckAsync(new Todo("x", false));
        await using var b = await bob.Records.GetAsync<Todo>("temp");
        var completed = b.Changes.LastOrDefaultAsync().ToTask();
        await a.DeleteAsync();
        await completed.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(b.Exists);
        Assert.False(a.Exists);
        await Assert.ThrowsAsync<InvalidOperationException>(() => b.SetAsync(new Todo("late", false)));
        Assert.Equal(-1, await bob.Records.HeadAsync("temp"));
        await using var again = await ana.Records.GetAsync<JsonObject>("temp");
        Assert.Equal(0, again.Version);
    }

    [Fact]
    public async Task Handles_share_one_subscription_released_with_the_last()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await ConnectAsync(node);
        var first = await client.Records.GetAsync<JsonObject>("shared");
        var second = await client.Records.GetAsync<JsonObject>("shared");
        Assert.Single(node.Engine.Records.Registry.Get("shared"));
        await first.DisposeAsync();
        Assert.Single(node.Engine.Records.Registry.Get("shared"));
        await second.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Records.Registry.Get("shared").Length == 0);
    }

    [Fact]
    public async Task Lists_add_move_and_remove_entries_seen_by_another_client()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var list = await ana.Records.GetListAsync("todos");
        await using var watched = await bob.Records.GetListAsync("todos");
        Assert.Empty(list.Entries);
        await list.AddAsync("todos/1");
        await list.AddAsync("todos/2");
        await list.AddAsync("todos/0", index: 0);
        await Next(watched.Changes, e => e.Count == 3);
        Assert.Equal(["todos/0", "todos/1", "todos/2"], watched.Entries);
        await list.MoveAsync("todos/0", 2);
        await list.RemoveAsync("todos/1");
        var final = await Next(watched.Changes, e => e.Count == 2);
        Assert.Equal(["todos/2", "todos/0"], final);
    }

    [Fact]
    public async Task An_anonymous_record_follows_the_record_it_is_pointed_at()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await ConnectAsync(node);
        await client.Records.SetDataWithAckAsync("a", new Todo("A", false));
        await client.Records.SetDataWithAckAsync("b", new Todo("B", false));
        await using var anonymous = client.Records.CreateAnonymous<Todo>();
        var titles = new List<string>();
        using var sub = anonymous.Changes.Subscribe(t => { lock (titles) { titles.Add(t.Title); } });
        await anonymous.SetNameAsync("a");
        await anonymous.SetNameAsync("b");
        await anonymous.SetAsync(new Todo("B2", true));
        await ClientEventsTests.WaitUntilAsync(() => { lock (titles) { return titles.Contains("B2"); } });
        lock (titles)
        {
            Assert.Equal(["A", "B", "B2"], titles);
        }
        Assert.Equal("b", anonymous.Name);
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Records.Registry.Get("a").Length == 0);
    }

    [Fact]
    public async Task After_a_node_restart_records_resync_to_changes_made_meanwhile()
    {
        var storage = new StateMesh.Storage.MemoryRecordStorage();
        var first = await TestNode.StartAsync(storage: storage);
        var port = first.TcpEndPoint!.Port;
        await using var ana = await ConnectAsync(first);
        await using var record = await ana.Records.GetAsync<Todo>("resync");
        await record.SetWithAckAsync(new Todo("before", false));
        await first.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => ana.ConnectionState != ConnectionState.Open);

        await using var second = await TestNode.StartAsync(o => o.Tcp.Port = port, storage: storage);
        await using var bob = await ConnectAsync(second);
        Assert.True((await bob.Records.SetDataWithAckAsync("resync", new Todo("meanwhile", true))).Succeeded);
        var resynced = Next(record.Changes, t => t.Title == "meanwhile");
        await resynced;
        Assert.Equal(2, record.Version);
        // And it is subscribed again: later changes arrive too.
        var later = Next(record.Changes, t => t.Title == "later");
        await bob.Records.SetDataAsync("resync", "title", "later");
        await later;
    }

    [Fact]
    public async Task Writing_a_value_that_is_not_an_object_or_array_is_refused_locally()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await ConnectAsync(node);
        await using var record = await client.Records.GetAsync<int>("number");
        await Assert.ThrowsAsync<ArgumentException>(() => record.SetAsync(5));
        await Assert.ThrowsAsync<ArgumentException>(() => client.Records.SetDataAsync("number", 5));
        Assert.Equal(0, record.Version);
    }

    [Fact]
    public async Task Concurrent_writers_in_one_client_leave_its_copy_equal_to_the_node_and_writable()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var record = await ana.Records.GetAsync<JsonObject>("contended");
        const int Writers = 4, Writes = 50, Iterations = 50;
        for (var i = 0; i < Iterations; i++)
        {
            // Dedicated threads released together, so that the writes of one client race each other for real.
            using var start = new Barrier(Writers);
            var iteration = i;
            var writers = Enumerable.Range(0, Writers).Select(w => Task.Factory.StartNew(() =>
            {
                start.SignalAndWait();
                var results = new List<Task<RecordWriteResult>>();
                for (var n = 0; n < Writes; n++)
                {
                    results.Add(record.SetWithAckAsync($"w{w}", iteration * Writes + n));
                }
                return Task.WhenAll(results);
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap()).ToArray();
            var written = (await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(30))).SelectMany(r => r).ToArray();
            // Nobody else writes: a write refused by the node can only mean that it left the client out of version order.
            Assert.All(written, r => Assert.True(r.Succeeded, $"iteration {iteration}: {r.Error}"));
            var last = await record.SetWithAckAsync("iteration", iteration).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(last.Succeeded, $"iteration {iteration}: the client's write failed ({last.Error}); it holds v{record.Version}");
            var onNode = await bob.Records.SnapshotAsync<JsonObject>("contended");
            Assert.Equal(onNode!.Version, record.Version);
            Assert.True(JsonNode.DeepEquals(onNode.Value, record.Data), $"iteration {iteration}: client {record.Data!.ToJsonString()} node {onNode.Value.ToJsonString()}");
        }
        Assert.Equal(Iterations * (Writers * Writes + 1), record.Version);
    }

    [Fact]
    public async Task A_copy_that_believes_a_later_version_than_the_node_adopts_the_nodes_state_after_a_refused_write()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var record = await ana.Records.GetAsync<JsonObject>("ahead");
        for (var i = 1; i <= 3; i++)
        {
            Assert.True((await record.SetWithAckAsync(new JsonObject { ["n"] = i })).Succeeded);
        }
        // The state the out-of-order sends left behind (the client believed v400 while the node held v258).
        var entry = ((Record<JsonObject>)record).Entry;
        lock (entry.Gate)
        {
            entry.Version = 400;
        }
        var adopted = Next(record.Changes.Select(data => (record.Version, data)), c => c.Version == 3);
        var refused = await record.SetWithAckAsync("n", 4);
        Assert.False(refused.Succeeded);
        var (version, data) = await adopted;
        Assert.Equal(3, data["n"]!.GetValue<int>());
        Assert.True((await record.SetWithAckAsync("n", 5)).Succeeded);
        var onNode = await bob.Records.SnapshotAsync<JsonObject>("ahead");
        Assert.Equal((4, 5), (onNode!.Version, onNode.Value["n"]!.GetValue<int>()));
        Assert.Equal(4, record.Version);
    }
}
