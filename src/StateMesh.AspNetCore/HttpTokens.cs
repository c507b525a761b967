using System.Collections.Concurrent;

namespace StateMesh.AspNetCore;

/// <summary>
/// Tokens issued by /api/auth: each valid for a lifetime after its last use, at most <c>capacity</c> at once (past it
/// the token used longest ago is revoked). Expired tokens are dropped when met and by a sweep when the store is full.
/// </summary>
internal sealed class HttpTokens(int capacity, TimeSpan lifetime, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Entry> _tokens = new(StringComparer.Ordinal);
    private readonly object _issue = new();

    private sealed class Entry(HttpUser user, long lastUsed)
    {
        public HttpUser User { get; } = user;
        public long LastUsed = lastUsed;
    }

    public int Count => _tokens.Count;

    public void Add(string token, HttpUser user)
    {
        lock (_issue)
        {
            if (_tokens.Count >= capacity)
            {
                Sweep();
            }
            while (_tokens.Count >= capacity)
            {
                var oldest = _tokens.MinBy(kv => Volatile.Read(ref kv.Value.LastUsed));
                _tokens.TryRemove(oldest.Key, out _);
            }
            _tokens[token] = new Entry(user, time.GetTimestamp());
        }
    }

    /// <summary>The token's user, renewing its lifetime; null when it is unknown or has expired.</summary>
    public HttpUser? TryUse(string token)
    {
        if (!_tokens.TryGetValue(token, out var entry))
        {
            return null;
        }
        if (time.GetElapsedTime(Volatile.Read(ref entry.LastUsed)) > lifetime)
        {
            _tokens.TryRemove(new KeyValuePair<string, Entry>(token, entry));
            return null;
        }
        Volatile.Write(ref entry.LastUsed, time.GetTimestamp());
        return entry.User;
    }

    private void Sweep()
    {
        foreach (var (token, entry) in _tokens)
        {
            if (time.GetElapsedTime(Volatile.Read(ref entry.LastUsed)) > lifetime)
            {
                _tokens.TryRemove(new KeyValuePair<string, Entry>(token, entry));
            }
        }
    }
}

/// <summary>Who a token or a login of the HTTP API is: the user id, and the serverData permission rules see as <c>user.data</c>.</summary>
internal sealed record HttpUser(string Id, System.Text.Json.Nodes.JsonNode? ServerData);
