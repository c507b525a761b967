using System.Diagnostics;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>The runnable node, as an operator starts it.</summary>
public class ServerProcessTests
{
    [Fact]
    public async Task Ctrl_c_tells_clients_closing_and_exits_cleanly()
    {
        await using var server = await ServerProcess.StartAsync();
        await using var client = await RawClient.LoginAsync(server.Port);
        server.Signal("INT");
        var closing = await client.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Closing), (closing.Topic, closing.Action));
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Sigint_stops_the_server_even_when_it_was_started_with_sigint_ignored()
    {
        await using var server = await ServerProcess.StartIgnoringSigintAsync();
        await using var client = await RawClient.LoginAsync(server.Port);
        server.Signal("INT");
        var closing = await client.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Closing), (closing.Topic, closing.Action));
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Sigterm_tells_clients_closing_and_exits_cleanly()
    {
        await using var server = await ServerProcess.StartAsync();
        await using var client = await RawClient.LoginAsync(server.Port);
        server.Signal("TERM");
        var closing = await client.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Closing), (closing.Topic, closing.Action));
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Users_from_environment_and_command_line_can_log_in()
    {
        var hash = Auth.PasswordHash.Create("s3cret", 1000);
        await using var server = await ServerProcess.StartAsync($"--StateMesh:Users:ana:PasswordHash={hash}", "--StateMesh:Users:ana:ClientData:role=admin");
        await using var client = await StateMesh.Client.StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{server.Port}", new { username = "ana", password = "s3cret" });
        Assert.Equal("admin", client.ClientData!.Value.GetProperty("role").GetString());
        await Assert.ThrowsAsync<StateMesh.Client.StateMeshAuthenticationException>(() =>
            StateMesh.Client.StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{server.Port}", new { username = "ana", password = "wrong" }));
    }

    [Theory]
    [InlineData("--StateMesh:Tcp:Port=abc", "StateMesh:Tcp:Port")]
    [InlineData("--StateMesh:Http:Port=xyz", "StateMesh:Http:Port")]
    [InlineData("--StateMesh:MaxAuthAttempts=0", "MaxAuthAttempts")]
    [InlineData("--StateMesh:Limits:CachedRecords=-1", "StateMesh:Limits:CachedRecords")]
    [InlineData("--StateMesh:Cluster:Redis=127.0.0.1:1,nosuchoption=1", "StateMesh:Cluster:Redis")]
    public async Task A_bad_configuration_value_ends_with_one_line_that_names_the_key(string argument, string key)
    {
        var data = Directory.CreateTempSubdirectory("statemesh-config-");
        try
        {
            var (code, output) = await Repository.RunAsync("dotnet", [ServerProcess.ServerDll, argument, $"--StateMesh:DataDirectory={data.FullName}"], data.FullName, TimeSpan.FromSeconds(30));
            Assert.Equal(2, code);
            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var line = Assert.Single(lines);
            Assert.StartsWith("StateMesh.Server: bad configuration:", line, StringComparison.Ordinal);
            Assert.Contains(key, line, StringComparison.Ordinal);
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    // Redis on a port nobody listens on: a node that got as far as connecting would keep trying and never exit.
    private const string ClusterWithoutRedis = "--StateMesh:Cluster:Redis=127.0.0.1:1";

    [Fact]
    public async Task A_cluster_with_sqlite_storage_is_refused_with_one_line_that_says_to_set_postgres()
    {
        var line = await RefusedAsync(ClusterWithoutRedis, "--StateMesh:NodeName=node1");
        Assert.Contains("StateMesh:Cluster:Redis", line, StringComparison.Ordinal);
        Assert.Contains("set StateMesh:Postgres:ConnectionString", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_cluster_node_without_an_explicit_node_name_is_refused_with_one_line_that_names_the_key()
    {
        var line = await RefusedAsync(ClusterWithoutRedis, "--StateMesh:Postgres:ConnectionString=Host=127.0.0.1;Port=1;Database=statemesh");
        Assert.Contains("StateMesh:NodeName is not", line, StringComparison.Ordinal);
        Assert.DoesNotContain("Postgres", line, StringComparison.Ordinal);
    }

    /// <summary>Runs the server to its end, expecting exit code 2 and one line; returns that line.</summary>
    private static async Task<string> RefusedAsync(params string[] arguments)
    {
        var data = Directory.CreateTempSubdirectory("statemesh-config-");
        try
        {
            var node = Path.Combine(data.FullName, "node");
            var (code, output) = await Repository.RunAsync("dotnet", [ServerProcess.ServerDll, .. arguments, $"--StateMesh:DataDirectory={node}"], data.FullName, TimeSpan.FromSeconds(30));
            Assert.True(code == 2, $"exit code {code}:\n{output}");
            var line = Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            Assert.StartsWith("StateMesh.Server: bad configuration:", line, StringComparison.Ordinal);
            // Refused before any storage was opened.
            Assert.False(Directory.Exists(node), "the node created its data directory before refusing");
            return line;
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Jwt_logins_are_configured_from_the_command_line_and_nobody_else_gets_in()
    {
        const string Secret = "a-shared-secret-of-at-least-32-bytes!!";
        await using var server = await ServerProcess.StartAsync(
            "--StateMesh:Auth:Jwt:Issuers:0=https://issuer.test",
            "--StateMesh:Auth:Jwt:Audiences:0=statemesh",
            $"--StateMesh:Auth:Jwt:SigningKeys:0:Secret={Secret}");
        var token = new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler().CreateToken(new Microsoft.IdentityModel.Tokens.SecurityTokenDescriptor
        {
            Issuer = "https://issuer.test",
            Audience = "statemesh",
            Expires = DateTime.UtcNow.AddMinutes(5),
            Claims = new Dictionary<string, object> { ["sub"] = "jwt-user" },
            SigningCredentials = new Microsoft.IdentityModel.Tokens.SigningCredentials(new Microsoft.IdentityModel.Tokens.SymmetricSecurityKey(System.Text.Encoding.UTF8.GetBytes(Secret)), Microsoft.IdentityModel.Tokens.SecurityAlgorithms.HmacSha256),
        });
        var options = new StateMesh.Client.StateMeshClientOptions { MaxReconnectAttempts = 0 };
        await using var user = await StateMesh.Client.StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{server.Port}", new { token }, options);
        await Assert.ThrowsAsync<StateMesh.Client.StateMeshAuthenticationException>(() => StateMesh.Client.StateMeshClient.ConnectAsync($"tcp://127.0.0.1:{server.Port}", new { username = "anyone" }, options));
    }

    [Fact]
    public async Task Jwt_options_without_a_key_end_with_one_line()
    {
        var line = await RefusedAsync("--StateMesh:Auth:Jwt:Issuers:0=https://issuer.test");
        Assert.Contains("StateMesh:Auth:Jwt needs at least one of each of Issuers, Audiences and SigningKeys", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_hash_command_prints_a_hash_that_verifies()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(ServerProcess.ServerDll);
        start.ArgumentList.Add("hash");
        start.ArgumentList.Add("my password");
        using var process = Process.Start(start)!;
        var output = (await process.StandardOutput.ReadToEndAsync()).Trim();
        await process.WaitForExitAsync();
        Assert.Equal(0, process.ExitCode);
        Assert.True(Auth.PasswordHash.Verify("my password", output), output);
    }
}
