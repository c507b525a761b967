using Microsoft.Extensions.Options;
using StateMesh.Server;
using StateMesh.Transport;

namespace StateMesh.Tests.Server;

public class SubscriptionRegistryTests
{
    private static Session NewSession()
    {
        var node = new StateMeshNode(Options.Create(new StateMeshOptions()));
        var (_, server) = InMemoryTransport.CreatePair("test");
        return new Session(node.Engine, server, StateMesh.Protocol.NativeCodec.Instance);
    }

    [Fact]
    public void Add_and_remove_track_counts_and_forget_empty_names()
    {
        var registry = new SubscriptionRegistry();
        var a = NewSession();
        var b = NewSession();
        Assert.Equal(1, registry.Add("x", a));
        Assert.Equal(2, registry.Add("x", b));
        Assert.Equal([a, b], registry.Get("x"));
        Assert.Equal(1, registry.Remove("x", a));
        Assert.Equal(-1, registry.Remove("x", a));
        Assert.Equal(0, registry.Remove("x", b));
        Assert.Empty(registry.Get("x"));
        Assert.Equal(0, registry.NameCount);
        Assert.Equal(-1, registry.Remove("never", a));
    }

    [Fact]
    public void A_reader_keeps_its_snapshot_while_writers_change_the_set()
    {
        var registry = new SubscriptionRegistry();
        var a = NewSession();
        registry.Add("x", a);
        var snapshot = registry.Get("x");
        registry.Add("x", NewSession());
        registry.Remove("x", a);
        Assert.Equal([a], snapshot);
    }

    [Fact]
    public async Task Concurrent_subscribes_and_unsubscribes_on_one_name_lose_nothing()
    {
        var registry = new SubscriptionRegistry();
        var sessions = Enumerable.Range(0, 64).Select(_ => NewSession()).ToArray();
        var keep = sessions.Where((_, i) => i % 2 == 0).ToHashSet();
        await Task.WhenAll(sessions.Select(s => Task.Run(() =>
        {
            for (var round = 0; round < 200; round++)
            {
                registry.Add("hot", s);
                registry.Remove("hot", s);
            }
            if (keep.Contains(s))
            {
                registry.Add("hot", s);
            }
        })));
        Assert.Equal(keep.OrderBy(s => s.Id), registry.Get("hot").OrderBy(s => s.Id));
    }
}
