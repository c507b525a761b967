using System.Diagnostics;
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

        public static string ConformanceDirectory
        {
            get
            {
                var dir = new DirectoryInfo(AppContext.BaseDirectory);
                while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "StateMesh.sln")))
                {
                    dir = dir.Parent;
                }
                return Path.Combine(dir!.FullName, "tests", "conformance");
            }
        }

        public async Task InitializeAsync()
        {
            await EnsureNodeModulesAsync();
            var hash = Auth.PasswordHash.Create("alicepw", 1000);
            Server = await ServerProcess.StartAsync(
                $"--StateMesh:DataDirectory={_data.FullName}",
                $"--StateMesh:Users:alice:PasswordHash={hash}",
                "--StateMesh:Users:alice:ClientData={\"role\":\"tester\",\"name\":\"Alice\"}",
                "--StateMesh:AllowAnonymous=true");
        }

        /// <summary>npm ci when the client is not installed yet, so that the README's test command works on a fresh clone.</summary>
        private static async Task EnsureNodeModulesAsync()
        {
            if (Directory.Exists(Path.Combine(ConformanceDirectory, "node_modules", "@deepstream", "client")))
            {
                return;
            }
            var (code, output) = await RunAsync("npm", ["ci", "--no-audit", "--no-fund"], TimeSpan.FromMinutes(5));
            Assert.True(code == 0, "npm ci in tests/conformance failed (Node.js and npm are required):\n" + output);
        }

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            _data.Delete(recursive: true);
        }
    }

    internal static async Task<(int Code, string Output)> RunAsync(string file, string[] args, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = ServerFixture.ConformanceDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException($"'{file}' could not be started: Node.js 20 and npm are required for the conformance tests.", ex);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            try
            {
                await process.WaitForExitAsync().WaitAsync(timeout);
            }
            catch (TimeoutException)
            {
                process.Kill(entireProcessTree: true);
                throw;
            }
            return (process.ExitCode, await stdout + await stderr);
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
        var (code, output) = await RunAsync("node", ["scenarios.mjs", url, scenario], TimeSpan.FromSeconds(60));
        Assert.True(code == 0, output);
        Assert.Contains("OK " + scenario, output, StringComparison.Ordinal);
    }
}
