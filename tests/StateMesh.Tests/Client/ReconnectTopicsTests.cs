using System.Text.Json.Nodes;
using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

/// <summary>After the node restarts, presence subscriptions and listen patterns come back on their own.</summary>
public class ReconnectTopicsTests
{
    private static Task<StateMeshClient> ConnectAsync(StateMeshNode node, string user) =>
        StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = user },
            new StateMeshClientOptions { ReconnectIntervalIncrement = TimeSpan.FromMilliseconds(200), MaxReconnectAttempts = 50 });

    [Fact]
    public async Task Listen_patterns_and_presence_subscriptions_are_restored_after_a_node_restart()
    {
        var first = await TestNode.StartAsync();
        var port = first.TcpEndPoint!.Port;
        await using var provider = await ConnectAsync(first, "provider");
        var offers = new List<ListenOffer>();
        using var listening = provider.Records.Listen("^restored/").Subscribe(o => { lock (offers) { offers.Add(o); } o.Accept(); });
        var changes = new List<PresenceChange>();
        using var presence = provider.Presence.Observe().Subscribe(c => { lock (changes) { changes.Add(c); } });
        await ClientEventsTests.WaitUntilAsync(() => first.Engine.Sessions.Any(s => s.ListenPatterns.Count == 1 && s.PresenceSubscribedToAll));

        await first.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => provider.ConnectionState != ConnectionState.Open);
        await using var second = await TestNode.StartAsync(o => o.Tcp.Port = port);
        await ClientEventsTests.WaitUntilAsync(() => second.Engine.Sessions.Any(s => s.ListenPatterns.Count == 1 && s.PresenceSubscribedToAll), TimeSpan.FromSeconds(30));

        await using var subscriber = await ConnectAsync(second, "late");
        await using var record = await subscriber.Records.GetAsync<JsonObject>("restored/1");
        await ClientEventsTests.WaitUntilAsync(() => record.HasProvider);
        await ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Contains(new PresenceChange("late", true)); } });
        lock (offers)
        {
            Assert.Equal("restored/1", Assert.Single(offers).Name);
        }
    }
}
