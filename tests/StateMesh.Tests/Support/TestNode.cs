using Microsoft.Extensions.Options;

namespace StateMesh.Tests.Support;

internal static class TestNode
{
    private static int s_counter;

    /// <summary>Starts a node on a free loopback port with a unique in-process name.</summary>
    public static async Task<StateMeshNode> StartAsync(Action<StateMeshOptions>? configure = null, TimeProvider? time = null, IEnumerable<Auth.IAuthenticationHandler>? handlers = null, StateMesh.Storage.IRecordStorage? storage = null, StateMesh.Cluster.IClusterBus? clusterBus = null, StateMesh.Storage.IRecordStore? store = null, StateMesh.Cluster.IClusterRegistry? registry = null)
    {
        var options = new StateMeshOptions { NodeName = $"test-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}" };
        options.Tcp.Enabled = true;
        options.Tcp.Port = 0;
        configure?.Invoke(options);
        var node = new StateMeshNode(Options.Create(options), handlers, null, time, recordStore: store, recordStorage: storage, clusterBus: clusterBus, clusterRegistry: registry);
        await node.StartAsync();
        return node;
    }
}
