using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using StateMesh.Auth;
using StateMesh.Hosting;
using StateMesh.Jwt;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds JWT bearer-token logins to a node's login chain (at the place of <c>handlers</c> in <c>StateMesh:Auth:Order</c>).</summary>
public static class JwtStateMeshBuilderExtensions
{
    /// <summary>Accepts logins whose login data carries a valid JSON Web Token, configured in code.</summary>
    public static IStateMeshBuilder AddJwtAuthentication(this IStateMeshBuilder builder, Action<JwtAuthenticationOptions> configure)
    {
        builder.Services.AddOptions<JwtAuthenticationOptions>().Configure(configure).Validate(Valid, Problem).ValidateOnStart();
        // A node that checks tokens lets nobody in without one, unless StateMesh:AllowAnonymous says otherwise.
        builder.Services.PostConfigure<StateMesh.StateMeshOptions>(o => o.AllowAnonymous ??= false);
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IAuthenticationHandler, JwtAuthenticationHandler>());
        return builder;
    }

    /// <summary>Accepts logins with a valid JSON Web Token, configured from a section such as <c>StateMesh:Auth:Jwt</c>.</summary>
    public static IStateMeshBuilder AddJwtAuthentication(this IStateMeshBuilder builder, IConfiguration section) =>
        builder.AddJwtAuthentication(section.Bind);

    private const string Problem = "StateMesh:Auth:Jwt needs at least one of each of Issuers, Audiences and SigningKeys (each key a Secret of 32 bytes or more, or a PublicKeyPem).";

    private static bool Valid(JwtAuthenticationOptions options) =>
        options.Issuers.Count > 0 && options.Audiences.Count > 0 && options.SigningKeys.Count > 0
        && options.SigningKeys.All(k => k.PublicKeyPem is { Length: > 0 } || k.Secret is { } s && System.Text.Encoding.UTF8.GetByteCount(s) >= 32);
}
