using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using StateMesh.Auth;
using StateMesh.Client;

namespace StateMesh.AspNetCore;

/// <summary>
/// deepstream's HTTP batch API: POST /api with <c>{token | authData, body: [operations]}</c>, answered with
/// <c>{result: SUCCESS | FAILURE | PARTIAL_SUCCESS, body: [per-operation results]}</c>; POST /api/auth issues tokens.
/// Each request acts as its user through an in-process connection to the node.
/// </summary>
internal sealed class HttpApi(StateMeshNode node)
{
    private readonly HttpTokens _tokens = new(node.Engine.Options.Limits.HttpTokens, node.Engine.Options.Limits.HttpTokenLifetime, node.Engine.Time);

    private static Task Json(HttpContext context, int status, JsonNode body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(body.ToJsonString(), context.RequestAborted);
    }

    private async Task<JsonNode?> ReadBodyAsync(HttpContext context)
    {
        // A body may be as large as a message on a socket, no larger.
        if (context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = node.Engine.Options.MaxMessageSize;
        }
        return await ReadBodyAsync(context.Request.Body, context.RequestAborted).ConfigureAwait(false);
    }

    // A name given twice is not JSON we accept: JsonObject would throw on the first lookup of any name.
    private static readonly JsonDocumentOptions BodyOptions = new() { AllowDuplicateProperties = false };

