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

    /// <summary>A new member of this test's cluster: its bus and its view of the cluster's record store.</summary>
    protected abstract (IClusterBus Bus, IRecordStore Store) CreateMember();

    /// <summary>The durable storage every node of the cluster shares.</summary>
    protected IRecordStorage Storage { get; } = new MemoryRecordStorage();

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
            var (bus, store) = CreateMember();
            nodes[i] = await TestNode.StartAsync(storage: Storage, clusterBus: bus, store: store);
            _nodes.Add(nodes[i]);
        }
        return nodes;
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
}

/// <summary>The cluster specification with the nodes of one process on one in-process hub.</summary>
public sealed class InProcessClusterNodesTests : ClusterNodesSpecification
{
    private readonly InProcessClusterHub _hub = new();
    private readonly MemoryRecordStore _store = new();

    protected override (IClusterBus Bus, IRecordStore Store) CreateMember() => (new InProcessClusterBus(_hub), _store);
}
