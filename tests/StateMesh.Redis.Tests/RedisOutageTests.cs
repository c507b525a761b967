using System.Text;
using StateMesh.Client;
using StateMesh.Protocol;
using StateMesh.Redis.Tests.Support;
using StateMesh.Storage;
using StateMesh.Tests.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Redis.Tests;

/// <summary>Redis goes away under a running cluster and comes back empty: every node stays up and recovers.</summary>
public sealed class RedisOutageTests
{
    private static Message Write(string name, int version, string data, string cid) => new()
    {
        Topic = Topic.Record, Action = (int)RecordAction.CreateAndUpdate, Name = name, Version = version,
        Data = Encoding.UTF8.GetBytes(data), IsWriteAck = true, CorrelationId = cid,
    };

    private static async Task EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("the cluster did not recover in time");
            }
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task Nodes_stay_up_through_a_Redis_restart_that_loses_its_data_and_work_across_nodes_again_after_it()
    {
        await using var redis = new RedisServer();
        await redis.InitializeAsync();
        var storage = new MemoryRecordStorage();
        var options = new RedisClusterOptions { Configuration = redis.Configuration + ",connectTimeout=1000,syncTimeout=2000,asyncTimeout=2000" };
        var busA = new RedisClusterBus(options);
        var busB = new RedisClusterBus(options);
        await using var a = await TestNode.StartAsync(storage: storage, clusterBus: busA, store: new RedisRecordStore(busA, options), registry: new RedisClusterRegistry(busA, options));
        await using var b = await TestNode.StartAsync(storage: storage, clusterBus: busB, store: new RedisRecordStore(busB, options), registry: new RedisClusterRegistry(busB, options));
        await using var writer = await RawClient.LoginAsync(a);
        await using var local = await StateMeshClient.ConnectAsync(a.TcpAddress!.ToString(), new { username = "local" });
        await using var emitter = await StateMeshClient.ConnectAsync(a.TcpAddress!.ToString(), new { username = "emitter" });
        await using var far = await StateMeshClient.ConnectAsync(b.TcpAddress!.ToString(), new { username = "far" });

        // Acknowledged writes before the outage.
        for (var v = 1; v <= 5; v++)
        {
            await writer.SendAsync(Write("outage/doc", v, $"{{\"v\":{v}}}", "w" + v));
            Assert.Equal((int)RecordAction.WriteAcknowledgement, (await writer.ReceiveAsync()).Action);
        }
        await using (await far.Rpc.ProvideAsync<string, string>("far/echo", (x, ct) => Task.FromResult("far " + x)))
        {
            Assert.Equal("far 1", await emitter.Rpc.MakeAsync<string, string>("far/echo", "1"));
        }
        // A provider that stays through the outage: Redis forgets it, its node registers it again.
        await using var kept = await far.Rpc.ProvideAsync<string, string>("far/kept", (x, ct) => Task.FromResult("kept " + x));
        Assert.Equal("kept 0", await emitter.Rpc.MakeAsync<string, string>("far/kept", "0"));
        var localEvents = new List<string>();
        using var localSub = await local.Events.SubscribeAsync<string>("outage/local", e => { lock (localEvents) { localEvents.Add(e); } });

        await redis.StopAsync();

        // Local clients keep working where no Redis is needed...
        await emitter.Events.PublishAsync("outage/local", "during");
        await ClientEventsTests.WaitUntilAsync(() => { lock (localEvents) { return localEvents.Contains("during"); } });
        // ...and get a clear error where it is needed, on a connection that goes on.
        await writer.SendAsync(Write("outage/doc", 6, "{\"v\":6}", "w6"));
        var refused = await writer.ReceiveAsync(TimeSpan.FromSeconds(30));
        // The record store (Redis) does not answer in time (CACHE_RETRIEVAL_TIMEOUT), or fails: either way a stated error.
        Assert.Contains((RecordAction)refused.Action, new[] { RecordAction.CacheRetrievalTimeout, RecordAction.RecordLoadError, RecordAction.RecordUpdateError });
        Assert.True(refused.IsError);
        Assert.True(a.IsRunning && b.IsRunning);

        await redis.StartAgainAsync(); // empty

        // Writes work again (the record comes back from storage at the version last acknowledged).
        var next = 6;
        await EventuallyAsync(async () =>
        {
            await writer.SendAsync(Write("outage/doc", next, $"{{\"v\":{next}}}", "again" + next));
            var answer = await writer.ReceiveAsync(TimeSpan.FromSeconds(30));
            return answer.Action == (int)RecordAction.WriteAcknowledgement;
        }, TimeSpan.FromSeconds(30));
        // Every node shows the same record: nothing acknowledged was lost.
        await using (var readerB = await RawClient.LoginAsync(b))
        {
            await readerB.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Read, Name = "outage/doc" });
            var read = await readerB.ReceiveAsync();
            Assert.Equal((6, "{\"v\":6}"), (read.Version, Encoding.UTF8.GetString(read.Data!.Value.Span)));
        }
        // Events cross nodes again.
        var farEvents = new List<string>();
        using var farSub = await far.Events.SubscribeAsync<string>("outage/far", e => { lock (farEvents) { farEvents.Add(e); } });
        await EventuallyAsync(async () =>
        {
            await emitter.Events.PublishAsync("outage/far", "after");
            await Task.Delay(100);
            lock (farEvents)
            {
                return farEvents.Count > 0;
            }
        }, TimeSpan.FromSeconds(20));
        // RPC across nodes again: the provider on b is registered again without a restart of b.
        await using var provided = await far.Rpc.ProvideAsync<string, string>("far/echo2", (x, ct) => Task.FromResult("far " + x));
        Assert.Equal("far 2", await emitter.Rpc.MakeAsync<string, string>("far/echo2", "2"));
        await EventuallyAsync(async () =>
        {
            try
            {
                return await emitter.Rpc.MakeAsync<string, string>("far/kept", "1") == "kept 1";
            }
            catch (RpcException e) when (e.Code == RpcErrorCode.NoProvider)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(20));
        // Presence across nodes again.
        await EventuallyAsync(async () => (await emitter.Presence.QueryAllAsync()).Contains("far"), TimeSpan.FromSeconds(20));
    }
}
