using System.Text.Json;
using System.Text.Json.Nodes;
using StateMesh.Storage;

namespace StateMesh.Auth;

/// <summary>
/// deepstream's <c>storage</c> strategy (see <see cref="StorageAuthOptions"/>): users are records
/// <c>{Table}/{username}</c> with a PBKDF2 hash, read through the record store (in a cluster, the cluster's).
/// An unknown username passes to the next strategy, or is created with the password it gave when
/// <see cref="StorageAuthOptions.CreateUser"/> is set. Keep the table out of clients' reach with a permission such as
/// <c>"users/*": { read: false, write: false, create: false, delete: false }</c>.
/// </summary>
internal sealed class StorageAuthenticationHandler(StorageAuthOptions options, Func<Records.RecordsTopic> records) : IAuthenticationHandler
{
    private static readonly string DummyHash = PasswordHash.Create(Guid.NewGuid().ToString());

    public async ValueTask<AuthenticationResult?> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken)
    {
        var username = context.GetString("username");
        var password = context.GetString("password");
        if (string.IsNullOrEmpty(username) || password is null || username.Contains('/', StringComparison.Ordinal))
        {
            return null;
        }
        var name = $"{options.Table}/{username}";
        var stored = await records().ReadForRuleAsync(name).ConfigureAwait(false);
        if (stored is null)
        {
            if (!options.CreateUser)
            {
                await PasswordHash.VerifyGatedAsync(password, DummyHash, cancellationToken).ConfigureAwait(false);
                return null;
            }
            var id = Guid.NewGuid().ToString();
            var user = new JsonObject
            {
                ["password"] = await PasswordHash.CreateGatedAsync(password, cancellationToken).ConfigureAwait(false),
                ["id"] = id,
                ["clientData"] = new JsonObject(),
                ["serverData"] = new JsonObject(),
            };
            if (await records().CreateForNodeAsync(name, System.Text.Encoding.UTF8.GetBytes(user.ToJsonString())).ConfigureAwait(false))
            {
                return AuthenticationResult.Success(id, new JsonObject(), new JsonObject());
            }
            // Another login made the same user at the same moment: check against what it stored.
            stored = await records().ReadForRuleAsync(name).ConfigureAwait(false);
            if (stored is null)
            {
                return AuthenticationResult.Failure();
            }
        }
        JsonObject? record;
        try
        {
            record = JsonNode.Parse(stored.Value.Data.Span) as JsonObject;
        }
        catch (JsonException)
        {
            record = null;
        }
        if (record?["password"] is not JsonValue hashValue || !hashValue.TryGetValue<string>(out var hash) || !PasswordHash.IsWellFormed(hash))
        {
            return AuthenticationResult.Failure(new JsonObject { ["error"] = "the user's record holds no password hash" });
        }
        if (!await PasswordHash.VerifyGatedAsync(password, hash, cancellationToken).ConfigureAwait(false))
        {
            return AuthenticationResult.Failure();
        }
        var userId = record["id"] is JsonValue idValue && idValue.TryGetValue<string>(out var storedId) ? storedId : username;
        return AuthenticationResult.Success(userId, record["clientData"]?.DeepClone(), record["serverData"]?.DeepClone());
    }
}
