using StateMesh.Client;
using StateMesh.Cluster;
using StateMesh.Tests.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Cluster;

/// <summary>
/// Several nodes behave as one, whichever node each client is on. Run over each bus: a derived class says how a node
/// joins the cluster.
/// </summary>
public abstract class ClusterNodesSpecification : IAsyncLifetime
{
    private readonly List<StateMeshNode> _nodes = [];
    private readonly List<StateMeshClient> _clients = [];

    /// <summary>A new bus that joins this test's cluster.</summary>
    protected abstract IClusterBus CreateBus();

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
            var bus = CreateBus();
            nodes[i] = await TestNode.StartAsync(clusterBus: bus);
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
}

/// <summary>The cluster specification with the nodes of one process on one in-process hub.</summary>
public sealed class InProcessClusterNodesTests : ClusterNodesSpecification
{
    private readonly InProcessClusterHub _hub = new();

    protected override IClusterBus CreateBus() => new InProcessClusterBus(_hub);
}
