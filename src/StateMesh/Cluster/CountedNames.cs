namespace StateMesh.Cluster;

/// <summary>
/// Names counted up and down, for seams whose callers say "one more" and "one fewer" (bus interest, registry sets):
/// only the first add and the last remove of a name reach the network. Thread-safe; callers act on the transitions
/// under <see cref="Gate"/> when their order matters.
/// </summary>
internal sealed class CountedNames
{
    private readonly Dictionary<string, int> _counts = new(StringComparer.Ordinal);

    /// <summary>Held by every call; take it around a transition and what it sends, to keep their order.</summary>
    public object Gate => _counts;

    /// <summary>One more; true when the name was not counted before.</summary>
    public bool Add(string name)
    {
        lock (_counts)
        {
            var count = _counts.GetValueOrDefault(name) + 1;
            _counts[name] = count;
            return count == 1;
        }
    }

    /// <summary>One fewer; true when that was the last (false when the name was not counted at all).</summary>
    public bool Remove(string name)
    {
        lock (_counts)
        {
            if (!_counts.TryGetValue(name, out var count))
            {
                return false;
            }
            if (count > 1)
            {
                _counts[name] = count - 1;
                return false;
            }
            _counts.Remove(name);
            return true;
        }
    }

    /// <summary>Every name counted now.</summary>
    public string[] Names
    {
        get
        {
            lock (_counts)
            {
                return [.. _counts.Keys];
            }
        }
    }

    /// <summary>Forgets every name; returns those that were counted.</summary>
    public string[] Clear()
    {
        lock (_counts)
        {
            string[] names = [.. _counts.Keys];
            _counts.Clear();
            return names;
        }
    }
}
