using System.Collections.Concurrent;
using System.Text;
using StateMesh.Cluster;
using StateMesh.Protocol;

namespace StateMesh.Tests.Cluster;

/// <summary>
/// What every <see cref="IClusterBus"/> must do, run against each implementation (in-process here, Redis in
/// StateMesh.Redis.Tests): a derived class says how to make members of one cluster.
/// </summary>
public abstract class ClusterBusSpecification : IAsyncLifetime
{
    private readonly List<IClusterBus> _started = [];

    /// <summary>A new, not yet started bus that joins the same cluster as every other bus this test makes.</summary>
    protected abstract IClusterBus CreateBus();

    /// <summary>A bus subscription takes effect on the network for some buses: wait until a publish would reach it.</summary>
    protected virtual Task SettleAsync() => Task.CompletedTask;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var bus in _started)
        {
            await bus.StopAsync(CancellationToken.None);
        }
    }

    protected async Task<(IClusterBus Bus, Receiver Received)> StartAsync(string name)
    {
        var bus = CreateBus();
        var receiver = new Receiver();
        await bus.StartAsync(name + "-" + Guid.NewGuid().ToString("N")[..8], receiver, CancellationToken.None);
        _started.Add(bus);
        return (bus, receiver);
    }

    private static Message Emit(string name, string data) =>
        new() { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = name, Data = Encoding.UTF8.GetBytes(data) };

    [Fact]
    public async Task A_publish_reaches_every_other_subscribed_node_once_and_never_the_publisher()
    {
        var (a, fromA) = await StartAsync("a");
        var (b, fromB) = await StartAsync("b");
        var (c, fromC) = await StartAsync("c");
        var channel = "E/" + Guid.NewGuid();
        await a.Subscribe(channel);
        await b.Subscribe(channel);
        await c.Subscribe(channel);
        await SettleAsync();
        a.Publish(channel, Emit("n", "\"1\""));
        await fromB.WaitForAsync(channel, 1);
        await fromC.WaitForAsync(channel, 1);
        // A marker from b shows that a would have had its own message by now.
        b.Publish(channel, Emit("n", "\"marker\""));
        await fromA.WaitForAsync(channel, 1);
        // c hears the marker on its own time: deliveries to a and to c are not ordered with each other.
        await fromC.WaitForAsync(channel, 2);
        Assert.Equal(["\"marker\""], fromA.Data(channel));
        Assert.Equal(["\"1\""], fromB.Data(channel));
        Assert.Equal(["\"1\"", "\"marker\""], fromC.Data(channel));
    }

    [Fact]
    public async Task Messages_of_one_channel_arrive_in_the_order_published_with_every_field()
    {
        var (a, _) = await StartAsync("a");
        var (b, fromB) = await StartAsync("b");
        var channel = "E/" + Guid.NewGuid();
        await b.Subscribe(channel);
        await SettleAsync();
        for (var i = 0; i < 2000; i++)
        {
            a.Publish(channel, Emit("n", i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        var full = new Message
        {
            Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = "r/ü", Version = 7, Path = "a.b[2]", Names = ["x", "y"],
            CorrelationId = "c1", Data = Encoding.UTF8.GetBytes("{\"k\":[1,2]}"), IsWriteAck = true,
        };
        a.Publish(channel, full);
        await fromB.WaitForAsync(channel, 2001);
        var received = fromB.Messages(channel);
        Assert.Equal(Enumerable.Range(0, 2000).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), received.Take(2000).Select(m => Encoding.UTF8.GetString(m.Data!.Value.Span)));
        var last = received[^1];
        Assert.Equal((full.Topic, full.Action, full.Name, full.Version, full.Path, full.CorrelationId, full.IsWriteAck), (last.Topic, last.Action, last.Name, last.Version, last.Path, last.CorrelationId, last.IsWriteAck));
        Assert.Equal(full.Names, last.Names);
        Assert.Equal("{\"k\":[1,2]}", Encoding.UTF8.GetString(last.Data!.Value.Span));
    }

    [Fact]
    public async Task Interest_is_counted_and_a_node_without_interest_receives_nothing()
    {
        var (a, _) = await StartAsync("a");
        var (b, fromB) = await StartAsync("b");
        var channel = "E/" + Guid.NewGuid();
        var marker = "E/" + Guid.NewGuid();
        await b.Subscribe(channel);
        await b.Subscribe(channel);
        await b.Subscribe(marker);
        await SettleAsync();
        b.Unsubscribe(channel);
        await SettleAsync();
        a.Publish(channel, Emit("n", "\"still\""));
        await fromB.WaitForAsync(channel, 1);
        b.Unsubscribe(channel);
        await SettleAsync();
        a.Publish(channel, Emit("n", "\"gone\""));
        a.Publish(marker, Emit("m", "\"marker\""));
        await fromB.WaitForAsync(marker, 1);
        await Task.Delay(200);
        Assert.Equal(["\"still\""], fromB.Data(channel));
        // Interest can start again.
        await b.Subscribe(channel);
        await SettleAsync();
        a.Publish(channel, Emit("n", "\"again\""));
        await fromB.WaitForAsync(channel, 2);
        Assert.Equal(["\"still\"", "\"again\""], fromB.Data(channel));
    }

    [Fact]
    public async Task A_stopped_node_receives_nothing_and_the_others_go_on()
    {
        var (a, _) = await StartAsync("a");
        var (b, fromB) = await StartAsync("b");
        var (c, fromC) = await StartAsync("c");
        var channel = "E/" + Guid.NewGuid();
        await b.Subscribe(channel);
        await c.Subscribe(channel);
        await SettleAsync();
        await b.StopAsync(CancellationToken.None);
        a.Publish(channel, Emit("n", "\"after\""));
        await fromC.WaitForAsync(channel, 1);
        await Task.Delay(200);
        Assert.Empty(fromB.Data(channel));
        // Publishing and subscribing on a stopped bus does nothing and does not throw.
        await b.Subscribe(channel);
        b.Publish(channel, Emit("n", "\"x\""));
        b.Unsubscribe(channel);
    }

    /// <summary>Keeps what a bus delivered, per channel.</summary>
    protected sealed class Receiver : IClusterReceiver
    {
        private readonly ConcurrentDictionary<string, List<Message>> _messages = new(StringComparer.Ordinal);

        public void OnMessage(string channel, Message message)
        {
            var list = _messages.GetOrAdd(channel, _ => []);
            lock (list)
            {
                list.Add(message);
            }
        }

        public List<Message> Messages(string channel)
        {
            var list = _messages.GetOrAdd(channel, _ => []);
            lock (list)
            {
                return [.. list];
            }
        }

        public List<string> Data(string channel) => [.. Messages(channel).Select(m => Encoding.UTF8.GetString(m.Data!.Value.Span))];

        public async Task WaitForAsync(string channel, int count)
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (Messages(channel).Count < count)
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"{Messages(channel).Count} of {count} messages arrived on {channel}");
                }
                await Task.Delay(5);
            }
        }
    }
}

/// <summary>The specification over the in-process bus: the nodes of one process on one hub.</summary>
public sealed class InProcessClusterBusTests : ClusterBusSpecification
{
    private readonly InProcessClusterHub _hub = new();

    protected override IClusterBus CreateBus() => new InProcessClusterBus(_hub);

    [Fact]
    public async Task Two_nodes_with_one_name_cannot_join_one_hub()
    {
        var first = new InProcessClusterBus(_hub);
        await first.StartAsync("same", new Receiver(), CancellationToken.None);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => new InProcessClusterBus(_hub).StartAsync("same", new Receiver(), CancellationToken.None));
        Assert.Contains("NodeName must be unique", error.Message, StringComparison.Ordinal);
        await first.StopAsync(CancellationToken.None);
    }
}
