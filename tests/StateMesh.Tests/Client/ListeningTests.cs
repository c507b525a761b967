using System.Reactive.Linq;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using StateMesh.Client;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

public class ListeningTests
{
    /// <summary>
    /// A node whose listeners have time to answer on a loaded machine (the default 500 ms is deepstream's, and a busy
    /// test host can miss it); tests of the timeout itself set their own.
    /// </summary>
    private static Task<StateMeshNode> StartNodeAsync() => TestNode.StartAsync(o => o.Listen.ResponseTimeout = TimeSpan.FromSeconds(5));

    private static Task<StateMeshClient> ConnectAsync(StateMeshNode node) => StateMeshClient.ConnectAsync(node.TcpAddress!.ToString());

    /// <summary>Collects offers; answers each with <paramref name="accept"/> (or not at all when null).</summary>
    private sealed class Provider(bool? accept) : IDisposable
    {
        public List<ListenOffer> Offers { get; } = [];
        private IDisposable? _subscription;

        public Provider Listen(IObservable<ListenOffer> offers)
        {
            _subscription = offers.Subscribe(o =>
            {
                lock (Offers) { Offers.Add(o); }
                if (accept == true) { o.Accept(); }
                else if (accept == false) { o.Reject(); }
            });
            return this;
        }

        public int Count
        {
            get { lock (Offers) { return Offers.Count; } }
        }

        public void Dispose() => _subscription?.Dispose();
    }

