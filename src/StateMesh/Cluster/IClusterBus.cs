using StateMesh.Protocol;

namespace StateMesh.Cluster;

/// <summary>
/// How the nodes of a cluster reach each other: named channels that a node subscribes to while its own clients care,
/// with messages delivered in order per channel. Every node has one; a node alone has a cluster of one
/// (<see cref="InProcessClusterBus"/> with a hub of its own), so topics run the same code either way.
/// </summary>
/// <remarks>
/// Implementations: <see cref="InProcessClusterBus"/> (nodes of one process, over an <see cref="InProcessClusterHub"/>)
/// and StateMesh.Redis (Redis pub/sub). Both pass the same specification tests.
/// </remarks>
public interface IClusterBus : IAsyncDisposable
{
    /// <summary>Joins the cluster as <paramref name="nodeName"/>; messages for this node go to <paramref name="receiver"/>.</summary>
    Task StartAsync(string nodeName, IClusterReceiver receiver, CancellationToken cancellationToken);

    /// <summary>
    /// One more local interest in <paramref name="channel"/>. Counted: the node receives the channel's messages from the
    /// first interest until as many <see cref="Unsubscribe"/> calls have come. Never blocks on the network: the task
    /// completes once messages published from then on will arrive (a caller that reads shared state after subscribing
    /// waits for it, so that no change falls between its read and its subscription).
    /// </summary>
    Task Subscribe(string channel);

    /// <summary>One local interest in <paramref name="channel"/> fewer.</summary>
    void Unsubscribe(string channel);

    /// <summary>
    /// Sends <paramref name="message"/> to every other node subscribed to <paramref name="channel"/> (never back to this
    /// one). At most once: a message can be lost when the bus is down, never duplicated. Never blocks on the network.
    /// </summary>
    void Publish(string channel, Message message);

    /// <summary>Leaves the cluster: nothing is received after it completes.</summary>
    Task StopAsync(CancellationToken cancellationToken);
}

/// <summary>Where a bus delivers what other nodes publish. Calls for one channel come one at a time, in order.</summary>
public interface IClusterReceiver
{
    /// <summary>A message another node published on a channel this node subscribes to.</summary>
    void OnMessage(string channel, Message message);
}

/// <summary>The bus channels of each topic, the same on every node and every bus.</summary>
internal static class ClusterChannels
{
    public static string Event(string name) => "E/" + name;

    /// <summary>A record's changes; the braces make its Redis key and its channel share a hash slot on a Redis Cluster.</summary>
    public static string Record(string name) => "R/{" + name + "}";

    public static bool TryEvent(string channel, out string name)
    {
        if (channel.StartsWith("E/", StringComparison.Ordinal))
        {
            name = channel[2..];
            return true;
        }
        name = "";
        return false;
    }

    public static bool TryRecord(string channel, out string name)
    {
        if (channel.StartsWith("R/{", StringComparison.Ordinal) && channel.EndsWith('}'))
        {
            name = channel[3..^1];
            return true;
        }
        name = "";
        return false;
    }
}
