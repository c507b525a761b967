using System.Text;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>Events between several clients over real TCP loopback, at the protocol level.</summary>
public class EventsTests
{
    private static Message Subscribe(string correlationId, params string[] names) =>
        new() { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = names, CorrelationId = correlationId };

    private static Message Unsubscribe(string correlationId, params string[] names) =>
        new() { Topic = Topic.Event, Action = (int)EventAction.Unsubscribe, Names = names, CorrelationId = correlationId };

    private static Message Emit(string name, string json) =>
        new() { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = name, Data = Encoding.UTF8.GetBytes(json) };

    private static async Task AckAsync(RawClient client, string correlationId, EventAction action = EventAction.Subscribe)
    {
        var ack = await client.ReceiveAsync();
        Assert.True(ack.IsAck, ack.ToString());
        Assert.Equal((Topic.Event, (int)action, correlationId), (ack.Topic, ack.Action, ack.CorrelationId));
    }

    [Fact]
    public async Task An_emit_reaches_every_subscriber_but_never_the_sender()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        await using var c = await RawClient.LoginAsync(node);
        foreach (var client in new[] { a, b, c })
        {
            await client.SendAsync(Subscribe("1", "chat"));
            await AckAsync(client, "1");
        }
        await a.SendAsync(Emit("chat", "{\"text\":\"hi\"}"));
        foreach (var receiver in new[] { b, c })
        {
            var m = await receiver.ReceiveAsync();
            Assert.Equal((Topic.Event, (int)EventAction.Emit, "chat", "{\"text\":\"hi\"}"), (m.Topic, m.Action, m.Name, Encoding.UTF8.GetString(m.Data!.Value.Span)));
        }
        // a's next message is the pong, not its own event.
        await a.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        var pong = await a.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Pong), (pong.Topic, pong.Action));
    }

    [Fact]
    public async Task Bulk_subscribe_is_acked_once_with_per_name_errors_before_the_ack()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await a.SendAsync(Subscribe("1", "x", "y"));
        await AckAsync(a, "1");
        await a.SendAsync(Subscribe("2", "y", "z"));
        var error = await a.ReceiveAsync();
        Assert.Equal((Topic.Event, (int)EventAction.MultipleSubscriptions, "y", (int?)EventAction.Subscribe, true), (error.Topic, error.Action, error.Name, error.OriginalAction, error.IsError));
        await AckAsync(a, "2");
        await a.SendAsync(Unsubscribe("3", "x", "nope"));
        var notSubscribed = await a.ReceiveAsync();
        Assert.Equal(((int)EventAction.NotSubscribed, "nope"), (notSubscribed.Action, notSubscribed.Name));
        await AckAsync(a, "3", EventAction.Unsubscribe);
        Assert.Empty(node.Engine.Events.Registry.Get("x"));
        Assert.Single(node.Engine.Events.Registry.Get("y"));
        Assert.Single(node.Engine.Events.Registry.Get("z"));
    }

    [Fact]
    public async Task After_unsubscribe_no_more_events_arrive()
    {
        await using var node = await TestNode.StartAsync();
        await using var pub = await RawClient.LoginAsync(node);
        await using var sub = await RawClient.LoginAsync(node);
        await sub.SendAsync(Subscribe("1", "a", "b"));
        await AckAsync(sub, "1");
        await sub.SendAsync(Unsubscribe("2", "a"));
        await AckAsync(sub, "2", EventAction.Unsubscribe);
        await pub.SendAsync(Emit("a", "1"), Emit("b", "2"));
        var m = await sub.ReceiveAsync();
        Assert.Equal(("b", "2"), (m.Name, Encoding.UTF8.GetString(m.Data!.Value.Span)));
    }

    [Fact]
    public async Task Payloads_are_routed_without_parsing_and_absent_data_stays_absent()
    {
        await using var node = await TestNode.StartAsync();
        await using var pub = await RawClient.LoginAsync(node);
        await using var sub = await RawClient.LoginAsync(node);
        await sub.SendAsync(Subscribe("1", "raw"));
        await AckAsync(sub, "1");
        await pub.SendAsync(Emit("raw", "not json at all {"), new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "raw" });
        Assert.Equal("not json at all {", Encoding.UTF8.GetString((await sub.ReceiveAsync()).Data!.Value.Span));
        Assert.Null((await sub.ReceiveAsync()).Data);
    }

    [Fact]
    public async Task Emit_without_a_name_and_subscribe_without_names_get_errors()
    {
        await using var node = await TestNode.StartAsync();
        await using var a = await RawClient.LoginAsync(node);
        await a.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Data = "1"u8.ToArray() });
        Assert.Equal((int)EventAction.InvalidMessageData, (await a.ReceiveAsync()).Action);
        await a.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, CorrelationId = "9" });
        var error = await a.ReceiveAsync();
        Assert.Equal(((int)EventAction.InvalidMessageData, "9"), (error.Action, error.CorrelationId));
    }

    [Fact]
    public async Task A_disconnected_subscriber_is_removed_from_the_registry()
    {
        await using var node = await TestNode.StartAsync();
        var sub = await RawClient.LoginAsync(node);
        await sub.SendAsync(Subscribe("1", "gone"));
        await AckAsync(sub, "1");
        Assert.Single(node.Engine.Events.Registry.Get("gone"));
        await sub.DisposeAsync();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (node.Engine.Events.Registry.Get("gone").Length > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        Assert.Empty(node.Engine.Events.Registry.Get("gone"));
    }

    [Fact]
    public async Task A_slow_consumer_is_disconnected_while_the_others_receive_every_event()
    {
        const int Events = 20_000;
        await using var node = await TestNode.StartAsync(o => o.OutboundQueueCapacity = 2048);
        await using var pub = await RawClient.LoginAsync(node);
        await using var fast = await RawClient.LoginAsync(node);
        var slow = await RawClient.LoginAsync(node);
        await fast.SendAsync(Subscribe("1", "feed"));
        await AckAsync(fast, "1");
        await slow.SendAsync(Subscribe("1", "feed"));
        await AckAsync(slow, "1");
        var slowSession = node.Engine.Sessions.MaxBy(s => s.Id)!; // the last to log in
        slow.StopReading();
        var payload = new string('x', 1000);
        var delivered = 0;
        var received = Task.Run(async () =>
        {
            for (var i = 0; i < Events; i++)
            {
                var m = await fast.ReceiveAsync(TimeSpan.FromSeconds(30));
                Assert.Equal("feed", m.Name);
                Assert.StartsWith($"\"{i}:", Encoding.UTF8.GetString(m.Data!.Value.Span), StringComparison.Ordinal);
                Volatile.Write(ref delivered, i + 1);
            }
        });
        for (var i = 0; i < Events; i += 100)
        {
            // The fast subscriber keeps up: the publisher never runs more than 1000 events ahead of it.
            while (i - Volatile.Read(ref delivered) > 1000 && !received.IsCompleted)
            {
                await Task.Delay(1);
            }
            await pub.SendAsync(Enumerable.Range(i, 100).Select(n => Emit("feed", $"\"{n}:{payload}\"")).ToArray());
        }
        await received;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (node.ConnectionCount > 2 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        Assert.Equal(2, node.ConnectionCount);
        await slowSession.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(StateMesh.Diagnostics.DisconnectReason.SlowConsumer, slowSession.CloseReason);
        await slow.DisposeAsync();
    }
}
