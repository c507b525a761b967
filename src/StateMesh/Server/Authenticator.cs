using StateMesh.Auth;

namespace StateMesh.Server;

/// <summary>The chain of handlers: the first non-null answer wins; no answer is a refusal.</summary>
internal sealed class Authenticator(IReadOnlyList<IAuthenticationHandler> handlers)
{
    public IReadOnlyList<IAuthenticationHandler> Handlers => handlers;

    public async ValueTask<AuthenticationResult> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken)
    {
        foreach (var handler in handlers)
        {
            var result = await handler.AuthenticateAsync(context, cancellationToken).ConfigureAwait(false);
            if (result is not null)
            {
                return result;
            }
        }
        return AuthenticationResult.Failure();
    }
}