    [Fact]
    public async Task A_record_subscriber_makes_a_listener_an_offer_and_the_provider_hears_when_the_last_one_leaves()
    {
        await using var node = await StartNodeAsync();
        await using var providerClient = await ConnectAsync(node);
        await using var subscriber = await ConnectAsync(node);
        using var provider = new Provider(accept: true).Listen(providerClient.Records.Listen("prices/.*"));
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Sessions.Any(s => s.ListenPatterns.Count == 1));
        var record = await subscriber.Records.GetAsync<JsonObject>("prices/eurusd");
        await ClientEventsTests.WaitUntilAsync(() => provider.Count == 1 && record.HasProvider);
        var offer = provider.Offers[0];
        Assert.Equal(("prices/.*", "prices/eurusd"), (offer.Pattern, offer.Name));
        Assert.False(offer.Removed.IsCancellationRequested);
        await using var second = await subscriber.Records.GetAsync<JsonObject>("misc/other");
        Assert.Equal(1, provider.Count); // no match, no offer
        await record.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => offer.Removed.IsCancellationRequested);
    }

    [Fact]
    public async Task A_reject_passes_the_offer_on_and_exactly_one_provider_is_accepted()
    {
        await using var node = await StartNodeAsync();
        await using var a = await ConnectAsync(node);
        await using var b = await ConnectAsync(node);
        await using var subscriber = await ConnectAsync(node);
        using var rejecting = new Provider(accept: false).Listen(a.Events.Listen("^news/"));
        using var accepting = new Provider(accept: true).Listen(b.Events.Listen("^news/"));
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Sessions.Count(s => s.ListenPatterns.Count == 1) == 2);
        using var sub = await subscriber.Events.SubscribeAsync<string>("news/sport", _ => { });
        await ClientEventsTests.WaitUntilAsync(() => accepting.Count == 1);
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Events.Listening.ProviderOf("news/sport") is not null);
        Assert.True(rejecting.Count <= 1);
        // A third listener arriving later is not offered a name that has its provider: offers due at LISTEN go out
        // before its ack, so nothing may precede the ack.
        await using var late = await RawClient.LoginAsync(node);
        await late.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Listen, Name = "^news/" });
        var ack = await late.ReceiveAsync();
        Assert.Equal(((int)EventAction.Listen, true), (ack.Action, ack.IsAck));
        // Control: a listener for a name that has no provider yet does get its offer before the ack.
        using var unprovided = await subscriber.Events.SubscribeAsync<string>("sport/tennis", _ => { });
        await using var eager = await RawClient.LoginAsync(node);
        await eager.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Listen, Name = "^sport/" });
        var offer = await eager.ReceiveAsync();
        Assert.Equal(((int)EventAction.SubscriptionForPatternFound, "sport/tennis"), (offer.Action, offer.Subscription));
    }

    [Fact]
    public async Task When_the_accepted_provider_disconnects_another_listener_takes_over()
    {
        await using var node = await StartNodeAsync();
        var first = await ConnectAsync(node);
        await using var second = await ConnectAsync(node);
        await using var subscriber = await ConnectAsync(node);
        var firstProvider = new Provider(accept: true).Listen(first.Records.Listen("^game/"));
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Sessions.Count(s => s.ListenPatterns.Count == 1) == 1);
        await using var record = await subscriber.Records.GetAsync<JsonObject>("game/42");
        await ClientEventsTests.WaitUntilAsync(() => firstProvider.Count == 1);
        await ClientEventsTests.WaitUntilAsync(() => record.HasProvider);
        using var secondProvider = new Provider(accept: true).Listen(second.Records.Listen("^game/"));
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Sessions.Count(s => s.ListenPatterns.Count == 1) == 2);
        Assert.Equal(0, secondProvider.Count);
        await first.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => secondProvider.Count == 1);
        await ClientEventsTests.WaitUntilAsync(() => record.HasProvider);
        var provider = node.Engine.Records.Listening.ProviderOf("game/42");
        Assert.NotNull(provider);
    }

    [Fact]
    public async Task A_bad_pattern_is_refused_and_a_listener_that_does_not_answer_is_skipped()
    {
        await using var node = await TestNode.StartAsync(o => o.Listen.ResponseTimeout = TimeSpan.FromMilliseconds(200));
        await using var raw = await RawClient.LoginAsync(node);
        await raw.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Listen, Name = "([" });
        var error = await raw.ReceiveAsync();
        Assert.Equal(((int)RecordAction.InvalidListenRegex, "(["), (error.Action, error.Name));
        await raw.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Listen, Name = "^slow/" });
        var ack = await raw.ReceiveAsync();
        Assert.Equal(((int)RecordAction.Listen, true, "^slow/"), (ack.Action, ack.IsAck, ack.Name));

        await using var answering = await ConnectAsync(node);
        using var provider = new Provider(accept: true).Listen(answering.Records.Listen("^slow/"));
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Sessions.Count(s => s.ListenPatterns.Count == 1) == 2);
        await using var subscriber = await ConnectAsync(node);
        await using var record = await subscriber.Records.GetAsync<JsonObject>("slow/1");
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Records.Listening.ProviderOf("slow/1") is not null, TimeSpan.FromSeconds(10));
        Assert.Equal(1, provider.Count);
    }

    [Fact]
    public async Task Names_turned_down_by_everyone_are_offered_again_at_the_rematch_after_the_cooldown()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        await using var node = await TestNode.StartAsync(o =>
        {
            o.Tcp.Enabled = false;
            o.HeartbeatInterval = TimeSpan.FromHours(1);
            o.UnauthenticatedTimeout = TimeSpan.FromHours(1);
            o.Listen.RematchInterval = TimeSpan.FromSeconds(30);
            o.Listen.MatchCooldown = TimeSpan.FromSeconds(45);
        }, time);
        await using var listener = await RawClient.LoginInProcessAsync(node);
        await using var subscriber = await RawClient.LoginInProcessAsync(node);
        await listener.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Listen, Name = "^t/" });
        await listener.ReceiveAsync();
        await subscriber.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = ["t/1"], CorrelationId = "1" });
        await subscriber.ReceiveAsync();
        var offer = await listener.ReceiveAsync();
        Assert.Equal(((int)EventAction.SubscriptionForPatternFound, "^t/", "t/1"), (offer.Action, offer.Name, offer.Subscription));
        await listener.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.ListenReject, Name = "^t/", Subscription = "t/1" });
        // First rematch at 30 s falls inside the 45 s cooldown; the one at 60 s offers again.
        await subscriber.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        await subscriber.ReceiveAsync(); // the reject has been processed by now (same node, in order per session is not enough: wait for it)
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Events.Listening.ProviderOf("t/1") is null);
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.False(listener.TryTakeNow(out _));
        time.Advance(TimeSpan.FromSeconds(30));
        var again = await listener.ReceiveAsync();
        Assert.Equal(((int)EventAction.SubscriptionForPatternFound, "t/1"), (again.Action, again.Subscription));
        await listener.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.ListenAccept, Name = "^t/", Subscription = "t/1" });
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Events.Listening.ProviderOf("t/1") is not null);
        // The last subscriber leaves: the provider hears it.
        await subscriber.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Unsubscribe, Names = ["t/1"], CorrelationId = "2" });
        var removed = await listener.ReceiveAsync();
        Assert.Equal(((int)EventAction.SubscriptionForPatternRemoved, "t/1"), (removed.Action, removed.Subscription));
    }

    [Fact]
    public async Task A_listener_that_turned_a_name_down_is_not_asked_again_when_another_listener_arrives()
    {
        await using var node = await StartNodeAsync();
        await using var a = await RawClient.LoginAsync(node);
        await using var subscriber = await RawClient.LoginAsync(node);
        await a.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Listen, Name = "^t/" });
        await a.ReceiveAsync();
        await subscriber.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = ["t/1"], CorrelationId = "1" });
        var offer = await a.ReceiveAsync();
        Assert.Equal(((int)EventAction.SubscriptionForPatternFound, "t/1"), (offer.Action, offer.Subscription));
        await a.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.ListenReject, Name = "^t/", Subscription = "t/1" });
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Events.Listening.ProviderOf("t/1") is null && !node.Engine.Events.Listening.IsSearching("t/1"));

        // A second listener arrives: the name is offered to it (before its ack), and not to the one that said no.
        await using var b = await RawClient.LoginAsync(node);
        await b.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Listen, Name = "^t/" });
        var toB = await b.ReceiveAsync();
        Assert.Equal(((int)EventAction.SubscriptionForPatternFound, "t/1"), (toB.Action, toB.Subscription));
        await b.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.ListenAccept, Name = "^t/", Subscription = "t/1" });
        await ClientEventsTests.WaitUntilAsync(() => node.Engine.Events.Listening.ProviderOf("t/1") is not null);
        // A ping's answer comes after anything the node sent A before it.
        await a.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        var next = await a.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Pong), (next.Topic, next.Action));
    }
}
