using System.Text.Json.Nodes;
using StateMesh.Client;

namespace WebhookBridge;

/// <summary>
/// The TodoMvc sample's data as a client sees it: the list "todos" of record names, each todo a record
/// <c>todo/&lt;id&gt;</c> holding <c>{ title, completed }</c>. Adds are written one at a time; when a page wrote the list
/// at the same moment, the merge keeps both its entries and this bridge's.
/// </summary>
public sealed class TodoList : IAsyncDisposable
{
    public const string Name = "todos";

    private readonly IStateMeshClient _client;
    private readonly IRecord<JsonArray> _list;
    private readonly SemaphoreSlim _writing = new(1, 1);
    private readonly HashSet<string> _adding = [];

    private TodoList(IStateMeshClient client, IRecord<JsonArray> list)
    {
        _client = client;
        _list = list;
        // A conflict: the node's list, plus this bridge's adds that it does not have yet.
        _list.MergeStrategy = MergeStrategy.Custom(conflict =>
        {
            var merged = conflict.Remote is JsonArray remote ? (JsonArray)remote.DeepClone() : [];
            lock (_adding)
            {
                foreach (var name in _adding)
                {
                    if (!merged.Any(e => e?.GetValue<string>() == name))
                    {
                        merged.Add(name);
                    }
                }
            }
            return merged;
        });
    }

    public static async Task<TodoList> OpenAsync(IStateMeshClient client, CancellationToken cancellationToken = default) =>
        new(client, await client.Records.GetAsync<JsonArray>(Name, cancellationToken));

    /// <summary>The names in the list now and after every change.</summary>
    public IObservable<JsonArray> Changes => _list.Changes;

    public IReadOnlyList<string> Entries => _list.Value is { } array ? [.. array.Select(e => e?.GetValue<string>()).OfType<string>()] : [];

    /// <summary>
    /// Adds a todo: its record first, then its name at the end of the list. <paramref name="named"/> hears the record's
    /// name before the list shows it.
    /// </summary>
    public async Task<string> AddAsync(string title, Action<string>? named = null, CancellationToken cancellationToken = default)
    {
        var name = $"todo/{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds():x}-{Guid.NewGuid().ToString("N")[..6]}";
        named?.Invoke(name);
        var written = await _client.Records.SetDataWithAckAsync(name, new JsonObject { ["title"] = title, ["completed"] = false }, cancellationToken);
        if (!written.Succeeded)
        {
            throw new InvalidOperationException($"the todo could not be written: {written.Error}");
        }
        await _writing.WaitAsync(cancellationToken);
        try
        {
            lock (_adding)
            {
                _adding.Add(name);
            }
            var entries = _list.Value is { } current ? (JsonArray)current.DeepClone() : [];
            entries.Add(name);
            var added = await _list.SetWithAckAsync(entries, cancellationToken);
            if (!added.Succeeded)
            {
                throw new InvalidOperationException($"the todo could not be listed: {added.Error}");
            }
        }
        finally
        {
            lock (_adding)
            {
                _adding.Remove(name);
            }
            _writing.Release();
        }
        return name;
    }

    /// <summary>A todo's title, or null when its record is missing or holds none.</summary>
    public async Task<string?> TitleAsync(string name, CancellationToken cancellationToken = default)
    {
        var todo = await _client.Records.SnapshotAsync<JsonObject>(name, cancellationToken);
        return todo?.Value["title"] is JsonValue title && title.TryGetValue<string>(out var text) ? text : null;
    }

    public ValueTask DisposeAsync() => _list.DisposeAsync();
}
