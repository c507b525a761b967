using System.Text.Json;
using System.Text.Json.Nodes;

namespace StateMesh.Auth;

/// <summary>
/// Decides whether a login is valid. Handlers form a chain: the first that returns a non-null result decides;
/// return <see langword="null"/> to let the next one answer.
/// </summary>
public interface IAuthenticationHandler
{
    /// <summary>Answers a login, or returns null to pass.</summary>
    ValueTask<AuthenticationResult?> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken);
}

/// <summary>What a client sent to log in, and where from.</summary>
/// <param name="AuthData">The login data: a JSON object such as <c>{"username":"ana","password":"…"}</c>.</param>
/// <param name="RemoteAddress">The peer's address.</param>
public sealed record AuthenticationContext(JsonElement AuthData, string RemoteAddress)
{
    /// <summary>The string property <paramref name="name"/> of the login data, if any.</summary>
    public string? GetString(string name) =>
        AuthData.ValueKind == JsonValueKind.Object && AuthData.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;
}

/// <summary>The answer to a login.</summary>
public sealed record AuthenticationResult
{
    /// <summary>Whether the login is accepted.</summary>
    public bool IsValid { get; init; }

    /// <summary>The user id (used by presence); "OPEN" for anonymous users.</summary>
    public string? Id { get; init; }

    /// <summary>Sent to the client: on success with AUTH_SUCCESSFUL, on failure as the reason.</summary>
    public JsonNode? ClientData { get; init; }

    /// <summary>Kept on the node for permissions; never sent to the client.</summary>
    public JsonNode? ServerData { get; init; }

    /// <summary>An accepted login.</summary>
    public static AuthenticationResult Success(string id, JsonNode? clientData = null, JsonNode? serverData = null) =>
        new() { IsValid = true, Id = id, ClientData = clientData, ServerData = serverData };

    /// <summary>A refused login, with an optional reason for the client.</summary>
    public static AuthenticationResult Failure(JsonNode? reason = null) => new() { IsValid = false, ClientData = reason };
}

/// <summary>Anyone may log in: the id is <c>authData.username</c>, else "OPEN" (deepstream's "none").</summary>
public sealed class OpenAuthenticationHandler : IAuthenticationHandler
{
    /// <summary>The id given to anonymous users; presence ignores it.</summary>
    public const string AnonymousId = "OPEN";

    /// <inheritdoc />
    public ValueTask<AuthenticationResult?> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken) =>
        ValueTask.FromResult<AuthenticationResult?>(AuthenticationResult.Success(context.GetString("username") is { Length: > 0 } name ? name : AnonymousId));
}
