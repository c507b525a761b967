namespace StateMesh.Cluster;

/// <summary>
/// What the nodes of a cluster know about each other: which nodes are alive, and which nodes are in a named set (for
/// example, the nodes that have a provider of an RPC name). A node alone is a cluster of one
/// (<see cref="InProcessClusterRegistry"/> on a hub of its own).
/// </summary>
/// <remarks>
/// Membership: a node is in the cluster from <see cref="StartAsync"/> to <see cref="StopAsync"/>. A node that stops
/// is gone for the others at once; a node that dies is gone within <see cref="FailureDetectionTime"/>. Either way the
/// others are told (<see cref="IClusterMembershipListener.OnNodeLeft"/>) and its sets no longer list it.
/// </remarks>
public interface IClusterRegistry : IAsyncDisposable
{
    /// <summary>How long the others may take to notice that a node died.</summary>
    TimeSpan FailureDetectionTime { get; }

    /// <summary>Joins as <paramref name="nodeName"/>; <paramref name="listener"/> hears of nodes that leave.</summary>
    Task StartAsync(string nodeName, IClusterMembershipListener listener, CancellationToken cancellationToken);

    /// <summary>
    /// This node is in <paramref name="set"/> once more (counted, like <see cref="IClusterBus.Subscribe"/>). The task
    /// completes once the other nodes can see it. Calls for one set take effect in order.
    /// </summary>
    Task AddAsync(string set);

    /// <summary>This node is in <paramref name="set"/> once fewer; at zero the others stop seeing it there.</summary>
    void Remove(string set);

    /// <summary>The other live nodes in <paramref name="set"/> (never this one).</summary>
    /// <param name="set">The set.</param>
    /// <param name="latest">
    /// False: the answer may come from what this node read a moment ago, so a node that joined the set an instant
    /// before may be missing from it (and one that just left may still be listed; asking it is then refused). True:
    /// what the cluster holds now, at the cost of a round trip; ask so before concluding that nobody is in the set.
    /// </param>
    /// <param name="cancellationToken">Stops waiting.</param>
    ValueTask<IReadOnlyList<string>> OtherNodesInAsync(string set, bool latest, CancellationToken cancellationToken);

    /// <summary>
    /// Claims <paramref name="key"/> for this node, atomically across the cluster (for example the one active listen
    /// provider of a name). True when this node holds the claim now: it held it already, nobody did, or its holder is no
    /// longer a live node. False when another live node holds it. A node's claims end when it leaves the cluster.
    /// </summary>
    ValueTask<bool> TryClaimAsync(string key, CancellationToken cancellationToken);

    /// <summary>Gives up <paramref name="key"/> if this node holds it; a claim another node holds is left alone.</summary>
    void Release(string key);

    /// <summary>Leaves the cluster: the others are told at once.</summary>
    Task StopAsync(CancellationToken cancellationToken);
}

/// <summary>Hears of nodes leaving the cluster.</summary>
public interface IClusterMembershipListener
{
    /// <summary>A node stopped or died: what it held (providers, users, calls) is gone.</summary>
    void OnNodeLeft(string nodeName);

    /// <summary>
    /// A node joined after this one, or came back after it was seen gone (for example after Redis restarted empty):
    /// whatever this node keeps about the others (who is online where) should be asked of it again.
    /// </summary>
    void OnNodeJoined(string nodeName);
}
