using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

public sealed record SumRequest(int A, int B);

public sealed record StockItem(string Name, int? Count);

[StateMeshRpc("calc")]
public interface ICalculator
{
    Task<int> AddAsync(SumRequest request, CancellationToken cancellationToken = default);

    Task<string> PingAsync();

    Task ResetAsync(CancellationToken cancellationToken);
}

/// <summary>The default prefix (Inventory), generic and nullable types, ValueTask.</summary>
[StateMeshRpc]
public interface IInventory
{
    Task<List<StockItem>> ListAsync(string? filter);

    ValueTask<int> CountAsync(CancellationToken cancellationToken);

    ValueTask ClearAsync(StockItem? hint);

    Task<string?> FindAsync(int id, CancellationToken cancellationToken);
}

/// <summary>Not marked: there is no proxy for it.</summary>
public interface IUnmarked
{
    Task<int> GetAsync();
}

public static class RpcContainer
{
    /// <summary>An interface nested in a class.</summary>
    [StateMeshRpc("nested")]
    public interface IEcho
    {
        Task<string> EchoAsync(string text);
    }
}

public class RpcProxyTests
{
    private sealed class Calculator : ICalculator
    {
        public int Resets;

        public Task<int> AddAsync(SumRequest request, CancellationToken cancellationToken = default) =>
            request.A < 0 ? throw new RpcErrorException("negative: " + request.A) : Task.FromResult(request.A + request.B);

        public Task<string> PingAsync() => Task.FromResult("pong");

