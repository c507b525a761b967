using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace StateMesh.Auth;

/// <summary>
/// PBKDF2 password hashes in the form <c>pbkdf2-sha256$iterations$salt$hash</c> (salt and hash in base64). New hashes
/// use OWASP's figure for PBKDF2-SHA256 (600,000 iterations); a hash carries its own count, so older hashes made with
/// fewer iterations still verify.
/// </summary>
public static class PasswordHash
{
    private const string Scheme = "pbkdf2-sha256";
    /// <summary>The iterations of a new hash: OWASP's recommendation for PBKDF2 with HMAC-SHA256.</summary>
    public const int DefaultIterations = 600_000;
    private const int SaltBytes = 16;
    private const int MaxIterations = 10 * DefaultIterations;
    private const int HashBytes = 32;

    /// <summary>Makes a hash of <paramref name="password"/> with a fresh random salt.</summary>
    public static string Create(string password, int iterations = DefaultIterations)
    {
        var salt = RandomNumberGenerator.GetBytes(SaltBytes);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, HashBytes);
        return string.Join('$', Scheme, iterations.ToString(CultureInfo.InvariantCulture), Convert.ToBase64String(salt), Convert.ToBase64String(hash));
    }

    // A hash costs a quarter of a second of CPU on purpose: at most one per core runs at a time, so that a flood of
    // logins waits its turn instead of taking every thread the node has.
    internal static readonly SemaphoreSlim Checks = new(Environment.ProcessorCount, Environment.ProcessorCount);

    internal static async ValueTask<bool> VerifyGatedAsync(string password, string hash, CancellationToken cancellationToken)
    {
        await Checks.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return Verify(password, hash);
        }
        finally
        {
            Checks.Release();
        }
    }

    internal static async ValueTask<string> CreateGatedAsync(string password, CancellationToken cancellationToken)
    {
        await Checks.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return Create(password);
        }
        finally
        {
            Checks.Release();
        }
    }

    /// <summary>True when <paramref name="hash"/> has this form.</summary>
    public static bool IsWellFormed(string hash) => TryParse(hash, out _, out _, out _);

    /// <summary>Checks a password against a hash in constant time. A malformed hash never verifies.</summary>
    public static bool Verify(string password, string hash)
    {
        if (!TryParse(hash, out var iterations, out var salt, out var expected))
        {
            return false;
        }
        var actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    private static bool TryParse(string hash, out int iterations, out byte[] salt, out byte[] expected)
    {
        iterations = 0;
        salt = expected = [];
        var parts = hash.Split('$');
        // A hash with more iterations than anyone makes would only tie up a login check: not a hash.
        if (parts.Length != 4 || parts[0] != Scheme || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out iterations) || iterations < 1 || iterations > MaxIterations)
        {
            return false;
        }
        try
        {
            salt = Convert.FromBase64String(parts[2]);
            expected = Convert.FromBase64String(parts[3]);
        }
        catch (FormatException)
        {
            return false;
        }
        return salt.Length > 0 && expected.Length > 0;
    }
}
