using System.Collections.Concurrent;
using System.Reactive.Disposables;
using System.Reactive.Linq;
using System.Reactive.Subjects;
using System.Text.Json;
using StateMesh.Protocol;

namespace StateMesh.Client;

/// <summary>A user came online or went offline.</summary>
/// <param name="User">The user id.</param>
/// <param name="IsOnline">True on join, false on leave.</param>
public readonly record struct PresenceChange(string User, bool IsOnline);

/// <summary>Who is online. Only logged-in users with an id count; several connections of one user count once.</summary>
public interface IPresenceClient
{
    /// <summary>Every join and leave. The first observer subscribes on the node; the last to dispose unsubscribes.</summary>
    IObservable<PresenceChange> Observe();

    /// <summary>Joins and leaves of these users.</summary>
    IObservable<PresenceChange> Observe(params string[] users);

    /// <summary>The users online now, without this client's own user.</summary>
    Task<IReadOnlyList<string>> QueryAllAsync(CancellationToken cancellationToken = default);

    /// <summary>Whether each of these users is online.</summary>
    Task<IReadOnlyDictionary<string, bool>> QueryAsync(IEnumerable<string> users, CancellationToken cancellationToken = default);

    /// <summary>How many users are online (this client's own user included), without listing them.</summary>
    Task<int> CountAsync(CancellationToken cancellationToken = default);
}

internal sealed class PresenceClient(StateMeshClient client) : IPresenceClient
{
    private readonly Subject<PresenceChange> _everyone = new();
    private readonly Subject<PresenceChange> _perUser = new();
    private readonly Dictionary<string, int> _users = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TaskCompletionSource<Message>> _queries = new(StringComparer.Ordinal);
    private int _everyoneReferences;
    // QUERY_ALL ids in the order sent, for nodes that answer without the id (deepstream); each leaves when its query ends.
    private readonly LinkedList<string> _queryAllOrder = new();

    private object Gate => client.Gate;

