using System.Reactive.Linq;
using System.Text;
using StateMesh.Client;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

public class PresenceTests
{
    private static Task<StateMeshClient> LoginAsync(StateMeshNode node, string? user) =>
        StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), user is null ? null : new { username = user });

    [Fact]
    public async Task Finished_queries_leave_nothing_behind_in_the_client()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await LoginAsync(node, "asker");
        await using var other = await LoginAsync(node, "ana");
        for (var round = 0; round < 50; round++)
        {
            var all = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => client.Presence.QueryAllAsync()));
            Assert.All(all, users => Assert.Equal(["ana"], users));
            Assert.True((await client.Presence.QueryAsync(["ana"]))["ana"]);
            Assert.Equal(2, await client.Presence.CountAsync());
        }
        Assert.Equal(0, ((PresenceClient)client.Presence).PendingQueries);
    }

    [Fact]
    public async Task Two_connections_of_one_user_join_once_and_leave_when_the_last_closes()
    {
        await using var node = await TestNode.StartAsync();
        await using var watcher = await LoginAsync(node, "watcher");
        var changes = new List<PresenceChange>();
        using var sub = watcher.Presence.Observe().Subscribe(c => { lock (changes) { changes.Add(c); } });
        // The subscription is in place once a query (sent after it) is answered.
        await watcher.Presence.CountAsync();
        var first = await LoginAsync(node, "ana");
        var second = await LoginAsync(node, "ana");
        await ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Count >= 1; } });
        await first.DisposeAsync();
        Assert.True((await watcher.Presence.QueryAsync(["ana"]))["ana"]);
        await second.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Count >= 2; } });
        Assert.False((await watcher.Presence.QueryAsync(["ana"]))["ana"]);
        lock (changes)
        {
            Assert.Equal([new PresenceChange("ana", true), new PresenceChange("ana", false)], changes);
        }
    }

    [Fact]
    public async Task Query_all_lists_others_and_anonymous_users_and_the_node_itself_do_not_count()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await LoginAsync(node, "ana");
        await using var bob = await LoginAsync(node, "bob");
        await using var anonymous = await LoginAsync(node, null);
        Assert.Equal(["bob"], await ana.Presence.QueryAllAsync());
        Assert.Equal(["ana", "bob"], (await anonymous.Presence.QueryAllAsync()).Order());
        var answer = await ana.Presence.QueryAsync(["bob", "carol"]);
        Assert.Equal((true, false), (answer["bob"], answer["carol"]));
        Assert.Equal(2, await ana.Presence.CountAsync());
    }

    [Fact]
    public async Task Per_user_subscriptions_hear_only_their_users()
    {
        await using var node = await TestNode.StartAsync();
        await using var watcher = await LoginAsync(node, "watcher");
        var changes = new List<PresenceChange>();
        using var sub = watcher.Presence.Observe("bob").Subscribe(c => { lock (changes) { changes.Add(c); } });
        await watcher.Presence.CountAsync();
        await using (await LoginAsync(node, "ana"))
        {
            await using (await LoginAsync(node, "bob"))
            {
                await ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Count == 1; } });
            }
        }
        await ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Count == 2; } });
        lock (changes)
        {
            Assert.Equal([new PresenceChange("bob", true), new PresenceChange("bob", false)], changes);
        }
    }

    [Fact]
    public async Task Protocol_acks_errors_and_the_query_shapes_match_deepstream()
    {
        await using var node = await TestNode.StartAsync();
        await using var raw = await RawClient.LoginAsync(node, "{\"username\":\"raw\"}");
        await raw.SendAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.SubscribeAll });
        var ack = await raw.ReceiveAsync();
        Assert.Equal(((int)PresenceAction.SubscribeAll, true), (ack.Action, ack.IsAck));
        await raw.SendAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.SubscribeAll });
        Assert.Equal((int)PresenceAction.MultipleSubscriptions, (await raw.ReceiveAsync()).Action);
        await raw.ReceiveAsync(); // its ack
        await raw.SendAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.Unsubscribe, Names = ["nobody"], CorrelationId = "1" });
        var notSubscribed = await raw.ReceiveAsync();
        Assert.Equal(((int)PresenceAction.NotSubscribed, "nobody"), (notSubscribed.Action, notSubscribed.Name));
        Assert.Equal("1", (await raw.ReceiveAsync()).CorrelationId);
        await raw.SendAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.Query, Names = ["raw", "x"], CorrelationId = "q" });
        var response = await raw.ReceiveAsync();
        Assert.Equal(((int)PresenceAction.QueryResponse, "q", "{\"raw\":true,\"x\":false}"), (response.Action, response.CorrelationId, Encoding.UTF8.GetString(response.Data!.Value.Span)));
        await raw.SendAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.Query, CorrelationId = "bad" });
        Assert.Equal((int)PresenceAction.InvalidPresenceUsers, (await raw.ReceiveAsync()).Action);
    }
}
