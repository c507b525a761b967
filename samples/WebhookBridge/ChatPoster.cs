using System.Net;
using System.Net.Http.Json;
using System.Reactive.Linq;
using System.Text.Json;
using System.Threading.Channels;

namespace WebhookBridge;

/// <summary>
/// Posts each new todo to the chat's incoming webhook as <c>{"text": "New todo: …"}</c>. A 429 or a 5xx is tried again
/// after the Retry-After the chat asked for, else with a growing pause; a todo counts as posted only once the chat
/// said 2xx, and what was posted is kept in <see cref="BridgeOptions.StateFile"/>, so a reconnect or a restart posts
/// nothing twice. On its very first start the bridge takes the todos already there as posted.
/// </summary>
public sealed class ChatPoster(TodoList todos, BridgeOptions options, HttpClient http, ILogger<ChatPoster> logger)
{
    private readonly HashSet<string> _posted = [];
    private readonly Channel<bool> _changed = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>A todo that came from the chat: it is not posted back there.</summary>
    public void MarkPosted(string name)
    {
        lock (_posted)
        {
            _posted.Add(name);
        }
        Save();
    }

    public async Task RunAsync(CancellationToken stopping)
    {
        if (!Load())
        {
            foreach (var name in todos.Entries)
            {
                _posted.Add(name);
            }
            Save();
        }
        using var subscription = todos.Changes.Subscribe(_ => _changed.Writer.TryWrite(true));
        _changed.Writer.TryWrite(true);
        await foreach (var _ in _changed.Reader.ReadAllAsync(stopping))
        {
            foreach (var name in todos.Entries)
            {
                bool posted;
                lock (_posted)
                {
                    posted = _posted.Contains(name);
                }
                if (posted || await todos.TitleAsync(name, stopping) is not { } title)
                {
                    continue;
                }
                await PostAsync(title, stopping);
                lock (_posted)
                {
                    _posted.Add(name);
                }
                Save();
                logger.LogInformation("Posted {Todo} to the chat", name);
            }
        }
    }

    private async Task PostAsync(string title, CancellationToken stopping)
    {
        var pause = TimeSpan.FromMilliseconds(250);
        for (var attempt = 1; ; attempt++)
        {
            TimeSpan? wait;
            try
            {
                using var response = await http.PostAsJsonAsync(options.ChatWebhookUrl, new ChatMessage($"New todo: {title}"), ChatJson.Default.ChatMessage, stopping);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
                var status = (int)response.StatusCode;
                if (status != (int)HttpStatusCode.TooManyRequests && status < 500)
                {
                    // The chat will not take it (a bad URL or payload): say so, and do not try forever.
                    logger.LogError("The chat refused the post with {Status}; not posted: {Title}", status, title);
                    return;
                }
                wait = RetryAfter(response);
                logger.LogWarning("The chat answered {Status} (attempt {Attempt}); trying again", status, attempt);
            }
            catch (HttpRequestException ex)
            {
                wait = null;
                logger.LogWarning("The chat did not answer (attempt {Attempt}): {Problem}", attempt, ex.Message);
            }
            await Task.Delay(wait ?? pause, stopping);
            pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
        }
    }

    private static TimeSpan? RetryAfter(HttpResponseMessage response) => response.Headers.RetryAfter switch
    {
        { Delta: { } delta } => delta,
        { Date: { } date } => date - DateTimeOffset.UtcNow is var left && left > TimeSpan.Zero ? left : TimeSpan.Zero,
        _ => null,
    };

    private bool Load()
    {
        if (!File.Exists(options.StateFile))
        {
            return false;
        }
        foreach (var name in JsonSerializer.Deserialize(File.ReadAllText(options.StateFile), ChatJson.Default.StringArray) ?? [])
        {
            _posted.Add(name);
        }
        return true;
    }

    private void Save()
    {
        string[] names;
        lock (_posted)
        {
            names = [.. _posted];
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(options.StateFile))!);
        var temporary = options.StateFile + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(names, ChatJson.Default.StringArray));
        File.Move(temporary, options.StateFile, overwrite: true);
    }
}

/// <summary>Slack's incoming-webhook payload.</summary>
public sealed record ChatMessage(string Text);

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
[System.Text.Json.Serialization.JsonSerializable(typeof(ChatMessage))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string[]))]
internal sealed partial class ChatJson : System.Text.Json.Serialization.JsonSerializerContext;
