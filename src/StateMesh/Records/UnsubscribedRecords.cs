namespace StateMesh.Records;

/// <summary>
/// Records held in memory that nobody subscribes to, least recently used first, with their sizes; tells when they
/// exceed the bounds by count or bytes, so that the oldest can be let go (durable storage keeps them).
/// </summary>
internal sealed class UnsubscribedRecords(int maxCount, long maxBytes)
{
    private readonly object _gate = new();
    private readonly LinkedList<(string Name, int Bytes)> _order = new();
    private readonly Dictionary<string, LinkedListNode<(string Name, int Bytes)>> _nodes = new(StringComparer.Ordinal);
    private long _bytes;

    public int Count
    {
        get { lock (_gate) { return _nodes.Count; } }
    }

    public long Bytes
    {
        get { lock (_gate) { return _bytes; } }
    }

    public bool IsOver
    {
        get { lock (_gate) { return Over; } }
    }

    private bool Over => _nodes.Count > maxCount || _bytes > maxBytes;

    /// <summary>Marks the record as used now (adding it if new); true when the bounds are now exceeded.</summary>
    public bool Touch(string name, int bytes)
    {
        lock (_gate)
        {
            if (_nodes.TryGetValue(name, out var node))
            {
                _bytes += bytes - node.Value.Bytes;
                node.Value = (name, bytes);
                _order.Remove(node);
                _order.AddLast(node);
            }
            else
            {
                _nodes[name] = _order.AddLast((name, bytes));
                _bytes += bytes;
            }
            return Over;
        }
    }

    /// <summary>The record gained a subscriber (or is gone): it is no candidate any more.</summary>
    public void Forget(string name)
    {
        lock (_gate)
        {
            if (_nodes.Remove(name, out var node))
            {
                _bytes -= node.Value.Bytes;
                _order.Remove(node);
            }
        }
    }

    /// <summary>While over the bounds, takes the least recently used record out of the candidates.</summary>
    public bool TryTakeOldest(out string name)
    {
        lock (_gate)
        {
            if (!Over || _order.First is not { } first)
            {
                name = "";
                return false;
            }
            name = first.Value.Name;
            _bytes -= first.Value.Bytes;
            _order.RemoveFirst();
            _nodes.Remove(name);
            return true;
        }
    }
}
