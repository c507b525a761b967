using System.Collections.Concurrent;
using System.Text;
using StateMesh.Protocol;
using StateMesh.Redis.Tests.Support;
using StateMesh.Tests.Support;

namespace StateMesh.Redis.Tests;

/// <summary>
/// No version of a record is ever shown with two different datas in a cluster: not when a writing node is killed with
/// kill -9, and not when Redis restarts empty (the versions it held are lost; PostgreSQL has every shown one).
/// </summary>
[Collection(ClusterConformanceCollection.Name)]
public sealed class ClusterVersionsTests(ClusterOverRedisFixture cluster) : IClassFixture<ClusterOverRedisFixture>
{
    private const string Name = "versions/1";

    private static Message Write(string data, string cid) => new()
    {
        Topic = Topic.Record, Action = (int)RecordAction.CreateAndUpdate, Name = Name, Version = -1, CorrelationId = cid, IsWriteAck = true,
        Data = Encoding.UTF8.GetBytes(data),
    };

    /// <summary>Every (version, data) a client of the record sees, and how many updates it has seen.</summary>
    private sealed class Watcher
    {
        public ConcurrentDictionary<int, ConcurrentDictionary<string, byte>> Shown { get; } = new();

        public int Updates;

        public volatile bool Read;

        public int MaxVersion => Shown.Keys.DefaultIfEmpty(0).Max();

        public void Log(Message m)
        {
            if (m.Topic == Topic.Record && m.Action == (int)RecordAction.ReadResponse)
            {
                Read = true;
            }
            if (m.Topic == Topic.Record && m.Action is (int)RecordAction.ReadResponse or (int)RecordAction.Update && m.Version is { } v && v > 0 && m.Data is { } data)
            {
                Shown.GetOrAdd(v, _ => new()).TryAdd(Encoding.UTF8.GetString(data.Span), 0);
                if (m.Action == (int)RecordAction.Update)
                {
                    Interlocked.Increment(ref Updates);
                }
            }
        }

        /// <summary>Reads the connection until it closes or the test ends.</summary>
        public Task RunAsync(RawClient client, CancellationToken stop) => Task.Run(async () =>
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    Log(await client.ReceiveAsync(TimeSpan.FromSeconds(60)));
                }
            }
            catch (Exception ex) when (ex is IOException or TimeoutException or OperationCanceledException or System.Net.Sockets.SocketException)
            {
                // The node is gone, or the test is over.
            }
        }, CancellationToken.None);
    }

    /// <summary>Writes the next version over and over until stopped or the connection ends; errors (Redis away) are fine.</summary>
    private static Task WriteLoopAsync(RawClient writer, string who, CancellationToken stop) => Task.Run(async () =>
    {
        try
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                await writer.SendAsync(Write($"{{\"by\":\"{who}\",\"i\":{i}}}", $"{who}-{i}"));
                if (i % 10 == 9)
                {
                    await Task.Delay(2);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            // The node was killed.
        }
    }, CancellationToken.None);

    private static async Task DrainAsync(RawClient client, CancellationToken stop)
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await client.ReceiveAsync(TimeSpan.FromSeconds(60));
            }
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            // done
        }
    }

    private static async Task WaitForAsync(Func<bool> condition, string what, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("timed out waiting until " + what);
            }
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task No_version_is_shown_with_two_datas_across_kill_9_of_a_writing_node_and_a_Redis_restart_that_loses_its_data()
    {
        var nodes = cluster.Nodes;
        using var stop = new CancellationTokenSource();
        var watchers = new[] { new Watcher(), new Watcher() };
        await using var w1 = await RawClient.LoginAsync(nodes[0].Port);
        await using var w2 = await RawClient.LoginAsync(nodes[1].Port);
        var reading = new[] { watchers[0].RunAsync(w1, stop.Token), watchers[1].RunAsync(w2, stop.Token) };
        await w1.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscribeCreateAndRead, Names = [Name], CorrelationId = "s1" });
        await w2.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscribeCreateAndRead, Names = [Name], CorrelationId = "s2" });
        await WaitForAsync(() => watchers.All(w => w.Read), "both subscribers have read the record", TimeSpan.FromSeconds(10));

        // Two writers on two nodes race for every version; the one on node 3 is killed mid-stream.
        var doomed = await RawClient.LoginAsync(nodes[2].Port);
        await using var steady = await RawClient.LoginAsync(nodes[1].Port);
        var doomedDrain = DrainAsync(doomed, stop.Token);
        var steadyDrain = DrainAsync(steady, stop.Token);
        var doomedWrites = WriteLoopAsync(doomed, "node3", stop.Token);
        var steadyWrites = WriteLoopAsync(steady, "node2", stop.Token);
        await WaitForAsync(() => watchers[0].Updates >= 200, "200 updates before the kill", TimeSpan.FromSeconds(30));
        nodes[2].Signal("KILL");
        await doomedWrites.WaitAsync(TimeSpan.FromSeconds(30));
        var beforeOutage = watchers[0].Updates;
        await WaitForAsync(() => watchers[0].Updates >= beforeOutage + 100, "100 updates after the kill", TimeSpan.FromSeconds(30));

        // Redis goes and comes back empty, under the writes of node 2.
        var maxBeforeRestart = watchers.Max(w => w.MaxVersion);
        await cluster.Redis.KillAsync();
        await Task.Delay(500);
        await cluster.Redis.StartAgainAsync(keepData: false);
        var afterRestart = watchers[0].Updates;
        await WaitForAsync(() => watchers[0].Updates >= afterRestart + 100 && watchers[1].Updates > 0, "100 updates once Redis is back", TimeSpan.FromSeconds(60));
        await stop.CancelAsync();
        await steadyWrites.WaitAsync(TimeSpan.FromSeconds(10));

        // Whatever each node shows now is a version already seen with the same data, and newer than anything before the restart.
        foreach (var (port, i) in new[] { (nodes[0].Port, 0), (nodes[1].Port, 1) })
        {
            await using var reader = await RawClient.LoginAsync(port);
            await reader.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Read, Name = Name, CorrelationId = "r" });
            var read = await reader.ReceiveAsync(TimeSpan.FromSeconds(10));
            Assert.Equal((int)RecordAction.ReadResponse, read.Action);
            watchers[i].Log(read);
            Assert.True(read.Version > maxBeforeRestart, $"node{i + 1} reads v{read.Version} after the restart; v{maxBeforeRestart} was shown before it");
        }
        var shown = new Dictionary<int, HashSet<string>>();
        foreach (var (version, datas) in watchers.SelectMany(w => w.Shown))
        {
            if (!shown.TryGetValue(version, out var all))
            {
                shown[version] = all = [];
            }
            all.UnionWith(datas.Keys);
        }
        var reused = shown.Where(kv => kv.Value.Count > 1).Select(kv => $"v{kv.Key}: {string.Join(" | ", kv.Value)}").ToList();
        Assert.True(reused.Count == 0, $"{reused.Count} versions were shown with two datas, e.g. {string.Join("; ", reused.Take(3))}");
        Assert.True(shown.Count >= 400, $"only {shown.Count} versions were seen");
        await doomed.DisposeAsync();
        await Task.WhenAll(doomedDrain, steadyDrain).WaitAsync(TimeSpan.FromSeconds(10));
    }
}
