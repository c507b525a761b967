using System.Text;
using StateMesh.Client;
using StateMesh.Cluster;
using StateMesh.Protocol;
using StateMesh.Storage;
using StateMesh.Tests.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Cluster;

/// <summary>
/// Several nodes behave as one, whichever node each client is on. Run over each bus: a derived class says how a node
/// joins the cluster.
/// </summary>
public abstract class ClusterNodesSpecification : IAsyncLifetime
{
    public sealed record Doc(int N);

    private readonly List<StateMeshNode> _nodes = [];
    private readonly List<StateMeshClient> _clients = [];

    /// <summary>A new member of this test's cluster: its bus, its view of the cluster's record store, its registry.</summary>
    protected abstract (IClusterBus Bus, IRecordStore Store, IClusterRegistry Registry) CreateMember();

    /// <summary>The durable storage every node of the cluster shares (writes can be made slow to open race windows).</summary>
    protected SlowStorage Storage { get; } = new();

    /// <summary>Memory storage whose writes take <see cref="Delay"/> to become durable.</summary>
    public sealed class SlowStorage : IRecordStorage
    {
        private readonly MemoryRecordStorage _inner = new();

        public TimeSpan Delay { get; set; }

        public ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken) => _inner.GetAsync(name, cancellationToken);

