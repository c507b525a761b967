using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;

namespace StateMesh.Auth;

/// <summary>
/// deepstream's <c>http</c> strategy (see <see cref="HttpAuthOptions"/>): a webhook decides who logs in. Timeouts,
/// refused connections and retry statuses are tried again up to <see cref="HttpAuthOptions.RetryAttempts"/> times.
/// </summary>
internal sealed class HttpAuthenticationHandler : IAuthenticationHandler, IDisposable
{
    private readonly HttpAuthOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly HttpClient _http;

    public HttpAuthenticationHandler(HttpAuthOptions options, ILogger logger, TimeProvider time, HttpMessageHandler? handler = null)
    {
        _options = options;
        _logger = logger;
        _time = time;
        _http = new HttpClient(handler ?? new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2), AllowAutoRedirect = false })
        {
            Timeout = Timeout.InfiniteTimeSpan, // each attempt has its own
        };
    }

    public async ValueTask<AuthenticationResult?> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken)
    {
        var body = new JsonObject
        {
            ["authData"] = JsonNode.Parse(context.AuthData.GetRawText()),
            ["connectionData"] = new JsonObject { ["remoteAddress"] = context.RemoteAddress },
        }.ToJsonString();
        for (var attempt = 0; ; attempt++)
        {
            if (attempt > 0)
            {
                await Task.Delay(_options.RetryInterval, _time, cancellationToken).ConfigureAwait(false);
            }
            var last = attempt >= _options.RetryAttempts;
            using var request = new HttpRequestMessage(HttpMethod.Post, _options.EndpointUrl) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            foreach (var (name, value) in _options.Headers)
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }
            foreach (var field in _options.PromoteToHeader)
            {
                if (context.AuthData.ValueKind == JsonValueKind.Object && context.AuthData.TryGetProperty(field, out var value) && value.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined))
                {
                    request.Headers.TryAddWithoutValidation(field, value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText());
                }
            }
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.RequestTimeout);
            HttpResponseMessage response;
            string text;
            try
            {
                response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException || ex is OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                AuthLog.WebhookFailed(_logger, _options.EndpointUrl!.ToString(), attempt + 1, ex is OperationCanceledException ? $"no answer within {_options.RequestTimeout}" : ex.Message);
                if (last)
                {
                    return GaveUp();
                }
                continue;
            }
            using (response)
            {
                try
                {
                    text = await ReadBoundedAsync(response, timeout.Token).ConfigureAwait(false);
                }
                catch (InvalidDataException ex)
                {
                    // Too much to be an answer: a refusal, not something to ask again.
                    AuthLog.WebhookFailed(_logger, _options.EndpointUrl!.ToString(), attempt + 1, ex.Message);
                    return _options.ReportInvalidParameters ? AuthenticationResult.Failure(new JsonObject { ["error"] = "the login webhook answered with too much" }) : null;
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException || ex is OperationCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    AuthLog.WebhookFailed(_logger, _options.EndpointUrl!.ToString(), attempt + 1, ex is OperationCanceledException ? $"no answer within {_options.RequestTimeout}" : ex.Message);
                    if (last)
                    {
                        return GaveUp();
                    }
                    continue;
                }
                var status = (int)response.StatusCode;
                if (_options.RetryStatusCodes.Contains(status))
                {
                    AuthLog.WebhookFailed(_logger, _options.EndpointUrl!.ToString(), attempt + 1, $"status {status}");
                    if (last)
                    {
                        return GaveUp();
                    }
                    continue;
                }
                if (!_options.PermittedStatusCodes.Contains(status))
                {
                    if (status >= 500)
                    {
                        AuthLog.WebhookFailed(_logger, _options.EndpointUrl!.ToString(), attempt + 1, $"status {status}");
                    }
                    return _options.ReportInvalidParameters ? AuthenticationResult.Failure(Reason(text)) : null;
                }
                return Accepted(text);
            }
        }
    }

    private AuthenticationResult? GaveUp() =>
        _options.ReportInvalidParameters ? AuthenticationResult.Failure(new JsonObject { ["error"] = "AUTH_RETRY_ATTEMPTS_EXCEEDED" }) : null;

    /// <summary>The webhook's reason for a refusal, for the client: its JSON object, or its text as <c>{"error": …}</c>.</summary>
    private static JsonNode? Reason(string text)
    {
        if (text.Length == 0)
        {
            return null;
        }
        try
        {
            if (JsonNode.Parse(text) is JsonObject { Count: > 0 } reason)
            {
                return reason;
            }
        }
        catch (JsonException)
        {
        }
        return new JsonObject { ["error"] = text };
    }

    private AuthenticationResult Accepted(string text)
    {
        JsonNode? answer = null;
        try
        {
            answer = text.Length == 0 ? null : JsonNode.Parse(text);
        }
        catch (JsonException)
        {
            // A body that is not JSON is the user id as text.
        }
        switch (answer)
        {
            case JsonObject user:
                var id = user["id"] is JsonValue v && v.TryGetValue<string>(out var i) ? i
                    : user["username"] is JsonValue u && u.TryGetValue<string>(out var n) ? n
                    : OpenAuthenticationHandler.AnonymousId;
                return AuthenticationResult.Success(id, user["clientData"]?.DeepClone(), user["serverData"]?.DeepClone());
            case JsonValue value when value.TryGetValue<string>(out var name):
                return AuthenticationResult.Success(name);
            default:
                return text.Length > 0 && answer is null
                    ? AuthenticationResult.Success(text.Trim())
                    : AuthenticationResult.Success(OpenAuthenticationHandler.AnonymousId);
        }
    }

    /// <summary>At most 64 KiB of the answer: a webhook cannot make the node hold more.</summary>
    private static async Task<string> ReadBoundedAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        const int Max = 64 * 1024;
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        var buffer = new byte[Max + 1];
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(read), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }
            read += n;
        }
        if (read > Max)
        {
            throw new InvalidDataException($"the webhook answered with more than {Max} bytes");
        }
        return Encoding.UTF8.GetString(buffer, 0, read);
    }

    public void Dispose() => _http.Dispose();
}

internal static partial class AuthLog
{
    [LoggerMessage(EventId = 700, EventName = "AuthWebhookFailed", Level = LogLevel.Warning, Message = "The login webhook {Url} failed (attempt {Attempt}): {Problem}")]
    public static partial void WebhookFailed(ILogger logger, string url, int attempt, string problem);
}
