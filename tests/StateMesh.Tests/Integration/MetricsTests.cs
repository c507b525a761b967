using System.Diagnostics.Metrics;
using System.Text;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

public class MetricsTests
{
    /// <summary>Collects one node's measurements (other nodes in parallel tests use the same meter name).</summary>
    private sealed class NodeMeasurements : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly List<(string Instrument, long Value, Dictionary<string, object?> Tags)> _values = [];

        public NodeMeasurements(StateMeshNode node)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument.Meter, node.Engine.Metrics.Meter))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            {
                var dict = new Dictionary<string, object?>();
                foreach (var tag in tags)
                {
                    dict[tag.Key] = tag.Value;
                }
                lock (_values)
                {
                    _values.Add((instrument.Name, value, dict));
                }
            });
            _listener.Start();
        }

        public long Sum(string instrument, string? tag = null, string? tagValue = null)
        {
            lock (_values)
            {
                return _values.Where(v => v.Instrument == instrument && (tag is null || Equals(v.Tags.GetValueOrDefault(tag), tagValue))).Sum(v => v.Value);
            }
        }

        public void Dispose() => _listener.Dispose();
    }

    [Fact]
    public async Task Connections_messages_errors_and_disconnect_reasons_are_counted()
    {
        await using var node = await TestNode.StartAsync(o => o.MaxMessageSize = 4096);
        using var measurements = new NodeMeasurements(node);
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        Assert.Equal(2, measurements.Sum("statemesh.connections"));

        await b.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = ["m"], CorrelationId = "1" });
        await b.ReceiveAsync();
        await a.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "m", Data = Encoding.UTF8.GetBytes("1") });
        await b.ReceiveAsync();
        // In: 2 challenges, 2 logins, a subscribe, an emit. Out: 2 accepts, 2 login answers, an ack, the event.
        Assert.Equal(6, measurements.Sum("statemesh.messages.received"));
        await Client.ClientEventsTests.WaitUntilAsync(() => measurements.Sum("statemesh.messages.sent") == 6);

        await a.SendAsync(new Message { Topic = Topic.Event, Action = 77 });
        await a.ReceiveAsync();
        Assert.Equal(1, measurements.Sum("statemesh.errors", "action", nameof(ParserAction.UnknownAction)));

        await a.SendRawAsync([0, 1, 0, 0]); // 64 KiB announced, over the limit
        await a.Closed.WaitAsync(TimeSpan.FromSeconds(10));
        await Client.ClientEventsTests.WaitUntilAsync(() => measurements.Sum("statemesh.connections") == 1);
        Assert.Equal(1, measurements.Sum("statemesh.disconnects", "reason", "MessageTooLarge"));
    }
}