        public async ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken)
        {
            if (Delay > TimeSpan.Zero)
            {
                await Task.Delay(Delay, cancellationToken);
            }
            await _inner.SetAsync(name, state, cancellationToken);
        }

        public ValueTask DeleteAsync(string name, CancellationToken cancellationToken) => _inner.DeleteAsync(name, cancellationToken);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var client in _clients)
        {
            await client.DisposeAsync();
        }
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }
    }

    protected async Task<StateMeshNode[]> StartNodesAsync(int count)
    {
        var nodes = new StateMeshNode[count];
        for (var i = 0; i < count; i++)
        {
            nodes[i] = await StartNodeAsync();
        }
        return nodes;
    }

    /// <summary>Waits, bounded, until an asynchronous condition holds (a query answered by another node's news).</summary>
    protected static async Task EventuallyAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("the condition did not become true in time");
            }
            await Task.Delay(20);
        }
    }

    protected async Task<StateMeshNode> StartNodeAsync(Action<StateMeshOptions>? configure = null)
    {
        var (bus, store, registry) = CreateMember();
        // Listeners on a loaded machine get time to answer an offer that crosses nodes.
        var node = await TestNode.StartAsync(o => { o.Listen.ResponseTimeout = TimeSpan.FromSeconds(5); configure?.Invoke(o); }, storage: Storage, clusterBus: bus, store: store, registry: registry);
        _nodes.Add(node);
        return node;
    }

    [Fact]
    public async Task A_rule_that_reads_another_record_sees_it_as_another_node_wrote_it()
    {
        const string Rules = """
            presence: { "*": { allow: true } }
            event: { "*": { publish: true, subscribe: true, listen: true } }
            rpc: { "*": { provide: true, request: true } }
            record:
              "*": { create: true, read: true, write: true, delete: true, listen: true, notify: true }
              "order/*": { create: true, read: true, write: "_('stock/apple').count > 0" }
            """;
        var a = await StartNodeAsync(o => o.Permissions.Rules = Rules);
        var b = await StartNodeAsync(o => o.Permissions.Rules = Rules);
        var onA = await ConnectAsync(a, "ana");
        var onB = await ConnectAsync(b, "bob");
        Assert.True((await onA.Records.SetDataWithAckAsync("stock/apple", System.Text.Json.Nodes.JsonNode.Parse("""{"count":0}""")!)).Succeeded);
        Assert.Contains("MessageDenied", (await onB.Records.SetDataWithAckAsync("order/1", System.Text.Json.Nodes.JsonNode.Parse("{}")!)).Error, StringComparison.Ordinal);
        Assert.True((await onA.Records.SetDataWithAckAsync("stock/apple", "count", 3)).Succeeded);
        // Node b read the record for the rule before; it must see node a's write, not a copy of its own.
        await EventuallyAsync(async () => (await onB.Records.SetDataWithAckAsync("order/1", System.Text.Json.Nodes.JsonNode.Parse("{}")!)).Succeeded);
        Assert.Equal(1, await onA.Records.HeadAsync("order/1"));
    }

    protected async Task<StateMeshClient> ConnectAsync(StateMeshNode node, string user)
    {
        var client = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = user });
        _clients.Add(client);
        return client;
    }

    [Fact]
    public async Task An_event_emitted_on_one_node_reaches_every_subscriber_on_every_node_once()
    {
        var nodes = await StartNodesAsync(3);
        var emitter = await ConnectAsync(nodes[0], "emitter");
        var received = new List<(int Client, string Data)>();
        var subscribers = new List<IDisposable>();
        for (var i = 0; i < 6; i++)
        {
            var client = await ConnectAsync(nodes[i % 3], "s" + i);
            var index = i;
            subscribers.Add(await client.Events.SubscribeAsync<string>("news", d => { lock (received) { received.Add((index, d)); } }));
        }
        using var _ = await emitter.Events.SubscribeAsync<string>("news", d => { lock (received) { received.Add((-1, d)); } });
        await Task.Delay(100); // a Redis SUBSCRIBE is on its way after the node's ack
        await emitter.Events.PublishAsync("news", "hello");
        await ClientEventsTests.WaitUntilAsync(() => { lock (received) { return received.Count >= 6; } });
        await Task.Delay(200);
        lock (received)
        {
            // Every subscriber once, the emitter never (as on one node).
            Assert.Equal(Enumerable.Range(0, 6).Select(i => (i, "hello")), received.OrderBy(r => r.Client));
        }
        subscribers.ForEach(s => s.Dispose());
    }

    [Fact]
    public async Task Events_from_one_emitter_arrive_in_order_on_other_nodes()
    {
        var nodes = await StartNodesAsync(2);
        var emitter = await ConnectAsync(nodes[0], "emitter");
        var watcher = await ConnectAsync(nodes[1], "watcher");
        var received = new List<int>();
        using var _ = await watcher.Events.SubscribeAsync<int>("seq", d => { lock (received) { received.Add(d); } });
        await Task.Delay(100);
        for (var i = 0; i < 1000; i++)
        {
            await emitter.Events.PublishAsync("seq", i);
        }
        await ClientEventsTests.WaitUntilAsync(() => { lock (received) { return received.Count >= 1000; } });
        lock (received)
        {
            Assert.Equal(Enumerable.Range(0, 1000), received);
        }
    }

    private static Message Write(string name, int version, string data, string cid) => new()
    {
        Topic = Topic.Record, Action = (int)RecordAction.CreateAndUpdate, Name = name, Version = version,
        Data = Encoding.UTF8.GetBytes(data), IsWriteAck = true, CorrelationId = cid,
    };

    [Fact]
    public async Task A_record_written_on_one_node_reaches_subscribers_on_the_others_and_every_node_reads_it()
    {
        var nodes = await StartNodesAsync(3);
        var writer = await ConnectAsync(nodes[0], "writer");
        var seen = new List<(int Node, int Version, int N)>();
        var held = new List<IAsyncDisposable>();
        var subscriptions = new List<IDisposable>();
        for (var i = 1; i < 3; i++)
        {
            var reader = await ConnectAsync(nodes[i], "reader" + i);
            var node = i;
            var record = await reader.Records.GetAsync<Doc>("cluster/doc");
            held.Add(record);
            subscriptions.Add(record.Changes.Subscribe(d => { lock (seen) { seen.Add((node, record.Version, d?.N ?? -1)); } }));
        }
        var mine = await writer.Records.GetAsync<Doc>("cluster/doc");
        for (var v = 1; v <= 20; v++)
        {
            var result = await mine.SetWithAckAsync(new Doc(v));
            Assert.True(result.Succeeded, result.ToString());
        }
        await ClientEventsTests.WaitUntilAsync(() => { lock (seen) { return seen.Any(s => s.Node == 1 && s.N == 20) && seen.Any(s => s.Node == 2 && s.N == 20); } });
        foreach (var node in nodes)
        {
            await using var late = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = "late" });
            var snapshot = await late.Records.SnapshotAsync<Doc>("cluster/doc");
            Assert.Equal((20, 20), (snapshot!.Version, snapshot.Value.N));
        }
        lock (seen)
        {
            // Each reader saw the values only going forward.
            foreach (var node in new[] { 1, 2 })
            {
                var values = seen.Where(s => s.Node == node).Select(s => s.N).ToList();
                Assert.Equal(values.Order(), values);
            }
        }
        subscriptions.ForEach(s => s.Dispose());
        foreach (var record in held)
        {
            await record.DisposeAsync();
        }
        await mine.DisposeAsync();
    }

    [Fact]
    public async Task A_writer_that_loses_to_a_write_another_node_has_not_made_durable_yet_is_shown_that_write_once_durable()
    {
        var nodes = await StartNodesAsync(2);
        await using var a = await RawClient.LoginAsync(nodes[0]);
        await using var b = await RawClient.LoginAsync(nodes[1]);
        Storage.Delay = TimeSpan.FromMilliseconds(300);
        await a.SendAsync(Write("slow/1", 1, "{\"by\":\"a\"}", "a"));
        await Task.Delay(50); // a's write is accepted in the store, not yet durable
        await b.SendAsync(Write("slow/1", 1, "{\"by\":\"b\"}", "b"));
        var conflict = await b.ReceiveAsync(TimeSpan.FromSeconds(10));
        // Never an older version than the one b lost to (the deepstream client would adopt it and be overwritten),
        // never a's data before it is durable: a's version 1, once durable.
        Assert.Equal(((int)RecordAction.VersionExists, 1, "{\"by\":\"a\"}"), (conflict.Action, conflict.Version, Encoding.UTF8.GetString(conflict.Data!.Value.Span)));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await a.ReceiveAsync(TimeSpan.FromSeconds(10))).Action);
        Storage.Delay = TimeSpan.Zero;
    }

    [Fact]
    public async Task Two_writers_on_two_nodes_racing_for_one_version_never_both_win()
    {
        var nodes = await StartNodesAsync(3);
        await using var a = await RawClient.LoginAsync(nodes[0]);
        await using var b = await RawClient.LoginAsync(nodes[1]);
        const int Records = 1000;
        var prefix = "race/" + Guid.NewGuid().ToString("N")[..8] + "/";
        var sendA = Task.Run(() => a.SendAsync([.. Enumerable.Range(0, Records).Select(i => Write(prefix + i, 1, "{\"w\":\"a\"}", "a" + i))]));
        var sendB = Task.Run(() => b.SendAsync([.. Enumerable.Range(0, Records).Select(i => Write(prefix + i, 1, "{\"w\":\"b\"}", "b" + i))]));
        await Task.WhenAll(sendA, sendB);
        async Task<Dictionary<string, bool>> OutcomesAsync(RawClient client)
        {
            var outcomes = new Dictionary<string, bool>(StringComparer.Ordinal);
            while (outcomes.Count < Records)
            {
                var m = await client.ReceiveAsync(TimeSpan.FromSeconds(30));
                if (m.Action == (int)RecordAction.WriteAcknowledgement)
                {
                    outcomes[m.Name!] = true;
                }
                else if (m.Action == (int)RecordAction.VersionExists)
                {
                    outcomes[m.Name!] = false;
                }
            }
            return outcomes;
        }
        var (wonA, wonB) = (await OutcomesAsync(a), await OutcomesAsync(b));
        for (var i = 0; i < Records; i++)
        {
            Assert.True(wonA[prefix + i] ^ wonB[prefix + i], $"record {i}: a {(wonA[prefix + i] ? "won" : "lost")}, b {(wonB[prefix + i] ? "won" : "lost")}");
        }
        // Every node reports the winner.
        foreach (var node in nodes)
        {
            await using var reader = await RawClient.LoginAsync(node);
            await reader.SendAsync([.. Enumerable.Range(0, Records).Select(i => new Message { Topic = Topic.Record, Action = (int)RecordAction.Read, Name = prefix + i, CorrelationId = "r" + i })]);
            for (var read = 0; read < Records; read++)
            {
                var m = await reader.ReceiveAsync(TimeSpan.FromSeconds(30));
                Assert.Equal((int)RecordAction.ReadResponse, m.Action);
                Assert.Equal((1, wonA[m.Name!] ? "{\"w\":\"a\"}" : "{\"w\":\"b\"}"), (m.Version, Encoding.UTF8.GetString(m.Data!.Value.Span)));
            }
        }
    }

    [Fact]
    public async Task Two_writers_streaming_patches_to_one_record_from_two_nodes_never_build_on_a_write_the_other_beat()
    {
        // Each writer sends its patches one after another without waiting, as a busy client does: a node builds each
        // on the writer's previous one while the store's answer is on its way. When the other node takes a version
        // first, the writes built on the beaten one must all be refused, never stored over the other's data.
        var nodes = await StartNodesAsync(3);
        await using var a = await RawClient.LoginAsync(nodes[0]);
        await using var b = await RawClient.LoginAsync(nodes[1]);
        var name = "stream/" + Guid.NewGuid().ToString("N")[..8];
        await a.SendAsync(Write(name, 1, "{\"a\":0,\"b\":0}", "create"));
        Assert.Equal((int)RecordAction.WriteAcknowledgement, (await a.ReceiveAsync(TimeSpan.FromSeconds(10))).Action);
        var observer = await ConnectAsync(nodes[2], "observer");
        var seen = new List<(int Version, int A, int B)>();
        await using var watched = await observer.Records.GetAsync<Dictionary<string, int>>(name);
        using var watching = watched.Changes.Subscribe(d => { lock (seen) { seen.Add((watched.Version, d!["a"], d["b"])); } });
        const int Writes = 200;
        Message Patch(string field, int i) => new()
        {
            Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = name, Version = 1 + i, Path = field,
            Data = Encoding.UTF8.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), IsWriteAck = true, CorrelationId = field + i,
        };
        var sendA = Task.Run(() => a.SendAsync([.. Enumerable.Range(1, Writes).Select(i => Patch("a", i))]));
        var sendB = Task.Run(() => b.SendAsync([.. Enumerable.Range(1, Writes).Select(i => Patch("b", i))]));
        await Task.WhenAll(sendA, sendB);
        // Every write is answered once: acknowledged, or refused (VERSION_EXISTS, or INVALID_VERSION past the other's).
        static async Task<List<int>> AcceptedAsync(RawClient client)
        {
            var accepted = new List<int>();
            for (var answered = 0; answered < Writes; answered++)
            {
                var m = await client.ReceiveAsync(TimeSpan.FromSeconds(30));
                Assert.True(m.Action is (int)RecordAction.WriteAcknowledgement or (int)RecordAction.VersionExists or (int)RecordAction.InvalidVersion, m.ToString());
                if (m.Action == (int)RecordAction.WriteAcknowledgement)
                {
                    accepted.Add(int.Parse(m.CorrelationId![1..], System.Globalization.CultureInfo.InvariantCulture));
                }
            }
            return accepted;
        }
        var (acceptedA, acceptedB) = (await AcceptedAsync(a), await AcceptedAsync(b));
        Assert.NotEmpty(acceptedA.Concat(acceptedB));
        // One version per accepted write, none twice: the record's version is the count of writes accepted.
        var version = 1 + acceptedA.Count + acceptedB.Count;
        var expected = (version, acceptedA.DefaultIfEmpty().Max(), acceptedB.DefaultIfEmpty().Max());
        foreach (var node in nodes)
        {
            await using var reader = await RawClient.LoginAsync(node);
            await reader.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Read, Name = name, CorrelationId = "r" });
            var m = await reader.ReceiveAsync(TimeSpan.FromSeconds(10));
            var data = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(m.Data!.Value.Span)!;
            // Each field holds its writer's newest accepted value: no accepted write was built on a beaten one.
            Assert.Equal(expected, (m.Version!.Value, data["a"], data["b"]));
        }
        await ClientEventsTests.WaitUntilAsync(() => { lock (seen) { return seen.Count > 0 && seen[^1].Version == version; } });
        lock (seen)
        {
            // What a subscriber on a third node saw only went forward, in version and in each writer's field.
            for (var i = 1; i < seen.Count; i++)
            {
                Assert.True(seen[i].Version > seen[i - 1].Version && seen[i].A >= seen[i - 1].A && seen[i].B >= seen[i - 1].B, $"{seen[i - 1]} then {seen[i]}");
            }
        }
    }

    [Fact]
    public async Task A_call_goes_to_a_local_provider_first_and_else_to_providers_on_other_nodes()
    {
        var nodes = await StartNodesAsync(3);
        var callerHere = await ConnectAsync(nodes[0], "caller");
        var answered = new System.Collections.Concurrent.ConcurrentBag<string>();
        var p2 = await ConnectAsync(nodes[1], "p2");
        var p3 = await ConnectAsync(nodes[2], "p3");
        await using var r2 = await p2.Rpc.ProvideAsync<int, int>("square", (x, ct) => { answered.Add("p2"); return Task.FromResult(x * x); });
        await using var r3 = await p3.Rpc.ProvideAsync<int, int>("square", (x, ct) => { answered.Add("p3"); return Task.FromResult(x * x); });
        var results = await Task.WhenAll(Enumerable.Range(0, 60).Select(i => callerHere.Rpc.MakeAsync<int, int>("square", i)));
        Assert.Equal(Enumerable.Range(0, 60).Select(i => i * i), results);
        // Spread over both other nodes (random choice: 60 calls all to one node would happen with p = 2^-59).
        Assert.Equal(["p2", "p3"], answered.Distinct().Order());
        // A provider on the caller's own node is used first.
        var local = await ConnectAsync(nodes[0], "p1");
        await using var r1 = await local.Rpc.ProvideAsync<int, int>("square", (x, ct) => { answered.Add("p1"); return Task.FromResult(x * x); });
        answered.Clear();
        await Task.WhenAll(Enumerable.Range(0, 20).Select(i => callerHere.Rpc.MakeAsync<int, int>("square", i)));
        Assert.Equal(["p1"], answered.Distinct());
        Assert.Equal(0, nodes.Sum(n => n.Engine.Rpc.PendingCount));
    }

    [Fact]
    public async Task A_reject_moves_the_call_to_an_untried_provider_on_another_node_and_no_provider_fails_at_once()
    {
        var nodes = await StartNodesAsync(3);
        var caller = await ConnectAsync(nodes[0], "caller");
        var refuser = await ConnectAsync(nodes[1], "refuser");
        var helper = await ConnectAsync(nodes[2], "helper");
        var refused = 0;
        await using var no = await refuser.Rpc.ProvideWithContextAsync<string, string>("job", (request, ct) => { Interlocked.Increment(ref refused); throw request.Reject(); });
        await using var yes = await helper.Rpc.ProvideAsync<string, string>("job", (x, ct) => Task.FromResult("done " + x));
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("done " + i, await caller.Rpc.MakeAsync<string, string>("job", i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        Assert.True(refused > 0, "the refusing provider was never offered a call");
        var none = await Assert.ThrowsAsync<RpcException>(() => caller.Rpc.MakeAsync<string, string>("nobody/provides", "x"));
        Assert.Equal(RpcErrorCode.NoProvider, none.Code);
        // Every provider rejects: no provider, not a timeout.
        await yes.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => nodes[2].Engine.Rpc.Providers.Get("job").Length == 0);
        var rejected = await Assert.ThrowsAsync<RpcException>(() => caller.Rpc.MakeAsync<string, string>("job", "y"));
        Assert.Equal(RpcErrorCode.NoProvider, rejected.Code);
    }

    [Fact]
    public async Task Calls_follow_providers_as_they_come_and_go_on_other_nodes_and_never_fail_while_one_is_left()
    {
        var nodes = await StartNodesAsync(3);
        var caller = await ConnectAsync(nodes[0], "caller");
        var first = await ConnectAsync(nodes[1], "first");
        var second = await ConnectAsync(nodes[2], "second");
        var p1 = await first.Rpc.ProvideAsync<string, string>("svc", (x, ct) => Task.FromResult("first"));
        // The caller's node has read who provides the name.
        Assert.Equal("first", await caller.Rpc.MakeAsync<string, string>("svc", "x"));
        // A provider that comes on another node gets calls too.
        var p2 = await second.Rpc.ProvideAsync<string, string>("svc", (x, ct) => Task.FromResult("second"));
        var answers = new List<string>();
        for (var i = 0; i < 200 && !answers.Contains("second"); i++)
        {
            answers.Add(await caller.Rpc.MakeAsync<string, string>("svc", "x"));
        }
        Assert.Contains("second", answers);
        // The first goes: every call is answered by the one left, none fails.
        await p1.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => nodes[1].Engine.Rpc.Providers.Get("svc").Length == 0);
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("second", await caller.Rpc.MakeAsync<string, string>("svc", "x"));
        }
        // The last goes: no provider.
        await p2.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => nodes[2].Engine.Rpc.Providers.Get("svc").Length == 0);
        var none = await Assert.ThrowsAsync<RpcException>(() => caller.Rpc.MakeAsync<string, string>("svc", "x"));
        Assert.Equal(RpcErrorCode.NoProvider, none.Code);
        // One comes back: the very next call reaches it (what the caller's node read of nobody is not trusted).
        await using var again = await first.Rpc.ProvideAsync<string, string>("svc", (x, ct) => Task.FromResult("again"));
        Assert.Equal("again", await caller.Rpc.MakeAsync<string, string>("svc", "x"));
        Assert.Equal(0, nodes.Sum(n => n.Engine.Rpc.PendingCount));
    }

    [Fact]
    public async Task A_node_that_joins_can_call_a_provider_registered_before_it_at_once()
    {
        var nodes = await StartNodesAsync(1);
        var provider = await ConnectAsync(nodes[0], "provider");
        await using var _ = await provider.Rpc.ProvideAsync<string, string>("echo", (x, ct) => Task.FromResult(x));
        var late = await StartNodeAsync();
        var caller = await ConnectAsync(late, "caller");
        Assert.Equal("first", await caller.Rpc.MakeAsync<string, string>("echo", "first"));
    }

    [Fact]
    public async Task A_node_that_stops_takes_its_providers_with_it_and_fails_the_calls_they_had_accepted()
    {
        var nodes = await StartNodesAsync(3);
        var caller = await ConnectAsync(nodes[0], "caller");
        var steady = await ConnectAsync(nodes[1], "steady");
        var going = await ConnectAsync(nodes[2], "going");
        await using var s = await steady.Rpc.ProvideAsync<string, string>("svc", (x, ct) => Task.FromResult("steady"));
        var hold = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var g = await going.Rpc.ProvideAsync<string, string>("slow", (x, ct) => { held.TrySetResult(); return hold.Task; });
        var accepted = caller.Rpc.MakeAsync<string, string>("slow", "x");
        await held.Task.WaitAsync(TimeSpan.FromSeconds(10));
        // The caller's node knows the call is accepted (the provider's ACCEPT has travelled back).
        await ClientEventsTests.WaitUntilAsync(() => nodes[0].Engine.Rpc.AcceptedCount == 1);
        await nodes[2].DisposeAsync();
        // The accepted call fails at once (not after the response timeout), and the name has no provider any more.
        var lost = await Assert.ThrowsAsync<RpcException>(() => accepted.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(RpcErrorCode.ProviderError, lost.Code);
        var gone = await Assert.ThrowsAsync<RpcException>(() => caller.Rpc.MakeAsync<string, string>("slow", "y"));
        Assert.Equal(RpcErrorCode.NoProvider, gone.Code);
        // The redundant provider elsewhere keeps answering.
        Assert.Equal("steady", await caller.Rpc.MakeAsync<string, string>("svc", "z"));
        hold.TrySetResult("late");
    }

    [Fact]
    public async Task A_user_joins_and_leaves_once_cluster_wide_whichever_nodes_its_connections_are_on()
    {
        var nodes = await StartNodesAsync(3);
        var watcher = await ConnectAsync(nodes[1], "watcher");
        var changes = new List<PresenceChange>();
        using var _ = watcher.Presence.Observe().Subscribe(c => { lock (changes) { changes.Add(c); } });
        await watcher.Presence.CountAsync(); // the subscription is in place once a later query is answered
        var first = await StateMeshClient.ConnectAsync(nodes[0].TcpAddress!.ToString(), new { username = "ana" });
        await ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Count >= 1; } });
        var second = await StateMeshClient.ConnectAsync(nodes[2].TcpAddress!.ToString(), new { username = "ana" });
        await EventuallyAsync(async () => (await watcher.Presence.QueryAllAsync()).Contains("ana"));
        foreach (var node in nodes)
        {
            await using var asker = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = "asker-" + node.Options.NodeName });
            Assert.True((await asker.Presence.QueryAsync(["ana"]))["ana"]);
        }
        await first.DisposeAsync();
        // Still online on node 3: no leave.
        await Task.Delay(300);
        Assert.True((await watcher.Presence.QueryAsync(["ana"]))["ana"]);
        await second.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Count(c => c.User == "ana") >= 2; } });
        await Task.Delay(300);
        lock (changes)
        {
            Assert.Equal([new PresenceChange("ana", true), new PresenceChange("ana", false)], changes.Where(c => c.User == "ana"));
        }
        Assert.False((await watcher.Presence.QueryAsync(["ana"]))["ana"]);
    }

    [Fact]
    public async Task A_node_that_joins_sees_who_is_online_and_a_node_that_stops_takes_its_users_with_it()
    {
        var nodes = await StartNodesAsync(2);
        await using var bob = await StateMeshClient.ConnectAsync(nodes[0].TcpAddress!.ToString(), new { username = "bob" });
        var late = await StartNodeAsync();
        var asker = await ConnectAsync(late, "asker");
        await EventuallyAsync(async () => (await asker.Presence.QueryAllAsync()).Contains("bob"));
        var changes = new List<PresenceChange>();
        using var _ = asker.Presence.Observe().Subscribe(c => { lock (changes) { changes.Add(c); } });
        await asker.Presence.CountAsync();
        await nodes[0].DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Contains(new PresenceChange("bob", false)); } });
        Assert.DoesNotContain("bob", await asker.Presence.QueryAllAsync());
    }

    [Fact]
    public async Task A_claim_is_held_by_one_node_at_a_time_and_freed_by_a_release_or_by_its_node_leaving()
    {
        var nodes = await StartNodesAsync(3);
        var (a, b, c) = (nodes[0].Engine.Registry, nodes[1].Engine.Registry, nodes[2].Engine.Registry);
        var claims = await Task.WhenAll(Enumerable.Range(0, 20).Select(async i => await (i % 2 == 0 ? a : b).TryClaimAsync("spec/claim", CancellationToken.None)));
        // Whoever came first holds it, and asks again with success; the other never got it.
        var holder = await a.TryClaimAsync("spec/claim", CancellationToken.None) ? a : b;
        var other = ReferenceEquals(holder, a) ? b : a;
        Assert.True(claims.Length == 20 && claims.Count(x => x) >= 1);
        Assert.False(await other.TryClaimAsync("spec/claim", CancellationToken.None));
        Assert.False(await c.TryClaimAsync("spec/claim", CancellationToken.None));
        // A release by a node that does not hold it changes nothing; the holder's release frees it.
        other.Release("spec/claim");
        Assert.False(await c.TryClaimAsync("spec/claim", CancellationToken.None));
        holder.Release("spec/claim");
        await EventuallyAsync(async () => await c.TryClaimAsync("spec/claim", CancellationToken.None));
        Assert.False(await holder.TryClaimAsync("spec/claim", CancellationToken.None));
        // The holder stops: its claims end with it.
        await nodes[2].DisposeAsync();
        await EventuallyAsync(async () => await a.TryClaimAsync("spec/claim", CancellationToken.None));
        Assert.False(await b.TryClaimAsync("spec/claim", CancellationToken.None));
    }

    /// <summary>Accepts or rejects every offer and keeps them.</summary>
    private sealed class Listener : IDisposable
    {
        private readonly IDisposable _subscription;

        public Listener(IObservable<ListenOffer> offers, bool accept)
        {
            _subscription = offers.Subscribe(o =>
            {
                lock (Offers) { Offers.Add(o); }
                if (accept) { o.Accept(); } else { o.Reject(); }
            });
        }

        public List<ListenOffer> Offers { get; } = [];

        public ListenOffer[] Snapshot() { lock (Offers) { return [.. Offers]; } }

        public void Dispose() => _subscription.Dispose();
    }

    private static Task ListeningOnAsync(StateMeshNode node, int patterns) =>
        ClientEventsTests.WaitUntilAsync(() => node.Engine.Sessions.Sum(s => s.ListenPatterns.Count) == patterns);

    [Fact]
    public async Task A_listener_on_one_node_provides_a_record_subscribed_on_others_until_the_last_subscriber_anywhere_leaves()
    {
        var nodes = await StartNodesAsync(3);
        var providerClient = await ConnectAsync(nodes[1], "provider");
        using var provider = new Listener(providerClient.Records.Listen("^prices/"), accept: true);
        await ListeningOnAsync(nodes[1], 1);
        var first = await ConnectAsync(nodes[0], "first");
        var second = await ConnectAsync(nodes[2], "second");
        var one = await first.Records.GetAsync<Doc>("prices/eur");
        await ClientEventsTests.WaitUntilAsync(() => provider.Snapshot().Length == 1 && one.HasProvider);
        var two = await second.Records.GetAsync<Doc>("prices/eur");
        await ClientEventsTests.WaitUntilAsync(() => two.HasProvider);
        var offer = Assert.Single(provider.Snapshot());
        Assert.Equal(("^prices/", "prices/eur"), (offer.Pattern, offer.Name));
        // Subscribers remain on node 3: the provider stays.
        await one.DisposeAsync();
        await Task.Delay(300);
        Assert.False(offer.Removed.IsCancellationRequested);
        Assert.Single(provider.Snapshot());
        await two.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => offer.Removed.IsCancellationRequested);
        // Subscribed again: offered again.
        await using var three = await second.Records.GetAsync<Doc>("prices/eur");
        await ClientEventsTests.WaitUntilAsync(() => provider.Snapshot().Length == 2 && three.HasProvider);
    }

    [Fact]
    public async Task Listeners_on_several_nodes_give_each_name_exactly_one_provider_and_a_reject_passes_it_to_another_node()
    {
        var nodes = await StartNodesAsync(3);
        var willingA = await ConnectAsync(nodes[1], "willing-a");
        var willingB = await ConnectAsync(nodes[2], "willing-b");
        var picky = await ConnectAsync(nodes[0], "picky");
        using var a = new Listener(willingA.Events.Listen("^feed/"), accept: true);
        using var b = new Listener(willingB.Events.Listen("^feed/"), accept: true);
        using var p = new Listener(picky.Events.Listen("^feed/"), accept: false);
        await ListeningOnAsync(nodes[1], 1);
        await ListeningOnAsync(nodes[2], 1);
        await ListeningOnAsync(nodes[0], 1);
        var subscriber = await ConnectAsync(nodes[0], "subscriber");
        var names = Enumerable.Range(0, 30).Select(i => "feed/" + i).ToArray();
        var subscriptions = new List<IDisposable>();
        foreach (var name in names)
        {
            subscriptions.Add(await subscriber.Events.SubscribeAsync<string>(name, _ => { }));
        }
        await ClientEventsTests.WaitUntilAsync(() => a.Snapshot().Length + b.Snapshot().Length == names.Length);
        await Task.Delay(300);
        // Exactly one accepted offer per name, cluster-wide, and the listeners on both other nodes took some.
        var accepted = a.Snapshot().Concat(b.Snapshot()).Select(o => o.Name).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(names.Order(StringComparer.Ordinal), accepted);
        // The picky listener, asked first on about a third of the names, passed each on to a listener on another node.
        Assert.All(p.Snapshot(), o => Assert.Contains(o.Name, accepted));
        Assert.NotEmpty(a.Snapshot());
        Assert.NotEmpty(b.Snapshot());
        foreach (var s in subscriptions)
        {
            s.Dispose();
        }
        await ClientEventsTests.WaitUntilAsync(() => a.Snapshot().Concat(b.Snapshot()).All(o => o.Removed.IsCancellationRequested));
    }

    [Fact]
    public async Task A_listener_that_comes_later_is_offered_names_already_subscribed_elsewhere_and_takes_over_when_the_provider_node_stops()
    {
        var nodes = await StartNodesAsync(3);
        var subscriber = await ConnectAsync(nodes[0], "subscriber");
        await using var record = await subscriber.Records.GetAsync<Doc>("game/1");
        var firstClient = await ConnectAsync(nodes[1], "first");
        using var first = new Listener(firstClient.Records.Listen("^game/"), accept: true);
        await ClientEventsTests.WaitUntilAsync(() => first.Snapshot().Length == 1 && record.HasProvider);
        var secondClient = await ConnectAsync(nodes[2], "second");
        using var second = new Listener(secondClient.Records.Listen("^game/"), accept: true);
        await ListeningOnAsync(nodes[2], 1);
        await Task.Delay(300);
        Assert.Empty(second.Snapshot()); // the name has its provider
        await nodes[1].DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => second.Snapshot().Length == 1);
        await ClientEventsTests.WaitUntilAsync(() => record.HasProvider);
        Assert.Equal("game/1", second.Snapshot()[0].Name);
    }
}

/// <summary>The cluster specification with the nodes of one process on one in-process hub.</summary>
public sealed class InProcessClusterNodesTests : ClusterNodesSpecification
{
    private readonly InProcessClusterHub _hub = new();
    private readonly MemoryRecordStore _store = new();

    protected override (IClusterBus Bus, IRecordStore Store, IClusterRegistry Registry) CreateMember() =>
        (new InProcessClusterBus(_hub), _store, new InProcessClusterRegistry(_hub));
}
