using System.Threading.Channels;
using StateMesh.Protocol;

namespace StateMesh.Cluster;

/// <summary>
/// The nodes of one process that form a cluster: give the same hub to each node's <see cref="InProcessClusterBus"/>.
/// A node given a hub of its own is a cluster of one.
/// </summary>
public sealed class InProcessClusterHub
{
    private readonly Lock _gate = new();
    private InProcessClusterBus[] _members = [];

    internal InProcessClusterBus[] Members => _members;

    internal void Join(InProcessClusterBus bus)
    {
        lock (_gate)
        {
            if (_members.Any(m => m.NodeName == bus.NodeName))
            {
                throw new InvalidOperationException($"A node named '{bus.NodeName}' is already in this cluster: NodeName must be unique.");
            }
            _members = [.. _members, bus];
        }
    }

    internal void Leave(InProcessClusterBus bus)
    {
        lock (_gate)
        {
            _members = [.. _members.Where(m => !ReferenceEquals(m, bus))];
        }
    }

    // The registries of the hub's nodes: who is in, and which nodes are in each named set.
    private readonly Dictionary<string, IClusterMembershipListener> _registries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<string>> _sets = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _claims = new(StringComparer.Ordinal);

    internal void JoinRegistry(string nodeName, IClusterMembershipListener listener)
    {
        IClusterMembershipListener[] others;
        lock (_gate)
        {
            others = [.. _registries.Values];
            if (!_registries.TryAdd(nodeName, listener))
            {
                throw new InvalidOperationException($"A node named '{nodeName}' is already in this cluster: NodeName must be unique.");
            }
        }
        foreach (var other in others)
        {
            other.OnNodeJoined(nodeName);
        }
    }

    internal void LeaveRegistry(string nodeName)
    {
        IClusterMembershipListener[] others;
        lock (_gate)
        {
            if (!_registries.Remove(nodeName))
            {
                return;
            }
            foreach (var key in _claims.Where(c => c.Value == nodeName).Select(c => c.Key).ToList())
            {
                _claims.Remove(key);
            }
            others = [.. _registries.Values];
        }
        foreach (var other in others)
        {
            other.OnNodeLeft(nodeName);
        }
    }

    internal void AddToSet(string set, string nodeName)
    {
        lock (_gate)
        {
            if (!_sets.TryGetValue(set, out var nodes))
            {
                _sets[set] = nodes = new HashSet<string>(StringComparer.Ordinal);
            }
            nodes.Add(nodeName);
        }
    }

    internal void RemoveFromSet(string set, string nodeName)
    {
        lock (_gate)
        {
            if (_sets.TryGetValue(set, out var nodes) && nodes.Remove(nodeName) && nodes.Count == 0)
            {
                _sets.Remove(set);
            }
        }
    }

    /// <summary>The claim is the node's unless another node of the hub holds it.</summary>
    internal bool TryClaim(string key, string nodeName)
    {
        lock (_gate)
        {
            if (_claims.TryGetValue(key, out var owner) && owner != nodeName && _registries.ContainsKey(owner))
            {
                return false;
            }
            _claims[key] = nodeName;
            return true;
        }
    }

    internal void Release(string key, string nodeName)
    {
        lock (_gate)
        {
            if (_claims.TryGetValue(key, out var owner) && owner == nodeName)
            {
                _claims.Remove(key);
            }
        }
    }

    internal IReadOnlyList<string> NodesIn(string set, string except)
    {
        lock (_gate)
        {
            return _sets.TryGetValue(set, out var nodes) ? [.. nodes.Where(n => n != except)] : [];
        }
    }
}

/// <summary>
/// A bus between the nodes of one process (see <see cref="InProcessClusterHub"/>). Each node receives on one ordered
/// queue of its own, so a publisher never runs another node's code on its thread and order per channel holds.
/// </summary>
public sealed class InProcessClusterBus : IClusterBus
{
    private readonly InProcessClusterHub _hub;
    // Counts change under the lock; publishers of other nodes only ask whether a channel is there, without it.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _interest = new(StringComparer.Ordinal);
    private readonly Channel<(string Channel, Message Message)> _inbox =
        Channel.CreateUnbounded<(string, Message)>(new UnboundedChannelOptions { SingleReader = true });
    private IClusterReceiver? _receiver;
    private Task _pump = Task.CompletedTask;

    /// <summary>Creates a bus on <paramref name="hub"/> (a new hub of its own when null: a cluster of one).</summary>
    public InProcessClusterBus(InProcessClusterHub? hub = null) => _hub = hub ?? new InProcessClusterHub();

    internal string NodeName { get; private set; } = "";

    /// <inheritdoc />
    public Task StartAsync(string nodeName, IClusterReceiver receiver, CancellationToken cancellationToken)
    {
        NodeName = nodeName;
        _receiver = receiver;
        _hub.Join(this);
        _pump = Task.Run(PumpAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task Subscribe(string channel)
    {
        lock (_interest)
        {
            _interest[channel] = _interest.GetValueOrDefault(channel) + 1;
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public void Unsubscribe(string channel)
    {
        lock (_interest)
        {
            if (!_interest.TryGetValue(channel, out var count))
            {
                return;
            }
            if (count > 1)
            {
                _interest[channel] = count - 1;
            }
            else
            {
                _interest.TryRemove(channel, out _);
            }
        }
    }

    /// <inheritdoc />
    public void Publish(string channel, Message message)
    {
        foreach (var member in _hub.Members)
        {
            if (!ReferenceEquals(member, this) && member._interest.ContainsKey(channel))
            {
                member._inbox.Writer.TryWrite((channel, message));
            }
        }
    }

    private async Task PumpAsync()
    {
        await foreach (var (channel, message) in _inbox.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            // Interest may have ended while the message waited.
            if (_interest.ContainsKey(channel))
            {
                _receiver!.OnMessage(channel, message);
            }
        }
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _hub.Leave(this);
        _inbox.Writer.TryComplete();
        await _pump.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);
}
