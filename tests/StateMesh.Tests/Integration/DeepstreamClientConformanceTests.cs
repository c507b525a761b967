using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>
/// The official deepstream JavaScript client (@deepstream/client 7.0.5, tests/conformance) against the real
/// StateMesh.Server over WebSocket /deepstream. Each scenario is its own test case.
/// </summary>
public sealed class DeepstreamClientConformanceTests(DeepstreamClientConformanceTests.ServerFixture server) : IClassFixture<DeepstreamClientConformanceTests.ServerFixture>
{
    public sealed class ServerFixture : IAsyncLifetime
    {
        internal ServerProcess Server { get; private set; } = null!;

        private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("statemesh-conformance-");

        public static string ConformanceDirectory => Path.Combine(Repository.Root, "tests", "conformance");

        public async Task InitializeAsync()
        {
            await Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "conformance"));
            var hash = Auth.PasswordHash.Create("alicepw", 1000);
            Server = await ServerProcess.StartAsync(
                $"--StateMesh:DataDirectory={_data.FullName}",
                $"--StateMesh:Users:alice:PasswordHash={hash}",
                "--StateMesh:Users:alice:ClientData={\"role\":\"tester\",\"name\":\"Alice\"}",
                "--StateMesh:AllowAnonymous=true");
        }

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            _data.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData("login-good")]
    [InlineData("login-client-data")]
    [InlineData("login-bad")]
    [InlineData("events")]
    [InlineData("records")]
    [InlineData("record-conflict")]
    [InlineData("lists")]
    [InlineData("rpc")]
    [InlineData("rpc-reject")]
    [InlineData("presence")]
    [InlineData("listening")]
    [InlineData("listening-reject")]
    public async Task The_official_deepstream_client_works_unchanged(string scenario)
    {
        var url = $"ws://127.0.0.1:{server.Server.HttpPort}/deepstream";
        var (code, output) = await Repository.RunAsync("node", ["scenarios.mjs", url, scenario], ServerFixture.ConformanceDirectory, TimeSpan.FromSeconds(60));
        Assert.True(code == 0, output);
        Assert.Contains("OK " + scenario, output, StringComparison.Ordinal);
    }
}
