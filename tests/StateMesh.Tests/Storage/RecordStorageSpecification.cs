using System.Text;
using StateMesh.Storage;

namespace StateMesh.Tests.Storage;

/// <summary>What every <see cref="IRecordStorage"/> must do. Each implementation's tests inherit this class.</summary>
public abstract class RecordStorageSpecification
{
    /// <summary>A fresh, empty storage.</summary>
    protected abstract Task<IRecordStorage> CreateAsync();

    /// <summary>For durable storages: close and open the same storage again. Null when the storage is not durable.</summary>
    protected virtual Task<IRecordStorage>? ReopenAsync(IRecordStorage storage) => null;

    private static RecordState State(int version, string json) => new(version, Encoding.UTF8.GetBytes(json));

    private static async Task DisposeAsync(IRecordStorage storage)
    {
        if (storage is IAsyncDisposable d)
        {
            await d.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_missing_record_reads_as_null()
    {
        var storage = await CreateAsync();
        Assert.Null(await storage.GetAsync("nothing", default));
        await DisposeAsync(storage);
    }

    [Fact]
    public async Task A_stored_record_reads_back_byte_for_byte()
    {
        var storage = await CreateAsync();
        var json = "{\"ü\":\"ß\",\"n\":[1,2.5,null],\"s\":\"line\\nbreak\"}";
        await storage.SetAsync("récord/1", State(3, json), default);
        var read = await storage.GetAsync("récord/1", default);
        Assert.Equal(3, read!.Value.Version);
        Assert.Equal(json, Encoding.UTF8.GetString(read.Value.Data.Span));
        await DisposeAsync(storage);
    }

    [Fact]
    public async Task A_later_write_replaces_an_earlier_one()
    {
        var storage = await CreateAsync();
        await storage.SetAsync("r", State(1, "{\"a\":1}"), default);
        await storage.SetAsync("r", State(2, "[]"), default);
        var read = await storage.GetAsync("r", default);
        Assert.Equal((2, "[]"), (read!.Value.Version, Encoding.UTF8.GetString(read.Value.Data.Span)));
        await DisposeAsync(storage);
    }

    [Fact]
    public async Task Delete_removes_and_deleting_a_missing_record_is_fine()
    {
        var storage = await CreateAsync();
        await storage.SetAsync("d", State(1, "{}"), default);
        await storage.DeleteAsync("d", default);
        await storage.DeleteAsync("never", default);
        Assert.Null(await storage.GetAsync("d", default));
        await DisposeAsync(storage);
    }

    [Fact]
    public async Task Writes_issued_without_waiting_apply_in_call_order()
    {
        var storage = await CreateAsync();
        var pending = new List<Task>();
        for (var v = 1; v <= 200; v++)
        {
            pending.Add(storage.SetAsync("ordered", State(v, $"{{\"v\":{v}}}"), default).AsTask());
        }
        pending.Add(storage.DeleteAsync("ordered", default).AsTask());
        pending.Add(storage.SetAsync("ordered", State(201, "{\"v\":201}"), default).AsTask());
        await Task.WhenAll(pending);
        Assert.Equal(201, (await storage.GetAsync("ordered", default))!.Value.Version);
        await DisposeAsync(storage);
    }

    [Fact]
    public async Task Many_concurrent_writers_all_complete_and_all_are_stored()
    {
        var storage = await CreateAsync();
        await Task.WhenAll(Enumerable.Range(0, 64).Select(w => Task.Run(async () =>
        {
            for (var i = 0; i < 20; i++)
            {
                await storage.SetAsync($"w{w}", State(i + 1, $"{{\"i\":{i}}}"), default);
            }
        })));
        for (var w = 0; w < 64; w++)
        {
            Assert.Equal(20, (await storage.GetAsync($"w{w}", default))!.Value.Version);
        }
        await DisposeAsync(storage);
    }

    [Fact]
    public async Task A_durable_storage_keeps_what_it_acknowledged_across_a_reopen()
    {
        var storage = await CreateAsync();
        await storage.SetAsync("kept", State(4, "{\"k\":true}"), default);
        await storage.SetAsync("gone", State(1, "{}"), default);
        await storage.DeleteAsync("gone", default);
        var reopening = ReopenAsync(storage);
        if (reopening is null)
        {
            Assert.IsAssignableFrom<MemoryRecordStorage>(storage); // only memory storage may skip this
            return;
        }
        var reopened = await reopening;
        Assert.Equal(4, (await reopened.GetAsync("kept", default))!.Value.Version);
        Assert.Null(await reopened.GetAsync("gone", default));
        await DisposeAsync(reopened);
    }
}

public class MemoryRecordStorageTests : RecordStorageSpecification
{
    protected override Task<IRecordStorage> CreateAsync() => Task.FromResult<IRecordStorage>(new MemoryRecordStorage());
}
