using System.Text;
using System.Text.Json.Nodes;
using StateMesh.Client;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

/// <summary>Defects a review found, kept found.</summary>
public class ReviewRegressionTests
{
    private static Task<StateMeshClient> ConnectAsync(StateMeshNode node) => StateMeshClient.ConnectAsync(node.TcpAddress!.ToString());

    [Fact]
    public async Task Pipelined_writes_that_lose_a_conflict_still_converge_with_the_node()
    {
        await using var node = await TestNode.StartAsync();
        await using var ana = await ConnectAsync(node);
        await using var bob = await ConnectAsync(node);
        await using var a = await ana.Records.GetAsync<JsonObject>("pipelined");
        await using var b = await bob.Records.GetAsync<JsonObject>("pipelined");
        // Bob's v1 lands first on the node; Ana sends v1 and v2 before she has seen it.
        Assert.True((await b.SetWithAckAsync(new JsonObject { ["by"] = "bob" })).Succeeded);
        await a.SetAsync(new JsonObject { ["by"] = "ana1" });
        await a.SetAsync(new JsonObject { ["by"] = "ana2" });
        await ClientEventsTests.WaitUntilAsync(() => a.Version == b.Version && a.Data!.ToJsonString() == b.Data!.ToJsonString());
        var head = await ana.Records.HeadAsync("pipelined");
        var snapshot = await ana.Records.SnapshotAsync<JsonObject>("pipelined");
        Assert.Equal((head, snapshot!.Value.ToJsonString()), (a.Version, a.Data!.ToJsonString()));
    }

    [Fact]
    public async Task A_patch_nested_too_deeply_is_an_error_and_the_connection_stays()
    {
        await using var node = await TestNode.StartAsync();
        await using var raw = await RawClient.LoginAsync(node);
        await raw.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.CreateAndUpdate, Name = "deep", Version = -1, Data = "{}"u8.ToArray() });
        var path = string.Join(".", Enumerable.Range(0, 40).Select(i => "p" + i));
        var value = string.Concat(Enumerable.Repeat("[", 40)) + "1" + string.Concat(Enumerable.Repeat("]", 40));
        await raw.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = "deep", Version = 2, Path = path, Data = Encoding.UTF8.GetBytes(value) });
        var error = await raw.ReceiveAsync();
        Assert.Equal((int)RecordAction.InvalidMessageData, error.Action);
        await raw.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Head, Name = "deep" });
        Assert.Equal(1, (await raw.ReceiveAsync()).Version);
    }

    private sealed class SlowDeleteStorage : StateMesh.Storage.IRecordStorage
    {
        private readonly StateMesh.Storage.MemoryRecordStorage _inner = new();

        public ValueTask<StateMesh.Storage.RecordState?> GetAsync(string name, CancellationToken cancellationToken) => _inner.GetAsync(name, cancellationToken);

        public ValueTask SetAsync(string name, StateMesh.Storage.RecordState state, CancellationToken cancellationToken) => _inner.SetAsync(name, state, cancellationToken);

        public async ValueTask DeleteAsync(string name, CancellationToken cancellationToken)
        {
            await Task.Delay(300, cancellationToken);
            await _inner.DeleteAsync(name, cancellationToken);
        }
    }

    [Fact]
    public async Task A_read_during_a_slow_delete_never_brings_the_record_back()
    {
        await using var node = await TestNode.StartAsync(storage: new SlowDeleteStorage());
        await using var a = await RawClient.LoginAsync(node);
        await using var b = await RawClient.LoginAsync(node);
        await a.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.CreateAndUpdate, Name = "gone", Version = -1, Data = "{\"x\":1}"u8.ToArray(), CorrelationId = "1", IsWriteAck = true });
        await a.ReceiveAsync();
        await a.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Delete, Name = "gone" });
        // Reads while the deletion is on its way to storage.
        for (var i = 0; i < 5; i++)
        {
            await b.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Head, Name = "gone" });
            await b.ReceiveAsync();
        }
        Assert.Equal((int)RecordAction.DeleteSuccess, (await a.ReceiveAsync()).Action);
        await b.SendAsync(new Message { Topic = Topic.Record, Action = (int)RecordAction.Head, Name = "gone" });
        Assert.Equal(-1, (await b.ReceiveAsync()).Version);
    }
}
