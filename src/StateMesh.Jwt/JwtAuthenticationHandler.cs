using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using StateMesh.Auth;

namespace StateMesh.Jwt;

/// <summary>Checks the token of a login (see <see cref="JwtAuthenticationOptions"/>); a login without one passes on.</summary>
internal sealed class JwtAuthenticationHandler : IAuthenticationHandler
{
    private readonly JwtAuthenticationOptions _options;
    private readonly JsonWebTokenHandler _tokens = new() { MapInboundClaims = false };
    private readonly TokenValidationParameters _parameters;

    public JwtAuthenticationHandler(IOptions<JwtAuthenticationOptions> options)
    {
        _options = options.Value;
        _parameters = new TokenValidationParameters
        {
            ValidIssuers = _options.Issuers,
            ValidateIssuer = true,
            ValidAudiences = _options.Audiences,
            ValidateAudience = true,
            IssuerSigningKeys = Keys(_options.SigningKeys),
            ValidateIssuerSigningKey = true,
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            ValidateLifetime = true,
            ClockSkew = _options.ClockSkew,
        };
    }

    private static List<SecurityKey> Keys(IEnumerable<JwtSigningKey> keys)
    {
        var result = new List<SecurityKey>();
        foreach (var key in keys)
        {
            SecurityKey made;
            if (key.Secret is { Length: > 0 } secret)
            {
                made = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(secret));
            }
            else if (key.PublicKeyPem is { Length: > 0 } pem)
            {
                made = PublicKey(pem);
            }
            else
            {
                throw new OptionsValidationException(JwtAuthenticationOptions.SectionName, typeof(JwtAuthenticationOptions), [$"{JwtAuthenticationOptions.SectionName}:SigningKeys: each key needs a Secret or a PublicKeyPem"]);
            }
            made.KeyId = key.KeyId;
            result.Add(made);
        }
        return result;
    }

    /// <summary>A public key in PEM, whichever it is: the key's own algorithm decides (an ECDSA key, else RSA).</summary>
    private static SecurityKey PublicKey(string pem)
    {
        var ecdsa = ECDsa.Create();
        try
        {
            ecdsa.ImportFromPem(pem);
            return new ECDsaSecurityKey(ecdsa);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            ecdsa.Dispose();
        }
        var rsa = RSA.Create();
        try
        {
            rsa.ImportFromPem(pem);
            return new RsaSecurityKey(rsa);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            rsa.Dispose();
            throw new OptionsValidationException(JwtAuthenticationOptions.SectionName, typeof(JwtAuthenticationOptions), [$"{JwtAuthenticationOptions.SectionName}:SigningKeys: a PublicKeyPem is neither an ECDSA nor an RSA public key ({ex.Message})"]);
        }
    }

    public async ValueTask<AuthenticationResult?> AuthenticateAsync(AuthenticationContext context, CancellationToken cancellationToken)
    {
        if (context.GetString(_options.TokenField) is not { Length: > 0 } token)
        {
            return null;
        }
        var result = await _tokens.ValidateTokenAsync(token, _parameters).ConfigureAwait(false);
        if (!result.IsValid)
        {
            return AuthenticationResult.Failure(new JsonObject { ["error"] = "INVALID_TOKEN", ["reason"] = Reason(result.Exception) });
        }
        var jwt = (JsonWebToken)result.SecurityToken;
        JsonObject claims;
        try
        {
            claims = JsonNode.Parse(Base64UrlEncoder.DecodeBytes(jwt.EncodedPayload)) as JsonObject ?? [];
        }
        catch (JsonException)
        {
            return AuthenticationResult.Failure(new JsonObject { ["error"] = "INVALID_TOKEN", ["reason"] = "the payload is not a JSON object" });
        }
        if (claims[_options.IdClaim] is not JsonValue idValue || !idValue.TryGetValue<string>(out var id) || id.Length == 0)
        {
            return AuthenticationResult.Failure(new JsonObject { ["error"] = "INVALID_TOKEN", ["reason"] = $"the token has no '{_options.IdClaim}' claim" });
        }
        return AuthenticationResult.Success(id, claims[_options.ClientDataClaim]?.DeepClone(), claims);
    }

    /// <summary>What was wrong, in words a client may see (never the key or the token).</summary>
    private static string Reason(Exception? exception) => exception switch
    {
        SecurityTokenExpiredException => "expired",
        SecurityTokenNotYetValidException => "not valid yet",
        SecurityTokenInvalidIssuerException => "wrong issuer",
        SecurityTokenInvalidAudienceException => "wrong audience",
        SecurityTokenSignatureKeyNotFoundException or SecurityTokenInvalidSignatureException => "bad signature",
        SecurityTokenNoExpirationException => "no expiry",
        SecurityTokenMalformedException or ArgumentException => "malformed",
        _ => "invalid",
    };
}
