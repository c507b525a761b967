using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace WebhookBridge;

/// <summary>
/// Slack's outgoing webhooks and slash commands: a form post (token, team_domain, channel_name, user_name, text,
/// trigger_word). It is taken only when it proves it came from the chat: Slack's signature (X-Slack-Signature, an
/// HMAC-SHA256 of <c>v0:timestamp:body</c> with the signing secret) made within the last five minutes and not seen
/// before, or, without a signing secret, the webhook's token.
/// </summary>
public sealed class SlackInbound(BridgeOptions options, TimeProvider time)
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(5);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _seen = new(StringComparer.Ordinal);

    /// <summary>Null when the post is genuine, else why it is refused.</summary>
    public string? Refusal(IHeaderDictionary headers, string body, IFormCollection form)
    {
        if (options.SigningSecret is { Length: > 0 } secret)
        {
            var timestamp = headers["X-Slack-Request-Timestamp"].ToString();
            var signature = headers["X-Slack-Signature"].ToString();
            if (!long.TryParse(timestamp, out var seconds) || signature.Length == 0)
            {
                return "the post is not signed";
            }
            var now = time.GetUtcNow();
            if ((now - DateTimeOffset.FromUnixTimeSeconds(seconds)).Duration() > Window)
            {
                return "the signature is older than five minutes";
            }
            var expected = "v0=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"v0:{timestamp}:{body}")));
            if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(expected), Encoding.UTF8.GetBytes(signature)))
            {
                return "the signature does not match";
            }
            Forget(now);
            if (!_seen.TryAdd(signature, now + Window))
            {
                return "the post was already taken (a replay)";
            }
            return null;
        }
        if (options.Token is { Length: > 0 } token)
        {
            return CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(form["token"].ToString()), Encoding.UTF8.GetBytes(token)) ? null : "the token does not match";
        }
        return "the bridge has neither a signing secret nor a token";
    }

    /// <summary>The todo a post asks for: its text without the trigger word.</summary>
    public static string Title(IFormCollection form)
    {
        var text = form["text"].ToString().Trim();
        var trigger = form["trigger_word"].ToString();
        if (trigger.Length > 0 && text.StartsWith(trigger, StringComparison.OrdinalIgnoreCase))
        {
            text = text[trigger.Length..].TrimStart(' ', ':', ',').Trim();
        }
        return text.Length > 500 ? text[..500] : text;
    }

    private void Forget(DateTimeOffset now)
    {
        if (_seen.Count < 1000)
        {
            return;
        }
        foreach (var (signature, until) in _seen)
        {
            if (until < now)
            {
                _seen.TryRemove(signature, out _);
            }
        }
    }
}
