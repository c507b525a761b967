using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using StateMesh.AspNetCore;
using StateMesh.Protocol;
using StateMesh.Records;
using StateMesh.Storage;
using StateMesh.Tests.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>One client can neither stall nor exhaust a node: regression tests over real sockets.</summary>
public class HardeningTests
{
    private static Message Ev(EventAction action, string? name = null, string[]? names = null, string? cid = null) =>
        new() { Topic = Topic.Event, Action = (int)action, Name = name, Names = names, CorrelationId = cid };

    private static Message Rec(RecordAction action, string? name = null, int? version = null, string? data = null, string? cid = null, bool writeAck = false, string[]? names = null, string? path = null) => new()
    {
        Topic = Topic.Record, Action = (int)action, Name = name, Version = version, CorrelationId = cid, IsWriteAck = writeAck, Names = names, Path = path,
        Data = data is null ? null : Encoding.UTF8.GetBytes(data),
    };

    private static string Text(Message m) => m.Data is { } d ? Encoding.UTF8.GetString(d.Span) : "";

    [Theory]
    [InlineData(@"(a)\1")]          // a backreference
    [InlineData("^(?=news)")]       // a lookahead
    [InlineData("(?<=a)b")]         // a lookbehind
    [InlineData("(?>a+)b")]         // an atomic group
    public async Task Listen_patterns_that_need_backtracking_get_invalid_listen_regex(string pattern)
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.LoginAsync(node);
        await client.SendAsync(Ev(EventAction.Listen, pattern), Rec(RecordAction.Listen, pattern));
        Assert.Equal((int)EventAction.InvalidListenRegex, (await client.ReceiveAsync()).Action);
        Assert.Equal((int)RecordAction.InvalidListenRegex, (await client.ReceiveAsync()).Action);
        Assert.Equal(0, node.Engine.Events.Listening.ListenerCount + node.Engine.Records.Listening.ListenerCount);
    }

    [Fact]
    public async Task Pathological_listen_patterns_do_not_slow_other_clients()
    {
        await using var node = await TestNode.StartAsync();
        await using var attacker = await RawClient.LoginAsync(node);
        await using var victim = await RawClient.LoginAsync(node);
        await using var asker = await RawClient.LoginAsync(node, """{"username":"asker"}""");
        for (var i = 0; i < 20; i++)
        {
            var pattern = i % 2 == 0 ? $"^(a+)+{i}$" : $"^(a|aa)+{i}$";
            await attacker.SendAsync(Ev(EventAction.Listen, pattern), Rec(RecordAction.Listen, pattern));
            Assert.True((await attacker.ReceiveAsync()).IsAck);
            Assert.True((await attacker.ReceiveAsync()).IsAck);
        }
        // Each of these names made the backtracking engine run to its 100 ms timeout for every pattern: 20 patterns
        // times 60 names is two minutes of matching, far past the receive timeout. Matched in linear time, it is nothing.
        var names = Enumerable.Range(0, 60).Select(i => new string('a', 28 + i % 5) + "!" + i).ToArray();
        await victim.SendAsync(Ev(EventAction.Subscribe, names: names, cid: "e"));
        Assert.True((await victim.ReceiveAsync()).IsAck);
        await victim.SendAsync(Rec(RecordAction.SubscribeCreateAndRead, names: names[..20], cid: "r"));
        var skipped = new List<Message>();
        for (var i = 0; i < 20; i++)
        {
            await victim.ReceiveUntilAsync(m => m.Action == (int)RecordAction.ReadResponse, skipped);
        }
        await asker.SendAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.QueryAll, CorrelationId = "q" });
        Assert.Equal((int)PresenceAction.QueryAllResponse, (await asker.ReceiveAsync()).Action);
    }

    [Fact]
    public async Task Listen_patterns_are_bounded_per_connection_and_per_node()
    {
        await using var node = await TestNode.StartAsync(o =>
        {
            o.Limits.ListenPatternsPerConnection = 3;
            o.Limits.ListenPatternsPerNode = 5;
            o.Limits.MaxListenPatternLength = 50;
        });
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        for (var i = 0; i < 3; i++)
        {
            await a.SendAsync(Ev(EventAction.Listen, $"^a{i}/"));
            Assert.True((await a.ReceiveAsync()).IsAck);
        }
        await a.SendAsync(Ev(EventAction.Listen, "^a3/"));
        var denied = await a.ReceiveAsync();
        Assert.Equal(((int)EventAction.MessageDenied, "^a3/"), (denied.Action, denied.Name));
        await b.SendAsync(Ev(EventAction.Listen, "^b0/"), Ev(EventAction.Listen, "^b1/"), Ev(EventAction.Listen, "^b2/"));
        Assert.True((await b.ReceiveAsync()).IsAck);
        Assert.True((await b.ReceiveAsync()).IsAck);
        Assert.Equal((int)EventAction.MessageDenied, (await b.ReceiveAsync()).Action); // the node's bound of 5
        await b.SendAsync(Ev(EventAction.Listen, "^" + new string('x', 60)));
        Assert.Equal((int)EventAction.InvalidListenRegex, (await b.ReceiveAsync()).Action);
        // Unlistening gives the place back; the connection went on all along.
        await a.SendAsync(Ev(EventAction.Unlisten, "^a0/"));
        Assert.True((await a.ReceiveAsync()).IsAck);
        await b.SendAsync(Ev(EventAction.Listen, "^b2/"));
        Assert.True((await b.ReceiveAsync()).IsAck);
        Assert.Equal(5, node.Engine.Limits.ListenPatterns.Count);
        await a.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Limits.ListenPatterns.Count == 3);
    }

    [Fact]
    public async Task A_short_patch_path_cannot_make_the_node_allocate_much()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.LoginAsync(node);
        await client.SendAsync(Rec(RecordAction.CreateAndUpdate, "grow/1", -1, "{\"a\":[]}", "w", writeAck: true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await client.ReceiveAsync()).Action);
        var path = "a" + string.Concat(Enumerable.Repeat("[99999]", 30)); // 211 characters
        Assert.Equal(211, path.Length);
        var before = GC.GetTotalAllocatedBytes(precise: true);
        await client.SendAsync(Rec(RecordAction.Patch, "grow/1", 2, "1", path: path));
        var error = await client.ReceiveAsync();
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.Equal((int)RecordAction.InvalidMessageData, error.Action);
        Assert.True(allocated < 16 * 1024 * 1024, $"refusing the path allocated {allocated:N0} bytes");
        await client.SendAsync(Rec(RecordAction.Read, "grow/1"));
        var read = await client.ReceiveAsync();
        Assert.Equal((1, "{\"a\":[]}"), (read.Version, Text(read)));
    }

    [Fact]
    public async Task One_write_may_grow_arrays_by_at_most_a_thousand_elements()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.LoginAsync(node);
        await client.SendAsync(Rec(RecordAction.CreateAndUpdate, "grow/2", -1, "{\"a\":[]}", "w", writeAck: true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await client.ReceiveAsync()).Action);
        // 1,001 new elements: refused before anything grows; 1,000: written.
        await client.SendAsync(Rec(RecordAction.Patch, "grow/2", 2, "1", path: "a[1000]"));
        var refused = await client.ReceiveAsync();
        Assert.Equal((int)RecordAction.InvalidMessageData, refused.Action);
        Assert.Contains("at most 1000", Text(refused), StringComparison.Ordinal);
        await client.SendAsync(Rec(RecordAction.Patch, "grow/2", 2, "1", path: "a[999]", cid: "ok", writeAck: true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await client.ReceiveAsync()).Action);
        await client.SendAsync(Rec(RecordAction.Read, "grow/2"));
        var read = await client.ReceiveAsync();
        Assert.Equal(2, read.Version);
        Assert.Equal(1000, System.Text.Json.Nodes.JsonNode.Parse(Text(read))!["a"]!.AsArray().Count);
    }

    [Theory]
    [InlineData("{\"k\":1,\"k\":2}")]          // a name given twice
    [InlineData("{\"\\ud800\":1}")]           // a name that is an unpaired surrogate
    public async Task A_patch_on_a_stored_record_json_nodes_cannot_take_gets_a_clear_error_and_changes_nothing(string stored)
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.LoginAsync(node);
        await using var other = await RawClient.LoginAsync(node);
        await client.SendAsync(Rec(RecordAction.CreateAndUpdate, "odd/1", -1, stored, "w", writeAck: true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await client.ReceiveAsync()).Action);
        await client.SendAsync(Rec(RecordAction.Patch, "odd/1", 2, "3", path: "k.x"));
        var error = await client.ReceiveAsync();
        Assert.Equal((int)RecordAction.InvalidMessageData, error.Action);
        Assert.Contains("the stored record cannot be patched", Text(error), StringComparison.Ordinal);
        // The connection and the node go on; the record is as it was, and a whole update still works.
        await client.SendAsync(Rec(RecordAction.Update, "odd/1", 2, "{\"k\":3}", "u", writeAck: true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await client.ReceiveAsync()).Action);
        await other.SendAsync(Rec(RecordAction.Read, "odd/1"));
        var read = await other.ReceiveAsync();
        Assert.Equal((2, "{\"k\":3}"), (read.Version, Text(read)));
    }

    [Fact]
    public void Array_growth_of_a_path_is_counted_before_anything_grows()
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse("{\"a\":[1,2]}")!;
        Assert.True(RecordPath.TryParse("a[5].b[3]", out var tokens, out _));
        Assert.Equal(4 + 4, RecordPath.GrowthOf(root, tokens));
        var before = GC.GetAllocatedBytesForCurrentThread();
        Assert.True(RecordPath.TryParse("a" + string.Concat(Enumerable.Repeat("[99999]", 30)), out var deep, out _));
        Assert.False(RecordPath.TrySet(root, deep, null, 200_000, out var error));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 * 1024, error);
        Assert.Equal("{\"a\":[1,2]}", root.ToJsonString());
    }

    [Fact]
    public async Task Record_and_event_subscriptions_are_bounded_per_connection_and_per_node()
    {
        await using var node = await TestNode.StartAsync(o =>
        {
            o.Limits.RecordSubscriptionsPerConnection = 3;
            o.Limits.EventSubscriptionsPerConnection = 3;
            o.Limits.SubscriptionsPerNode = 8;
        });
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        await a.SendAsync(Ev(EventAction.Subscribe, names: ["e1", "e2", "e3", "e4"], cid: "1"));
        var deniedEvent = await a.ReceiveAsync();
        Assert.Equal(((int)EventAction.MessageDenied, "e4"), (deniedEvent.Action, deniedEvent.Name));
        Assert.True((await a.ReceiveAsync()).IsAck);
        await a.SendAsync(Rec(RecordAction.Subscribe, names: ["r1", "r2", "r3", "r4"], cid: "2"));
        var deniedRecord = await a.ReceiveAsync();
        Assert.Equal(((int)RecordAction.MessageDenied, "r4"), (deniedRecord.Action, deniedRecord.Name));
        Assert.True((await a.ReceiveAsync()).IsAck);
        // Six places of the node's eight are taken: b gets two.
        await b.SendAsync(Rec(RecordAction.SubscribeCreateAndRead, names: ["x1", "x2", "x3"], cid: "3"));
        var skipped = new List<Message>();
        var third = await b.ReceiveUntilAsync(m => m.Action == (int)RecordAction.MessageDenied, skipped);
        Assert.Equal("x3", third.Name);
        Assert.Equal(2, skipped.Count(m => m.Action == (int)RecordAction.ReadResponse));
        Assert.Equal(8, node.Engine.Limits.Subscriptions.Count);
        // Denied requests change nothing and the connection goes on; leaving gives places back.
        await a.SendAsync(Ev(EventAction.Unsubscribe, names: ["e1"], cid: "4"));
        Assert.True((await a.ReceiveAsync()).IsAck);
        await b.SendAsync(Ev(EventAction.Subscribe, names: ["x3"], cid: "5"));
        Assert.True((await b.ReceiveAsync()).IsAck);
        await a.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Limits.Subscriptions.Count == 3);
    }

    [Fact]
    public async Task A_connection_that_sends_names_faster_than_its_rate_is_read_more_slowly_and_loses_nothing()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        await using var node = await TestNode.StartAsync(o =>
        {
            o.HeartbeatInterval = TimeSpan.FromHours(1);
            o.Limits.NamesPerSecondPerConnection = 100;
            o.Limits.NamesBurstPerConnection = 200;
        }, time);
        await using var flooder = await RawClient.LoginAsync(node);
        await using var other = await RawClient.LoginAsync(node);
        string[] Names(string prefix) => [.. Enumerable.Range(0, 100).Select(i => $"{prefix}/{i}")];
        // The burst goes through at once.
        await flooder.SendAsync(Ev(EventAction.Subscribe, names: Names("a"), cid: "a"), Ev(EventAction.Subscribe, names: Names("b"), cid: "b"));
        Assert.Equal("a", (await flooder.ReceiveAsync()).CorrelationId);
        Assert.Equal("b", (await flooder.ReceiveAsync()).CorrelationId);
        // Past it, the node stops reading the flooder until a second's worth of names has come back...
        await flooder.SendAsync(Ev(EventAction.Subscribe, names: Names("c"), cid: "c"), new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        // ...while everyone else is served as before.
        await other.SendAsync(Ev(EventAction.Subscribe, names: Names("o"), cid: "o"));
        Assert.Equal("o", (await other.ReceiveAsync()).CorrelationId);
        await Assert.ThrowsAsync<TimeoutException>(() => flooder.ReceiveAsync(TimeSpan.FromMilliseconds(300)));
        Assert.Equal(300, node.Engine.Sessions.Sum(session => session.EventSubscriptions.Count));
        time.Advance(TimeSpan.FromSeconds(1));
        // Then it goes on where it stopped: nothing was refused or dropped.
        Assert.Equal("c", (await flooder.ReceiveAsync()).CorrelationId);
        Assert.Equal((int)ConnectionAction.Pong, (await flooder.ReceiveAsync()).Action);
        Assert.Equal(400, node.Engine.Sessions.Sum(session => session.EventSubscriptions.Count));
    }

    [Fact]
    public async Task Provided_names_and_pending_calls_are_bounded()
    {
        await using var node = await TestNode.StartAsync(o =>
        {
            o.Limits.ProvidedNamesPerConnection = 2;
            o.Limits.PendingRpcsPerConnection = 2;
        });
        await using var provider = await RawClient.LoginAsync(node);
        await using var caller = await RawClient.LoginAsync(node);
        await provider.SendAsync(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Provide, Names = ["p1", "p2", "p3"], CorrelationId = "p" });
        var denied = await provider.ReceiveAsync();
        Assert.Equal(((int)RpcAction.MessageDenied, "p3"), (denied.Action, denied.Name));
        Assert.True((await provider.ReceiveAsync()).IsAck);
        for (var i = 0; i < 3; i++)
        {
            await caller.SendAsync(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Request, Name = "p1", CorrelationId = $"c{i}", Data = "1"u8.ToArray() });
        }
        var third = await caller.ReceiveAsync();
        Assert.Equal(((int)RpcAction.MessageDenied, "c2"), (third.Action, third.CorrelationId));
        // The provider answers one call: its place is free again.
        var request = await provider.ReceiveAsync();
        await provider.SendAsync(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Response, Name = "p1", CorrelationId = request.CorrelationId, Data = "2"u8.ToArray() });
        Assert.Equal((int)RpcAction.Response, (await caller.ReceiveAsync()).Action);
        await caller.SendAsync(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Request, Name = "p1", CorrelationId = "c3", Data = "1"u8.ToArray() });
        await provider.ReceiveAsync(); // the second call
        Assert.Equal("c3", (await ReceiveRequestAsync(provider, caller)).CorrelationIdOfCaller);
        Assert.Equal(2, node.Engine.Limits.PendingRpcs.Count);
        await caller.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Limits.PendingRpcs.Count == 0);
    }

    private static async Task<(Message Request, string CorrelationIdOfCaller)> ReceiveRequestAsync(RawClient provider, RawClient caller)
    {
        var request = await provider.ReceiveAsync();
        Assert.Equal((int)RpcAction.Request, request.Action);
        await provider.SendAsync(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Accept, Name = "p1", CorrelationId = request.CorrelationId });
        var accepted = await caller.ReceiveAsync();
        Assert.Equal((int)RpcAction.Accept, accepted.Action);
        return (request, accepted.CorrelationId!);
    }

    [Fact]
    public async Task Connections_that_have_not_logged_in_are_bounded()
    {
        await using var node = await TestNode.StartAsync(o => o.Limits.UnauthenticatedConnections = 2);
        await using var first = await RawClient.ConnectTcpAsync(node);
        await using var second = await RawClient.ConnectTcpAsync(node);
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Limits.Unauthenticated.Count == 2);
        await using var third = await RawClient.ConnectTcpAsync(node);
        await third.Closed.WaitAsync(TimeSpan.FromSeconds(10));
        // A login frees a place.
        await first.HandshakeAsync();
        await first.SendAsync(new Message { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = "{}"u8.ToArray() });
        Assert.Equal((int)AuthAction.AuthSuccessful, (await first.ReceiveAsync()).Action);
        await using var fourth = await RawClient.ConnectTcpAsync(node);
        await fourth.HandshakeAsync();
        Assert.Equal(2, node.Engine.Limits.Unauthenticated.Count);
    }

    [Fact]
    public async Task Records_nobody_subscribes_to_are_let_go_from_memory_and_read_back_from_storage()
    {
        await using var node = await TestNode.StartAsync(o => o.Limits.CachedRecords = 10, storage: new MemoryRecordStorage());
        await using var client = await RawClient.LoginAsync(node);
        for (var i = 0; i < 100; i++)
        {
            await client.SendAsync(Rec(RecordAction.CreateAndUpdate, $"many/{i}", -1, $"{{\"i\":{i}}}", $"w{i}", writeAck: true));
        }
        for (var i = 0; i < 100; i++)
        {
            Assert.Equal((int)RecordAction.WriteAcknowledgement, (await client.ReceiveAsync()).Action);
        }
        await client.SendAsync(Rec(RecordAction.SubscribeCreateAndRead, names: ["kept"], cid: "k"));
        await client.ReceiveUntilAsync(m => m.Action == (int)RecordAction.ReadResponse);
        var store = (MemoryRecordStore)node.Engine.Records.Store;
        await ClientEventsTests.WaitUntilAsync(() => store.Count <= 11);
        await client.SendAsync(Rec(RecordAction.Read, "many/3"));
        var read = await client.ReceiveAsync();
        Assert.Equal((1, "{\"i\":3}"), (read.Version, Text(read)));
        await client.SendAsync(Rec(RecordAction.Head, "kept"));
        Assert.Equal(0, (await client.ReceiveAsync()).Version);
    }

    /// <summary>Storage whose writes finish only when the test says so.</summary>
    private sealed class GatedStorage : IRecordStorage
    {
        private readonly MemoryRecordStorage _inner = new();
        private readonly ConcurrentQueue<TaskCompletionSource> _waiting = new();
        private int _inFlight;
        private int _max;

        public int InFlight => Volatile.Read(ref _inFlight);

        public int MaxInFlight => Volatile.Read(ref _max);

        public ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken) => _inner.GetAsync(name, cancellationToken);

        public async ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken)
        {
            var now = Interlocked.Increment(ref _inFlight);
            InterlockedMax(ref _max, now);
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiting.Enqueue(gate);
            await gate.Task;
            await _inner.SetAsync(name, state, cancellationToken);
            Interlocked.Decrement(ref _inFlight);
        }

        public ValueTask DeleteAsync(string name, CancellationToken cancellationToken) => _inner.DeleteAsync(name, cancellationToken);

        public bool ReleaseOne()
        {
            if (_waiting.TryDequeue(out var gate))
            {
                gate.SetResult();
                return true;
            }
            return false;
        }

        private static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
            {
            }
        }
    }

    [Fact]
    public async Task Writes_past_the_storage_bound_wait_instead_of_growing_the_queue_and_are_shown_only_once_durable()
    {
        var storage = new GatedStorage();
        await using var node = await TestNode.StartAsync(o => o.Limits.PendingStorageWrites = 2, storage: storage);
        await using var writer = await RawClient.LoginAsync(node);
        await using var watcher = await RawClient.LoginAsync(node);
        await watcher.SendAsync(Rec(RecordAction.SubscribeCreateAndRead, names: ["bp/0"], cid: "s"));
        await watcher.ReceiveUntilAsync(m => m.Action == (int)RecordAction.ReadResponse);
        storage.ReleaseOne(); // version 0 of bp/0
        for (var i = 0; i < 10; i++)
        {
            await writer.SendAsync(Rec(RecordAction.CreateAndUpdate, $"bp/{i % 3}", -1, $"{{\"i\":{i}}}", $"w{i}", writeAck: true));
        }
        await writer.SendAsync(Rec(RecordAction.Head, "bp/0"));
        var head = writer.ReceiveUntilAsync(m => m.Action == (int)RecordAction.HeadResponse, timeout: TimeSpan.FromSeconds(30));
        // Nothing is released before the node has had time to take every write it would take.
        await Task.WhenAny(head, Task.Delay(TimeSpan.FromSeconds(1)));
        Assert.True(storage.InFlight <= 2, $"{storage.InFlight} writes reached storage at once");
        Assert.False(watcher.TryTakeNow(out var early), $"a write was shown before it was durable: {early}");
        while (!head.IsCompleted)
        {
            if (!storage.ReleaseOne())
            {
                await Task.Delay(5);
            }
        }
        var headResponse = await head;
        while (storage.ReleaseOne())
        {
        }
        Assert.True(storage.MaxInFlight <= 2, $"{storage.MaxInFlight} writes were waiting for storage at once");
        var updates = new List<Message>();
        while (updates.Count < 4)
        {
            updates.Add(await watcher.ReceiveUntilAsync(m => m.Action == (int)RecordAction.Update));
        }
        Assert.Equal([1, 2, 3, 4], updates.Select(u => u.Version ?? 0));
        Assert.True(headResponse.Version is >= 1);
    }

    /// <summary>Storage that reads synchronously and gets stuck, as SQLite does behind another program's lock.</summary>
    private sealed class BlockingStorage : IRecordStorage
    {
        public ManualResetEventSlim Unblock { get; } = new();

        public ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken)
        {
            Unblock.Wait(TimeSpan.FromSeconds(30), CancellationToken.None);
            return ValueTask.FromResult<RecordState?>(null);
        }

        public ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DeleteAsync(string name, CancellationToken cancellationToken) => ValueTask.CompletedTask;
    }

    [Fact]
    public async Task A_storage_read_that_blocks_its_thread_still_gets_storage_retrieval_timeout()
    {
        var storage = new BlockingStorage();
        await using var node = await TestNode.StartAsync(o => o.Records.StorageRetrievalTimeout = TimeSpan.FromMilliseconds(200), storage: storage);
        await using var client = await RawClient.LoginAsync(node);
        try
        {
            await client.SendAsync(Rec(RecordAction.Read, "stuck/1"));
            var error = await client.ReceiveAsync();
            Assert.Equal(((int)RecordAction.StorageRetrievalTimeout, "stuck/1"), (error.Action, error.Name));
            // The connection goes on: events need no storage.
            await client.SendAsync(Ev(EventAction.Subscribe, names: ["still/here"], cid: "s"));
            Assert.True((await client.ReceiveAsync()).IsAck);
        }
        finally
        {
            storage.Unblock.Set();
        }
    }

    [Fact]
    public async Task A_writer_that_reads_its_record_while_its_write_is_on_the_way_gets_its_own_write()
    {
        var storage = new GatedStorage();
        await using var node = await TestNode.StartAsync(storage: storage);
        await using var writer = await RawClient.LoginAsync(node);
        await writer.SendAsync(Rec(RecordAction.CreateAndUpdate, "mine/1", -1, "{\"a\":1}"));
        await writer.SendAsync(Rec(RecordAction.SubscribeCreateAndRead, names: ["mine/1"], cid: "s"));
        await writer.SendAsync(Rec(RecordAction.Head, "mine/1"));
        var read = writer.ReceiveUntilAsync(m => m.Action == (int)RecordAction.ReadResponse, timeout: TimeSpan.FromSeconds(30));
        while (!read.IsCompleted)
        {
            if (!storage.ReleaseOne())
            {
                await Task.Delay(5);
            }
        }
        var response = await read;
        Assert.Equal((1, "{\"a\":1}"), (response.Version, Text(response)));
        var head = await writer.ReceiveUntilAsync(m => m.Action == (int)RecordAction.HeadResponse);
        Assert.Equal(1, head.Version);
    }

    /// <summary>Storage that refuses the writes of one version and keeps the rest.</summary>
    private sealed class RefusingStorage(int refusedVersion) : IRecordStorage
    {
        private readonly MemoryRecordStorage _inner = new();

        public ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken) => _inner.GetAsync(name, cancellationToken);

        public async ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken)
        {
            await Task.Yield();
            if (state.Version == refusedVersion)
            {
                throw new IOException("refused");
            }
            await _inner.SetAsync(name, state, cancellationToken);
        }

        public ValueTask DeleteAsync(string name, CancellationToken cancellationToken) => _inner.DeleteAsync(name, cancellationToken);
    }

    [Fact]
    public async Task A_write_storage_refused_is_never_shown_and_a_delete_after_it_leaves_nothing_behind()
    {
        await using var node = await TestNode.StartAsync(storage: new RefusingStorage(refusedVersion: 2));
        await using var writer = await RawClient.LoginAsync(node);
        await using var watcher = await RawClient.LoginAsync(node);
        await writer.SendAsync(Rec(RecordAction.CreateAndUpdate, "refused/1", -1, "{\"old\":1}", "w1", writeAck: true));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await writer.ReceiveAsync()).Action);
        await watcher.SendAsync(Rec(RecordAction.SubscribeCreateAndRead, names: ["refused/1"], cid: "s"));
        Assert.Equal(1, (await watcher.ReceiveUntilAsync(m => m.Action == (int)RecordAction.ReadResponse)).Version);
        await writer.SendAsync(Rec(RecordAction.Update, "refused/1", 2, "{\"new\":2}", "w2", writeAck: true));
        Assert.Equal((int)RecordAction.RecordUpdateError, (await writer.ReceiveAsync()).Action);
        await writer.SendAsync(Rec(RecordAction.Read, "refused/1"));
        var read = await writer.ReceiveAsync();
        Assert.Equal((1, "{\"old\":1}"), (read.Version, Text(read)));
        await writer.SendAsync(Rec(RecordAction.Delete, "refused/1", cid: "d"));
        Assert.Equal((int)RecordAction.DeleteSuccess, (await writer.ReceiveAsync()).Action);
        await writer.SendAsync(Rec(RecordAction.Read, "refused/1"));
        Assert.Equal((int)RecordAction.RecordNotFound, (await writer.ReceiveAsync()).Action);
        // The watcher saw version 1, then the deletion: never the refused version 2.
        var deleted = await watcher.ReceiveAsync();
        Assert.Equal((int)RecordAction.Deleted, deleted.Action);
    }

    /// <summary>Storage that fails with internal details in its messages.</summary>
    private sealed class LeakyStorage : IRecordStorage
    {
        public ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken) =>
            name.StartsWith("broken", StringComparison.Ordinal) ? throw new InvalidOperationException("secret: /srv/db password=hunter2") : ValueTask.FromResult<RecordState?>(null);

        public ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken) =>
            name.StartsWith("unwritable", StringComparison.Ordinal) ? ValueTask.FromException(new IOException("secret: disk /dev/sda3 full")) : ValueTask.CompletedTask;

        public ValueTask DeleteAsync(string name, CancellationToken cancellationToken) =>
            ValueTask.FromException(new IOException("secret: delete failed on shard 7"));
    }

    [Fact]
    public async Task Storage_errors_reach_the_client_as_stable_messages_and_the_details_only_the_log()
    {
        var logs = new CapturingLoggerProvider();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs));
        var options = new StateMeshOptions { NodeName = $"leaky-{Guid.NewGuid():N}" };
        options.Tcp.Enabled = true;
        options.Tcp.Port = 0;
        await using var node = new StateMeshNode(Microsoft.Extensions.Options.Options.Create(options), null, factory, null, recordStorage: new LeakyStorage());
        await node.StartAsync();
        await using var client = await RawClient.LoginAsync(node);
        await client.SendAsync(Rec(RecordAction.Read, "broken/1"));
        var load = await client.ReceiveAsync();
        await client.SendAsync(Rec(RecordAction.CreateAndUpdate, "unwritable/1", -1, "{}", "w", writeAck: true));
        var write = await client.ReceiveUntilAsync(m => m.IsError);
        await client.SendAsync(Rec(RecordAction.Delete, "x", cid: "d"));
        var delete = await client.ReceiveUntilAsync(m => m.IsError);
        Assert.Equal((int)RecordAction.RecordLoadError, load.Action);
        Assert.Equal((int)RecordAction.RecordUpdateError, write.Action);
        Assert.Equal((int)RecordAction.RecordDeleteError, delete.Action);
        foreach (var m in new[] { load, write, delete })
        {
            Assert.DoesNotContain("secret", Text(m), StringComparison.Ordinal);
            Assert.NotEmpty(Text(m));
        }
        Assert.Contains(logs.Lines, l => l.Contains("hunter2", StringComparison.Ordinal));
        Assert.Contains(logs.Lines, l => l.Contains("/dev/sda3", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_connection_that_fails_under_the_node_leaves_a_log_line()
    {
        var logs = new CapturingLoggerProvider();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));
        var options = new StateMeshOptions { NodeName = $"reset-{Guid.NewGuid():N}" };
        options.Tcp.Enabled = true;
        options.Tcp.Port = 0;
        await using var node = new StateMeshNode(Microsoft.Extensions.Options.Options.Create(options), null, factory, null);
        await node.StartAsync();
        using (var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            await socket.ConnectAsync(node.TcpEndPoint!);
            await ClientEventsTests.WaitUntilAsync(() => node.Engine.SessionCount == 1);
            // A reset, not a close: the node's read fails.
            socket.LingerState = new System.Net.Sockets.LingerOption(true, 0);
        }
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.SessionCount == 0);
        await ClientEventsTests.WaitUntilAsync(() => logs.Lines.Any(l => l.Contains("the transport failed", StringComparison.Ordinal)));
    }

    [Fact]
    public void Http_tokens_expire_unless_used_and_are_bounded_in_number()
    {
        var time = new FakeTimeProvider();
        var tokens = new HttpTokens(capacity: 3, lifetime: TimeSpan.FromMinutes(10), time);
        tokens.Add("a", new HttpUser("ana", null));
        tokens.Add("b", new HttpUser("bob", null));
        time.Advance(TimeSpan.FromMinutes(6));
        Assert.Equal("ana", tokens.TryUse("a")?.Id); // renewed
        time.Advance(TimeSpan.FromMinutes(6));
        Assert.Equal("ana", tokens.TryUse("a")?.Id);
        Assert.Null(tokens.TryUse("b")); // unused for 12 minutes
        time.Advance(TimeSpan.FromSeconds(1));
        tokens.Add("c", new HttpUser("cy", null));
        tokens.Add("d", new HttpUser("dee", null));
        tokens.Add("e", new HttpUser("eve", null)); // full: the token used longest ago goes
        Assert.Equal(3, tokens.Count);
        Assert.Null(tokens.TryUse("a"));
        Assert.Equal("eve", tokens.TryUse("e")?.Id);
    }
}
