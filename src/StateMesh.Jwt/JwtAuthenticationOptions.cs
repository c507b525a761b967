namespace StateMesh.Jwt;

/// <summary>
/// Logins with a JSON Web Token in the login data (<c>{"token": "eyJ…"}</c>): the token must be signed by one of
/// <see cref="SigningKeys"/>, come from one of <see cref="Issuers"/> for one of <see cref="Audiences"/>, and not be
/// expired (give or take <see cref="ClockSkew"/>). The user id is the claim <see cref="IdClaim"/>; the token's claims
/// are the user's serverData (permission rules read them as <c>user.data</c>).
/// </summary>
public sealed class JwtAuthenticationOptions
{
    /// <summary>The configuration section StateMesh.Server binds these from.</summary>
    public const string SectionName = "StateMesh:Auth:Jwt";

    /// <summary>Accepted issuers (<c>iss</c>); at least one.</summary>
    public List<string> Issuers { get; set; } = [];

    /// <summary>Accepted audiences (<c>aud</c>); at least one.</summary>
    public List<string> Audiences { get; set; } = [];

    /// <summary>Keys that may have signed a token; at least one.</summary>
    public List<JwtSigningKey> SigningKeys { get; set; } = [];

    /// <summary>How far a token's times may be off the node's clock.</summary>
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The field of the login data that holds the token; a login without it passes to the next strategy.</summary>
    public string TokenField { get; set; } = "token";

    /// <summary>The claim that is the user id.</summary>
    public string IdClaim { get; set; } = "sub";

    /// <summary>A claim sent to the client on login as its clientData, if the token has it.</summary>
    public string ClientDataClaim { get; set; } = "clientData";
}

/// <summary>A key that may sign tokens: a shared secret (HMAC) or a public key in PEM (RSA or ECDSA).</summary>
public sealed class JwtSigningKey
{
    /// <summary>An HMAC secret as text (HS256, HS384, HS512); at least 32 bytes.</summary>
    public string? Secret { get; set; }

    /// <summary>A public key in PEM (<c>-----BEGIN PUBLIC KEY-----</c>): RSA (RS256, PS256…) or ECDSA (ES256…).</summary>
    public string? PublicKeyPem { get; set; }

    /// <summary>The key id (<c>kid</c>) tokens name it by, if they do.</summary>
    public string? KeyId { get; set; }
}
