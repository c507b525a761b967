using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;

namespace StateMesh.Auth;

/// <summary>
/// Users from <see cref="StateMeshOptions.Users"/>. Passes (returns null) for a username it does not know,
/// so that a later handler may answer; refuses a known user with a wrong password.
/// </summary>
internal sealed class ConfiguredUsersAuthenticationHandler(IOptions<StateMeshOptions> options) : IAuthenticationHandler
{
    private readonly Dictionary<string, StateMeshUserOptions> _users = options.Value.Users;
    private static readonly string DummyHash = PasswordHash.Create(Guid.NewGuid().ToString());

    public async ValueTask<AuthenticationResult?> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken)
    {
        // At most one hash check per core at a time (PasswordHash.Checks), shared with the other password strategies.
        await PasswordHash.Checks.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return Check(context);
        }
        finally
        {
            PasswordHash.Checks.Release();
        }
    }

    private AuthenticationResult? Check(AuthenticationContext context)
    {
        var username = context.GetString("username");
        if (username is null || !_users.TryGetValue(username, out var user))
        {
            // Spend what a real check costs, so that timing does not tell which usernames exist.
            PasswordHash.Verify(context.GetString("password") ?? string.Empty, DummyHash);
            return null;
        }
        var password = context.GetString("password") ?? string.Empty;
        var valid = user.PasswordHash is not null
            ? PasswordHash.Verify(password, user.PasswordHash)
            : user.Password is not null && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                System.Text.Encoding.UTF8.GetBytes(password), System.Text.Encoding.UTF8.GetBytes(user.Password));
        var result = valid
            ? AuthenticationResult.Success(username, ParseJson(user.ClientData), ParseJson(user.ServerData))
            : AuthenticationResult.Failure();
        return result;
    }

    private static JsonNode? ParseJson(string? json) => json is null ? null : JsonNode.Parse(json);
}
