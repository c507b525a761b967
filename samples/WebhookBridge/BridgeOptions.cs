namespace WebhookBridge;

/// <summary>The section <c>Bridge</c>: where the todo list is, where the chat service is, and how it proves its posts.</summary>
public sealed class BridgeOptions
{
    /// <summary>The StateMesh node that holds the todo list (the TodoMvc sample serves one on /statemesh).</summary>
    public string StateMesh { get; set; } = "ws://127.0.0.1:5080/statemesh";

    /// <summary>The chat's incoming webhook: each new todo is POSTed here as <c>{"text": …}</c>.</summary>
    public Uri? ChatWebhookUrl { get; set; }

    /// <summary>The chat's signing secret: inbound posts must carry a valid X-Slack-Signature (preferred).</summary>
    public string? SigningSecret { get; set; }

    /// <summary>The outgoing webhook's token: inbound posts must carry it (when no signing secret is set).</summary>
    public string? Token { get; set; }

    /// <summary>Which todos were posted already, so that a restart posts none twice.</summary>
    public string StateFile { get; set; } = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "StateMesh", "WebhookBridge", "posted.json");
}