    public IObservable<PresenceChange> Observe() => Observable.Create<PresenceChange>(observer =>
    {
        var inner = _everyone.Subscribe(observer);
        lock (Gate)
        {
            if (_everyoneReferences++ == 0)
            {
                client.TrySendIfOpen(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.SubscribeAll, CorrelationId = client.NextCorrelationId() });
            }
        }
        return Disposable.Create(() =>
        {
            inner.Dispose();
            lock (Gate)
            {
                if (--_everyoneReferences == 0)
                {
                    client.TrySendIfOpen(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.UnsubscribeAll, CorrelationId = client.NextCorrelationId() });
                }
            }
        });
    });

    public IObservable<PresenceChange> Observe(params string[] users)
    {
        if (users.Length == 0 || users.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException("Name at least one user, and no empty names.", nameof(users));
        }
        var wanted = users.ToHashSet(StringComparer.Ordinal);
        return Observable.Create<PresenceChange>(observer =>
        {
            var inner = _perUser.Where(c => wanted.Contains(c.User)).Subscribe(observer);
            lock (Gate)
            {
                var added = new List<string>();
                foreach (var user in wanted)
                {
                    if ((_users[user] = _users.GetValueOrDefault(user) + 1) == 1)
                    {
                        added.Add(user);
                    }
                }
                if (added.Count > 0)
                {
                    client.TrySendIfOpen(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.Subscribe, Names = [.. added], CorrelationId = client.NextCorrelationId() });
                }
            }
            return Disposable.Create(() =>
            {
                inner.Dispose();
                lock (Gate)
                {
                    var removed = new List<string>();
                    foreach (var user in wanted)
                    {
                        if (--_users[user] == 0)
                        {
                            _users.Remove(user);
                            removed.Add(user);
                        }
                    }
                    if (removed.Count > 0)
                    {
                        client.TrySendIfOpen(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.Unsubscribe, Names = [.. removed], CorrelationId = client.NextCorrelationId() });
                    }
                }
            });
        });
    }

    public async Task<IReadOnlyList<string>> QueryAllAsync(CancellationToken cancellationToken = default) =>
        (await QueryCoreAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.QueryAll }, cancellationToken).ConfigureAwait(false)).Names ?? [];

    public async Task<IReadOnlyDictionary<string, bool>> QueryAsync(IEnumerable<string> users, CancellationToken cancellationToken = default)
    {
        var names = users.ToArray();
        if (names.Length == 0)
        {
            return new Dictionary<string, bool>();
        }
        var reply = await QueryCoreAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.Query, Names = names }, cancellationToken).ConfigureAwait(false);
        return reply.Data is { } data
            ? JsonSerializer.Deserialize(data.Span, client.GetTypeInfo<Dictionary<string, bool>>()) ?? []
            : new Dictionary<string, bool>();
    }

    public async Task<int> CountAsync(CancellationToken cancellationToken = default) =>
        (await QueryCoreAsync(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.QueryCount }, cancellationToken).ConfigureAwait(false)).Version ?? 0;

    private async Task<Message> QueryCoreAsync(Message query, CancellationToken cancellationToken)
    {
        var correlationId = client.NextCorrelationId();
        var reply = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        _queries[correlationId] = reply;
        var ordered = query.Action == (int)PresenceAction.QueryAll;
        if (ordered)
        {
            lock (_queryAllOrder)
            {
                _queryAllOrder.AddLast(correlationId);
            }
        }
        try
        {
            await client.SendOrQueue(query with { CorrelationId = correlationId }).ConfigureAwait(false);
            return await reply.Task.WaitAsync(client.Options.RecordReadTimeout, client.Time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new StateMeshException($"The node did not answer the presence query within {client.Options.RecordReadTimeout}.");
        }
        finally
        {
            _queries.TryRemove(correlationId, out _);
            if (ordered)
            {
                lock (_queryAllOrder)
                {
                    _queryAllOrder.Remove(correlationId);
                }
            }
        }
    }

    /// <summary>Queries waiting for an answer, as held in memory (for tests: nothing may stay once they end).</summary>
    internal int PendingQueries
    {
        get
        {
            lock (_queryAllOrder)
            {
                return _queries.Count + _queryAllOrder.Count;
            }
        }
    }

    private string? OldestQueryAll()
    {
        lock (_queryAllOrder)
        {
            return _queryAllOrder.First?.Value;
        }
    }

    public void Handle(Message message)
    {
        switch ((PresenceAction)message.Action)
        {
            case PresenceAction.PresenceJoinAll:
            case PresenceAction.PresenceLeaveAll:
                _everyone.OnNext(new PresenceChange(message.Name ?? "", message.Action == (int)PresenceAction.PresenceJoinAll));
                break;
            case PresenceAction.PresenceJoin:
            case PresenceAction.PresenceLeave:
                _perUser.OnNext(new PresenceChange(message.Name ?? "", message.Action == (int)PresenceAction.PresenceJoin));
                break;
            case PresenceAction.QueryAllResponse:
            case PresenceAction.QueryResponse:
            case PresenceAction.QueryCountResponse:
                if (message.CorrelationId is not null && _queries.TryGetValue(message.CorrelationId, out var reply))
                {
                    reply.TrySetResult(message);
                }
                else if (message.CorrelationId is null && message.Action == (int)PresenceAction.QueryAllResponse && OldestQueryAll() is { } oldest && _queries.TryGetValue(oldest, out var first))
                {
                    // deepstream servers answer QUERY_ALL without the correlation id: answers come in order.
                    first.TrySetResult(message);
                }
                break;
            default:
                if (message.IsError)
                {
                    if (message.CorrelationId is not null && _queries.TryGetValue(message.CorrelationId, out var failed))
                    {
                        failed.TrySetException(new StateMeshProtocolException($"The presence query failed: {ActionNames.Of(Topic.Presence, message.Action)}.", Topic.Presence, message.Action));
                    }
                    ClientLog.NodeError(client.Logger, message.ToString());
                }
                break;
        }
    }

    /// <summary>Called under the client's gate once logged in: subscribe again to what is observed.</summary>
    public void OnOpened(ClientLink link)
    {
        if (_everyoneReferences > 0)
        {
            link.TrySend(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.SubscribeAll, CorrelationId = client.NextCorrelationId() });
        }
        if (_users.Count > 0)
        {
            link.TrySend(new Message { Topic = Topic.Presence, Action = (int)PresenceAction.Subscribe, Names = [.. _users.Keys], CorrelationId = client.NextCorrelationId() });
        }
    }
}
