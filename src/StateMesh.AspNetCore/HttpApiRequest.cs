using System.Text.Json;
using System.Text.Json.Nodes;

namespace StateMesh.AspNetCore;

/// <summary>
/// An /api request as read from its JSON, before anything runs: <c>{token | authData, body: [operations]}</c>. All that
/// the request's JSON decides is read here, so that the parsing can be tested (and fuzzed) without a node.
/// </summary>
internal sealed record HttpApiRequest(string? Token, string LoginJson, HttpApiOperation?[] Operations)
{
    /// <summary>
    /// The request, or null when the body is not a JSON object with a <c>body</c> array, or when a string in it is not
    /// text (invalid UTF-8 or an unpaired surrogate escape: JsonNode finds those only when a value is read).
    /// </summary>
    public static HttpApiRequest? Parse(JsonNode? body)
    {
        if (body is not JsonObject request)
        {
            return null;
        }
        try
        {
            if (request["body"] is not JsonArray operations)
            {
                return null;
            }
            var token = request["token"]?.GetValueKind() == JsonValueKind.String ? request["token"]!.GetValue<string>() : null;
            var login = (request["authData"] as JsonObject ?? []).ToJsonString();
            var parsed = new HttpApiOperation?[operations.Count];
            for (var i = 0; i < parsed.Length; i++)
            {
                parsed[i] = HttpApiOperation.Parse(operations[i]);
            }
            return new HttpApiRequest(token, login, parsed);
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>The login data of POST /api/auth as JSON text, or null when the body is not an object of text.</summary>
    public static string? ParseLogin(JsonNode? body)
    {
        try
        {
            return body is JsonObject login ? login.ToJsonString() : null;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>Login data as the authentication chain reads it.</summary>
    public static JsonDocument LoginDocument(string loginJson) => JsonDocument.Parse(loginJson);
}

/// <summary>One operation of an /api request; null where the operation is not a JSON object.</summary>
internal sealed record HttpApiOperation(
    string Topic,
    string Action,
    string? EventName,
    string? RpcName,
    string? RecordName,
    string? ListName,
    string? Path,
    JsonNode? Data,
    bool DataIsRecordNames,
    string[]? RecordNames,
    string[]? Names)
{
    public static HttpApiOperation? Parse(JsonNode? operation)
    {
        if (operation is not JsonObject op)
        {
            return null;
        }
        var data = op["data"]?.DeepClone();
        return new HttpApiOperation(
            Text(op, "topic") ?? "",
            Text(op, "action") ?? "",
            Text(op, "eventName"),
            Text(op, "rpcName"),
            Text(op, "recordName"),
            Text(op, "listName"),
            Text(op, "path"),
            data,
            data is JsonArray entries && entries.All(e => e?.GetValueKind() == JsonValueKind.String),
            op["recordNames"] is JsonArray recordNames ? [.. recordNames.Select(n => n?.ToString() ?? "")] : null,
            op["names"] is JsonArray names ? [.. names.Select(n => n?.ToString() ?? "")] : null);
    }

    private static string? Text(JsonObject op, string key) => op[key]?.GetValueKind() == JsonValueKind.String ? op[key]!.GetValue<string>() : null;
}
