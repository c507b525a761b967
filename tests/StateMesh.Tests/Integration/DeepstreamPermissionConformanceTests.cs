using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>
/// The official deepstream client against the real StateMesh.Server with the conformance rule set in force
/// (tests/conformance/permission-scenarios.mjs, tests/conformance/permissions/complex.yml): allowed and denied publish,
/// subscribe, provide, request, read, write and delete, owner rules, data against oldData, a _() lookup, a role from
/// serverData, a rule cut off at its limits.
/// </summary>
public sealed class DeepstreamPermissionConformanceTests(DeepstreamPermissionConformanceTests.ServerFixture server) : IClassFixture<DeepstreamPermissionConformanceTests.ServerFixture>
{
    public sealed class ServerFixture : IAsyncLifetime
    {
        private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("statemesh-permissions-");

        internal ServerProcess Server { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            await Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "conformance"));
            var args = new List<string>
            {
                $"--StateMesh:DataDirectory={_data.FullName}",
                $"--StateMesh:Permissions:Path={Path.Combine(Repository.Root, "tests", "conformance", "permissions", "complex.yml")}",
            };
            foreach (var (user, role) in new[] { ("ana", "admin"), ("bob", "user"), ("cy", "user") })
            {
                args.Add($"--StateMesh:Users:{user}:PasswordHash={Auth.PasswordHash.Create(user + "-pw", 1000)}");
                args.Add($"--StateMesh:Users:{user}:ServerData={{\"role\":\"{role}\"}}");
            }
            Server = await ServerProcess.StartAsync([.. args]);
        }

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            _data.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData("owner-writes")]
    [InlineData("data-and-old-data")]
    [InlineData("cross-reference")]
    [InlineData("read-create-delete")]
    [InlineData("events")]
    [InlineData("rpc")]
    [InlineData("presence")]
    [InlineData("rule-error")]
    public async Task The_official_client_is_allowed_and_denied_as_the_rules_say(string scenario)
    {
        var url = $"ws://127.0.0.1:{server.Server.HttpPort}/deepstream";
        var (code, output) = await Repository.RunAsync("node", ["permission-scenarios.mjs", url, scenario], Path.Combine(Repository.Root, "tests", "conformance"), TimeSpan.FromSeconds(60));
        Assert.True(code == 0, output);
        Assert.Contains("OK " + scenario, output, StringComparison.Ordinal);
    }
}
