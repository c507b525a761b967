using StateMesh.Auth;

namespace StateMesh.Tests.Server;

public class PasswordHashTests
{
    [Fact]
    public void A_hash_verifies_its_password_and_nothing_else()
    {
        var hash = PasswordHash.Create("correct horse", 1000);
        Assert.True(PasswordHash.Verify("correct horse", hash));
        Assert.False(PasswordHash.Verify("correct hors", hash));
        Assert.False(PasswordHash.Verify("", hash));
    }

    [Fact]
    public void Two_hashes_of_one_password_differ_by_salt()
    {
        Assert.NotEqual(PasswordHash.Create("pw", 1000), PasswordHash.Create("pw", 1000));
    }

    [Fact]
    public void New_hashes_use_owasp_iterations_and_older_counts_still_verify()
    {
        var hash = PasswordHash.Create("pw");
        Assert.Equal("600000", hash.Split('$')[1]);
        Assert.True(PasswordHash.Verify("pw", hash));
        var older = PasswordHash.Create("pw", 210_000);
        Assert.True(PasswordHash.Verify("pw", older));
        Assert.False(PasswordHash.Verify("pW", older));
    }

    [Theory]
    [InlineData("")]
    [InlineData("plain")]
    [InlineData("pbkdf2-sha256$x$AAAA$AAAA")]
    [InlineData("pbkdf2-sha256$0$AAAA$AAAA")]
    [InlineData("pbkdf2-sha256$10$not base64!$AAAA")]
    [InlineData("md5$10$AAAA$AAAA")]
    public void Malformed_hashes_never_verify(string hash)
    {
        Assert.False(PasswordHash.IsWellFormed(hash));
        Assert.False(PasswordHash.Verify("anything", hash));
    }
}