        public Task ResetAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Resets);
            return Task.CompletedTask;
        }
    }

    private sealed class Inventory : IInventory
    {
        private readonly List<StockItem> _items = [new("apple", 3), new("pear", null), new("plum", 1)];

        public Task<List<StockItem>> ListAsync(string? filter) =>
            Task.FromResult(_items.Where(i => filter is null || i.Name.Contains(filter, StringComparison.Ordinal)).ToList());

        public ValueTask<int> CountAsync(CancellationToken cancellationToken) => ValueTask.FromResult(_items.Count);

        public ValueTask ClearAsync(StockItem? hint)
        {
            _items.RemoveAll(i => hint is null || i.Name == hint.Name);
            return ValueTask.CompletedTask;
        }

        public Task<string?> FindAsync(int id, CancellationToken cancellationToken) =>
            Task.FromResult(id >= 0 && id < _items.Count ? _items[id].Name : null);
    }

    private sealed class Echo : RpcContainer.IEcho
    {
        public Task<string> EchoAsync(string text) => Task.FromResult("echo: " + text);
    }

    private sealed class Unmarked : IUnmarked
    {
        public Task<int> GetAsync() => Task.FromResult(1);
    }

    private static Task<StateMeshClient> ConnectAsync(StateMeshNode node) => StateMeshClient.ConnectAsync(node.TcpAddress!.ToString());

    /// <summary>A node whose RPC timeouts a busy test machine never reaches: these tests are about names and shapes, not timing.</summary>
    private static Task<StateMeshNode> StartNodeAsync() => TestNode.StartAsync(o =>
    {
        o.Rpc.AckTimeout = TimeSpan.FromSeconds(30);
        o.Rpc.ResponseTimeout = TimeSpan.FromSeconds(60);
    });

    [Fact]
    public async Task A_proxy_calls_each_method_under_its_prefixed_name()
    {
        await using var node = await StartNodeAsync();
        await using var provider = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        var implementation = new Calculator();
        await using var registration = await provider.Rpc.ProvideAsync<ICalculator>(implementation);
        foreach (var name in new[] { "calc/AddAsync", "calc/PingAsync", "calc/ResetAsync" })
        {
            Assert.Single(node.Engine.Rpc.Providers.Get(name));
        }

        var calc = caller.Rpc.CreateProxy<ICalculator>();
        Assert.Equal(5, await calc.AddAsync(new SumRequest(2, 3)));
        using (var cts = new CancellationTokenSource())
        {
            Assert.Equal(10, await calc.AddAsync(new SumRequest(4, 6), cts.Token));
        }
        Assert.Equal("pong", await calc.PingAsync());
        await calc.ResetAsync(CancellationToken.None);
        await calc.ResetAsync(CancellationToken.None);
        Assert.Equal(2, Volatile.Read(ref implementation.Resets));
        // The proxy is an ordinary RPC caller: untyped calls reach the same provider.
        Assert.Equal(7, await caller.Rpc.MakeAsync<SumRequest, int>("calc/AddAsync", new SumRequest(3, 4)));
    }

    [Fact]
    public async Task The_default_prefix_drops_the_leading_I_and_generic_nullable_and_ValueTask_shapes_round_trip()
    {
        await using var node = await StartNodeAsync();
        await using var provider = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        await using var registration = await provider.Rpc.ProvideAsync<IInventory>(new Inventory());
        foreach (var name in new[] { "Inventory/ListAsync", "Inventory/CountAsync", "Inventory/ClearAsync", "Inventory/FindAsync" })
        {
            Assert.Single(node.Engine.Rpc.Providers.Get(name));
        }

        var inventory = caller.Rpc.CreateProxy<IInventory>();
        Assert.Equal([new StockItem("apple", 3), new StockItem("pear", null), new StockItem("plum", 1)], await inventory.ListAsync(null));
        Assert.Equal([new StockItem("plum", 1)], await inventory.ListAsync("um"));
        Assert.Equal(3, await inventory.CountAsync(CancellationToken.None));
        Assert.Equal("pear", await inventory.FindAsync(1, CancellationToken.None));
        Assert.Null(await inventory.FindAsync(99, CancellationToken.None));
        await inventory.ClearAsync(new StockItem("apple", null));
        Assert.Equal(2, await inventory.CountAsync(CancellationToken.None));
        await inventory.ClearAsync(null);
        Assert.Equal(0, await inventory.CountAsync(CancellationToken.None));
    }

    [Fact]
    public async Task An_interface_nested_in_a_class_and_one_in_the_global_namespace_get_proxies()
    {
        await using var node = await StartNodeAsync();
        await using var provider = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        await using var echo = await provider.Rpc.ProvideAsync<RpcContainer.IEcho>(new Echo());
        await using var clock = await provider.Rpc.ProvideAsync<IGlobalClock>(new GlobalClock());
        Assert.Single(node.Engine.Rpc.Providers.Get("nested/EchoAsync"));
        Assert.Single(node.Engine.Rpc.Providers.Get("GlobalClock/NowAsync"));
        Assert.Equal("echo: hi", await caller.Rpc.CreateProxy<RpcContainer.IEcho>().EchoAsync("hi"));
        Assert.Equal(42L, await caller.Rpc.CreateProxy<IGlobalClock>().NowAsync());
    }

    [Fact]
    public async Task An_RpcErrorException_reaches_the_proxy_as_a_provider_error_with_its_message()
    {
        await using var node = await StartNodeAsync();
        await using var provider = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        await using var registration = await provider.Rpc.ProvideAsync<ICalculator>(new Calculator());
        var calc = caller.Rpc.CreateProxy<ICalculator>();
        var error = await Assert.ThrowsAsync<RpcException>(() => calc.AddAsync(new SumRequest(-1, 1)));
        Assert.Equal(RpcErrorCode.ProviderError, error.Code);
        Assert.Equal("negative: -1", error.Message);
    }

    [Fact]
    public async Task Disposing_the_registration_unprovides_every_method()
    {
        await using var node = await StartNodeAsync();
        await using var provider = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        var registration = await provider.Rpc.ProvideAsync<ICalculator>(new Calculator());
        var calc = caller.Rpc.CreateProxy<ICalculator>();
        Assert.Equal("pong", await calc.PingAsync());

        await registration.DisposeAsync();
        await registration.DisposeAsync(); // twice is harmless
        // Whether the unprovide or the call reaches the node first, the call finds no provider.
        var error = await Assert.ThrowsAsync<RpcException>(() => calc.PingAsync());
        Assert.Equal(RpcErrorCode.NoProvider, error.Code);
        // A round trip on the provider's own connection: its earlier unprovides have been handled by then.
        var own = await Assert.ThrowsAsync<RpcException>(() => provider.Rpc.MakeAsync<string, string>("nobody/here", "x"));
        Assert.Equal(RpcErrorCode.NoProvider, own.Code);
        foreach (var name in new[] { "calc/AddAsync", "calc/PingAsync", "calc/ResetAsync" })
        {
            Assert.Empty(node.Engine.Rpc.Providers.Get(name));
        }

        // And the interface can be provided again.
        await using var again = await provider.Rpc.ProvideAsync<ICalculator>(new Calculator());
        Assert.Equal(3, await calc.AddAsync(new SumRequest(1, 2)));
    }

    [Fact]
    public async Task A_proxy_forwards_its_cancellation_token()
    {
        await using var node = await StartNodeAsync();
        await using var provider = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        await using var registration = await provider.Rpc.ProvideAsync<ICalculator>(new Calculator());
        var calc = caller.Rpc.CreateProxy<ICalculator>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => calc.AddAsync(new SumRequest(1, 1), new CancellationToken(canceled: true)));
        Assert.Equal(2, await calc.AddAsync(new SumRequest(1, 1)));
    }

    [Fact]
    public async Task An_unmarked_interface_has_no_proxy_and_cannot_be_provided()
    {
        await using var node = await StartNodeAsync();
        await using var client = await ConnectAsync(node);
        var proxy = Assert.Throws<InvalidOperationException>(() => client.Rpc.CreateProxy<IUnmarked>());
        Assert.Contains(nameof(IUnmarked), proxy.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidOperationException>(() => client.Rpc.ProvideAsync<IUnmarked>(new Unmarked()));
    }
}