    /// <summary>The body as JSON, or null when it is not JSON (or larger than the request may be).</summary>
    internal static async Task<JsonNode?> ReadBodyAsync(Stream body, CancellationToken cancellationToken)
    {
        try
        {
            return await JsonNode.ParseAsync(body, documentOptions: BodyOptions, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is JsonException or Microsoft.AspNetCore.Http.BadHttpRequestException)
        {
            return null;
        }
    }

    private async Task<AuthenticationResult> AuthenticateAsync(HttpContext context, string loginJson)
    {
        using var document = HttpApiRequest.LoginDocument(loginJson);
        var remote = $"{context.Connection.RemoteIpAddress}:{context.Connection.RemotePort}";
        return await node.Engine.Authenticator.AuthenticateAsync(new AuthenticationContext(document.RootElement, remote), context.RequestAborted).ConfigureAwait(false);
    }

    public async Task AuthAsync(HttpContext context)
    {
        if (HttpApiRequest.ParseLogin(await ReadBodyAsync(context).ConfigureAwait(false)) is not { } loginJson)
        {
            await Json(context, StatusCodes.Status400BadRequest, new JsonObject { ["error"] = "the body must be a JSON object of login data" }).ConfigureAwait(false);
            return;
        }
        var result = await AuthenticateAsync(context, loginJson).ConfigureAwait(false);
        if (!result.IsValid)
        {
            await Json(context, StatusCodes.Status401Unauthorized, new JsonObject { ["error"] = "INVALID_AUTHENTICATION_DETAILS", ["clientData"] = result.ClientData?.DeepClone() }).ConfigureAwait(false);
            return;
        }
        var token = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        _tokens.Add(token, new HttpUser(result.Id ?? OpenAuthenticationHandler.AnonymousId, result.ServerData?.DeepClone()));
        await Json(context, StatusCodes.Status200OK, new JsonObject { ["token"] = token, ["clientData"] = result.ClientData?.DeepClone() }).ConfigureAwait(false);
    }

    public async Task ApiAsync(HttpContext context)
    {
        if (HttpApiRequest.Parse(await ReadBodyAsync(context).ConfigureAwait(false)) is not { } request)
        {
            await Json(context, StatusCodes.Status400BadRequest, new JsonObject { ["result"] = "FAILURE", ["error"] = "the body must be {\"body\": [operations]} with a token or authData" }).ConfigureAwait(false);
            return;
        }
        HttpUser user;
        if (request.Token is { } token)
        {
            if (_tokens.TryUse(token) is not { } tokenUser)
            {
                await Json(context, StatusCodes.Status401Unauthorized, new JsonObject { ["result"] = "FAILURE", ["error"] = "unknown or expired token" }).ConfigureAwait(false);
                return;
            }
            user = tokenUser;
        }
        else
        {
            var login = await AuthenticateAsync(context, request.LoginJson).ConfigureAwait(false);
            if (!login.IsValid)
            {
                await Json(context, StatusCodes.Status401Unauthorized, new JsonObject { ["result"] = "FAILURE", ["error"] = "INVALID_AUTHENTICATION_DETAILS" }).ConfigureAwait(false);
                return;
            }
            user = new HttpUser(login.Id ?? OpenAuthenticationHandler.AnonymousId, login.ServerData);
        }

        await using var client = StateMeshClient.Create(node.InProcessAddress, null, new StateMeshClientOptions { MaxReconnectAttempts = 0 }, trustedUserId: user.Id, trustedServerData: user.ServerData);
        await client.OpenAsync(context.RequestAborted).ConfigureAwait(false);
        var results = new JsonArray();
        var succeeded = 0;
        var ruleUser = node.Engine.Permissions.IsOpen ? default : StateMesh.Permissions.PermissionGate.UserValue(user.Id, user.ServerData);
        foreach (var operation in request.Operations)
        {
            var result = await ExecuteAsync(client, operation, node.Engine.Permissions, ruleUser, context.RequestAborted).ConfigureAwait(false);
            if (result["success"]?.GetValue<bool>() == true)
            {
                succeeded++;
            }
            results.Add(result);
        }
        var overall = succeeded == request.Operations.Length ? "SUCCESS" : succeeded == 0 ? "FAILURE" : "PARTIAL_SUCCESS";
        await Json(context, StatusCodes.Status200OK, new JsonObject { ["result"] = overall, ["body"] = results }).ConfigureAwait(false);
    }

    private static JsonObject Success(JsonNode? data = null, string key = "data")
    {
        var result = new JsonObject { ["success"] = true };
        if (data is not null)
        {
            result[key] = data;
        }
        return result;
    }

    private static JsonObject Failure(string error, string topic, string errorEvent) =>
        new() { ["success"] = false, ["error"] = error, ["errorTopic"] = topic, ["errorEvent"] = errorEvent };

    private static async Task<JsonObject> ExecuteAsync(StateMeshClient client, HttpApiOperation? op, StateMesh.Permissions.PermissionGate permissions, StateMesh.Permissions.RuleValue user, CancellationToken cancellationToken)
    {
        if (op is null)
        {
            return Failure("an operation must be a JSON object", "unknown", "INVALID_MESSAGE_DATA");
        }
        var (topic, action) = (op.Topic, op.Action);
        try
        {
            switch (topic, action)
            {
                case ("event", "emit") when op.EventName is { Length: > 0 } name:
                    // An event is not acknowledged: the permission to publish it is asked here, so that a refusal is reported.
                    if (!permissions.IsOpen)
                    {
                        var payload = System.Text.Encoding.UTF8.GetBytes(op.Data?.ToJsonString() ?? "null");
                        var verdict = await permissions.CheckAsync(user, StateMesh.Permissions.PermissionSection.Event, StateMesh.Permissions.RuleType.Publish, (int)StateMesh.Protocol.EventAction.Emit, name, payload).ConfigureAwait(false);
                        if (!verdict.IsAllowed)
                        {
                            var failed = verdict.Outcome == StateMesh.Permissions.PermissionOutcome.Failed;
                            return Failure(failed ? verdict.Reason ?? "the rule failed" : $"publishing '{name}' is not permitted", topic, failed ? "MESSAGE_PERMISSION_ERROR" : "MESSAGE_DENIED");
                        }
                    }
                    await client.Events.PublishAsync(name, op.Data, cancellationToken: cancellationToken).ConfigureAwait(false);
                    return Success();
                case ("rpc", "make") when op.RpcName is { Length: > 0 } name:
                    var response = await client.Rpc.MakeAsync<JsonNode?, JsonNode?>(name, op.Data, cancellationToken).ConfigureAwait(false);
                    return new JsonObject { ["success"] = true, ["data"] = response };
                case ("record" or "list", "read") when (op.RecordName ?? op.ListName) is { Length: > 0 } name:
                    var snapshot = await client.Records.SnapshotAsync<JsonNode>(name, cancellationToken).ConfigureAwait(false);
                    return snapshot is null
                        ? Failure($"record '{name}' not found", topic, "RECORD_NOT_FOUND")
                        : new JsonObject { ["success"] = true, ["data"] = snapshot.Value, ["version"] = snapshot.Version };
                case ("record", "head") when op.RecordName is { Length: > 0 } name:
                    var version = await client.Records.HeadAsync(name, cancellationToken).ConfigureAwait(false);
                    return version == -1 ? Failure($"record '{name}' not found", topic, "RECORD_NOT_FOUND") : Success(version, "version");
                case ("record" or "list", "write") when (op.RecordName ?? op.ListName) is { Length: > 0 } name:
                    var data = op.Data;
                    if (topic == "list" && !op.DataIsRecordNames)
                    {
                        return Failure("list data must be an array of record names", topic, "INVALID_MESSAGE_DATA");
                    }
                    var path = op.Path;
                    var written = path is null
                        ? await client.Records.SetDataWithAckAsync(name, data, cancellationToken).ConfigureAwait(false)
                        : await client.Records.SetDataWithAckAsync(name, path, data, cancellationToken).ConfigureAwait(false);
                    return written.Succeeded ? Success() : Failure(written.Error ?? "the write lost a conflict", topic, Refusal(written.Error) ?? (written.Conflict is not null ? "VERSION_EXISTS" : "RECORD_UPDATE_ERROR"));
                case ("record" or "list", "delete") when (op.RecordName ?? op.ListName) is { Length: > 0 } name:
                    if (await client.Records.HeadAsync(name, cancellationToken).ConfigureAwait(false) == -1)
                    {
                        return Failure($"record '{name}' not found", topic, "RECORD_NOT_FOUND");
                    }
                    await using (var record = await client.Records.GetAsync<JsonNode>(name, cancellationToken).ConfigureAwait(false))
                    {
                        await record.DeleteAsync(cancellationToken).ConfigureAwait(false);
                    }
                    return Success();
                case ("record", "notify") when op.RecordNames is { } names:
                    await client.Records.NotifyAsync(names, cancellationToken).ConfigureAwait(false);
                    return Success();
                case ("presence", "query"):
                    if (op.Names is { } users)
                    {
                        var answer = await client.Presence.QueryAsync(users, cancellationToken).ConfigureAwait(false);
                        return Success(new JsonObject(answer.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))), "users");
                    }
                    var all = await client.Presence.QueryAllAsync(cancellationToken).ConfigureAwait(false);
                    return Success(new JsonArray([.. all.Select(u => (JsonNode?)u)]), "users");
                default:
                    return Failure($"unknown or incomplete operation '{topic}/{action}'", topic, "INVALID_MESSAGE_DATA");
            }
        }
        catch (RpcException ex)
        {
            return Failure(ex.Message, "rpc", Refusal(ex.Message) ?? ex.Code switch
            {
                RpcErrorCode.NoProvider => "NO_RPC_PROVIDER",
                RpcErrorCode.AcceptTimeout => "ACCEPT_TIMEOUT",
                RpcErrorCode.ResponseTimeout => "RESPONSE_TIMEOUT",
                _ => "REQUEST_ERROR",
            });
        }
        catch (Exception ex) when (ex is StateMeshException or ArgumentException or InvalidOperationException or TimeoutException)
        {
            return Failure(ex.Message, topic, Refusal(ex.Message) ?? "ERROR");
        }
    }

    /// <summary>deepstream's error event for an operation the permissions refused, else null.</summary>
    private static string? Refusal(string? error) =>
        error is null ? null
        : error.Contains("MessagePermissionError", StringComparison.Ordinal) ? "MESSAGE_PERMISSION_ERROR"
        : error.Contains("MessageDenied", StringComparison.Ordinal) ? "MESSAGE_DENIED"
        : null;
}
