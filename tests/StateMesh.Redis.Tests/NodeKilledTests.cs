using StateMesh.Client;
using StateMesh.Redis.Tests.Support;
using StateMesh.Tests.Client;

namespace StateMesh.Redis.Tests;

/// <summary>Three StateMesh.Server processes on Redis and PostgreSQL; one is killed with kill -9.</summary>
[Collection(ClusterConformanceCollection.Name)]
public sealed class NodeKilledTests(ClusterOverRedisFixture cluster) : IClassFixture<ClusterOverRedisFixture>
{
    private static Task<StateMeshClient> ConnectAsync(int port, string user) =>
        StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{port}", new { username = user }, new StateMeshClientOptions { MaxReconnectAttempts = 0 });

    [Fact]
    public async Task A_killed_node_is_gone_within_two_seconds_and_a_redundant_provider_answers_throughout()
    {
        var nodes = cluster.Nodes;
        await using var caller = await ConnectAsync(nodes[0].Port, "caller");
        await using var steady = await ConnectAsync(nodes[1].Port, "steady");
        var doomed = await ConnectAsync(nodes[2].Port, "doomed");
        await using var s = await steady.Rpc.ProvideAsync<string, string>("killed/svc", (x, ct) => Task.FromResult("node2"));
        await doomed.Rpc.ProvideAsync<string, string>("killed/svc", (x, ct) => Task.FromResult("node3"));
        var left = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var watch = caller.Presence.Observe("doomed").Subscribe(c => { if (!c.IsOnline) { left.TrySetResult(); } });
        await ClientEventsTests.WaitUntilAsync(() => caller.Presence.QueryAsync(["doomed"]).Result["doomed"]);
        var answers = new HashSet<string>();
        for (var i = 0; i < 40 && answers.Count < 2; i++)
        {
            answers.Add(await caller.Rpc.MakeAsync<string, string>("killed/svc", "x"));
        }
        Assert.Equal(["node2", "node3"], answers.Order());

        nodes[2].Signal("KILL");
        var killed = DateTime.UtcNow;
        // Every call succeeds throughout: those sent to the dead node before it is noticed move on to node 2.
        var calls = new List<string>();
        while (!left.Task.IsCompleted && DateTime.UtcNow - killed < TimeSpan.FromSeconds(10))
        {
            calls.Add(await caller.Rpc.MakeAsync<string, string>("killed/svc", "y"));
        }
        // The others notice within the membership timeout: a heartbeat every 250 ms, gone after 1.5 s.
        await left.Task.WaitAsync(TimeSpan.FromSeconds(3));
        Assert.True(DateTime.UtcNow - killed < TimeSpan.FromSeconds(3), $"the leave came {(DateTime.UtcNow - killed).TotalSeconds:F1} s after kill -9");
        Assert.All(calls, answer => Assert.Equal("node2", answer));
        Assert.False((await caller.Presence.QueryAsync(["doomed"]))["doomed"]);
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("node2", await caller.Rpc.MakeAsync<string, string>("killed/svc", "z"));
        }
        await doomed.DisposeAsync();
    }
}
