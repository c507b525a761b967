namespace StateMesh.Cluster;

/// <summary>
/// The registry of the nodes of one process, over the same <see cref="InProcessClusterHub"/> as their buses. A node
/// leaves when it stops; in one process no node dies without the others seeing it.
/// </summary>
public sealed class InProcessClusterRegistry : IClusterRegistry
{
    private readonly InProcessClusterHub _hub;
    private readonly CountedNames _mine = new();
    private string _nodeName = "";
    private bool _stopped;

    /// <summary>Creates a registry on <paramref name="hub"/> (a new hub of its own when null: a cluster of one).</summary>
    public InProcessClusterRegistry(InProcessClusterHub? hub = null) => _hub = hub ?? new InProcessClusterHub();

    /// <inheritdoc />
    public TimeSpan FailureDetectionTime => TimeSpan.Zero;

    /// <inheritdoc />
    public Task StartAsync(string nodeName, IClusterMembershipListener listener, CancellationToken cancellationToken)
    {
        _nodeName = nodeName;
        _hub.JoinRegistry(nodeName, listener);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task AddAsync(string set)
    {
        lock (_mine.Gate)
        {
            if (!_stopped && _mine.Add(set))
            {
                _hub.AddToSet(set, _nodeName);
            }
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public void Remove(string set)
    {
        lock (_mine.Gate)
        {
            if (_mine.Remove(set))
            {
                _hub.RemoveFromSet(set, _nodeName);
            }
        }
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<string>> OtherNodesInAsync(string set, bool latest, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_hub.NodesIn(set, except: _nodeName));

    /// <inheritdoc />
    public ValueTask<bool> TryClaimAsync(string key, CancellationToken cancellationToken) =>
        ValueTask.FromResult(!_stopped && _hub.TryClaim(key, _nodeName));

    /// <inheritdoc />
    public void Release(string key) => _hub.Release(key, _nodeName);

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken)
    {
        lock (_mine.Gate)
        {
            if (_stopped)
            {
                return Task.CompletedTask;
            }
            _stopped = true;
            foreach (var set in _mine.Clear())
            {
                _hub.RemoveFromSet(set, _nodeName);
            }
        }
        _hub.LeaveRegistry(_nodeName);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);
}
