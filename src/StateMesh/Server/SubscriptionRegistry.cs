using System.Collections.Concurrent;

namespace StateMesh.Server;

/// <summary>
/// Name → subscribed sessions. Readers take the current array without locks; writers copy on write under a
/// per-name lock, so that subscribing to one name never blocks fan-out on another.
/// </summary>
internal sealed class SubscriptionRegistry
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public int NameCount => _entries.Count;

    /// <summary>Names with at least one subscriber now.</summary>
    public IEnumerable<string> Names => _entries.Keys;

    /// <summary>Adds a subscriber; the caller guarantees it is not already subscribed. Returns the new count.</summary>
    public int Add(string name, Session session)
    {
        while (true)
        {
            var entry = _entries.GetOrAdd(name, static _ => new Entry());
            lock (entry)
            {
                if (entry.Dead)
                {
                    continue;
                }
                var current = entry.Subscribers;
                var next = new Session[current.Length + 1];
                current.CopyTo(next, 0);
                next[^1] = session;
                entry.Subscribers = next;
                return next.Length;
            }
        }
    }

    /// <summary>Removes a subscriber. Returns the remaining count, or -1 when it was not subscribed.</summary>
    public int Remove(string name, Session session)
    {
        if (!_entries.TryGetValue(name, out var entry))
        {
            return -1;
        }
        lock (entry)
        {
            var current = entry.Subscribers;
            var index = Array.IndexOf(current, session);
            if (index < 0)
            {
                return -1;
            }
            if (current.Length == 1)
            {
                entry.Dead = true;
                entry.Subscribers = [];
                _entries.TryRemove(new KeyValuePair<string, Entry>(name, entry));
                return 0;
            }
            var next = new Session[current.Length - 1];
            Array.Copy(current, 0, next, 0, index);
            Array.Copy(current, index + 1, next, index, current.Length - index - 1);
            entry.Subscribers = next;
            return next.Length;
        }
    }

    public Session[] Get(string name) => _entries.TryGetValue(name, out var entry) ? entry.Subscribers : [];

    private sealed class Entry
    {
        public volatile Session[] Subscribers = [];
        public bool Dead;
    }
}
