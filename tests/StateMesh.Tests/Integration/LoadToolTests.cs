using System.Text.Json;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>
/// The load tool, run as its command line against a real StateMesh.Server over both protocols, and its report: every
/// scenario delivers, counts the node's CPU, and the report writes the comparison table and a PNG. Short runs; the
/// figures themselves belong to benchmarks/side-by-side.sh, not to tests.
/// </summary>
public sealed class LoadToolTests(LoadToolTests.Fixture fixture) : IClassFixture<LoadToolTests.Fixture>
{
    public sealed class Fixture : IAsyncLifetime
    {
        private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("statemesh-load-");

        internal ServerProcess Server { get; private set; } = null!;

        public DirectoryInfo Results { get; } = Directory.CreateTempSubdirectory("statemesh-load-results-");

        public async Task InitializeAsync() => Server = await ServerProcess.StartAsync($"--StateMesh:DataDirectory={_data.FullName}");

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            _data.Delete(recursive: true);
            Results.Delete(recursive: true);
        }
    }

    private static string LoadToolDll
    {
        get
        {
            var configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name;
            var dll = Path.Combine(Repository.Root, "benchmarks", "StateMesh.LoadTest", "bin", configuration, "net10.0", "StateMesh.LoadTest.dll");
            Assert.True(File.Exists(dll), $"the load tool was not built: {dll}");
            return dll;
        }
    }

    private Task<JsonElement> RunAsync(string label, params string[] args) => RunAsync(fixture.Server, label, args);

    private async Task<JsonElement> RunAsync(ServerProcess server, string label, params string[] args)
    {
        var json = Path.Combine(fixture.Results.FullName, $"{args[0]}-{label}-{Guid.NewGuid():N}.json");
        var (code, output) = await Repository.RunAsync("dotnet",
            [LoadToolDll, .. args, "--label", label, "--seconds", "1", "--warmup", "0", "--node-pid", server.Pid.ToString(), "--json", json],
            Repository.Root, TimeSpan.FromMinutes(2));
        Assert.True(code == 0, output);
        return JsonDocument.Parse(await File.ReadAllTextAsync(json)).RootElement;
    }

    private string Target(string protocol) => Target(fixture.Server, protocol);

    private static string Target(ServerProcess server, string protocol) => protocol == "deepstream"
        ? $"ws://127.0.0.1:{server.HttpPort}/deepstream"
        : $"tcp://127.0.0.1:{server.Port}";

    [Theory]
    [InlineData("deepstream", "fanout", "--subscribers", "5")]
    [InlineData("native", "fanout", "--subscribers", "5")]
    [InlineData("deepstream", "pairs", "--pairs", "4")]
    [InlineData("deepstream", "records", "--subscribers", "5")]
    [InlineData("native", "records", "--subscribers", "5")]
    [InlineData("deepstream", "rpc", "--callers", "2")]
    [InlineData("native", "rpc", "--callers", "2")]
    public async Task Each_scenario_delivers_and_measures_the_node(string protocol, string scenario, string option, string value)
    {
        var result = await RunAsync(protocol, scenario, "--target", Target(protocol), option, value);
        Assert.True(result.GetProperty("Delivered").GetInt64() > 0);
        Assert.Equal(0, result.GetProperty("Errors").GetInt32());
        Assert.True(result.GetProperty("LatencySamples").GetInt32() > 0);
        Assert.True(result.GetProperty("NodeCpuSeconds").GetDouble() > 0);
    }

    [Fact]
    public async Task An_open_loop_run_offers_the_rate_it_was_given()
    {
        var result = await RunAsync("deepstream", "fanout", "--target", Target("deepstream"), "--subscribers", "2", "--rate", "500");
        var published = result.GetProperty("Published").GetInt64();
        Assert.InRange(published, 250, 750); // 500/s over about one second
        Assert.Equal(published * 2, result.GetProperty("Delivered").GetInt64(), tolerance: 10);
    }

    [Fact]
    public async Task Idle_reports_the_node_memory_per_connection()
    {
        var result = await RunAsync("deepstream", "idle", "--target", Target("deepstream"), "--connections", "200");
        Assert.Equal(0, result.GetProperty("Errors").GetInt32());
        Assert.True(result.GetProperty("NodeRssBytes").GetInt64() > 0);
        Assert.Equal(JsonValueKind.Number, result.GetProperty("MemoryPerConnectionBytes").ValueKind);
    }

    // Each attack gets a node of its own: what an attacker leaves behind (a regex still running, a million
    // subscriptions being removed) must not reach the other tests. Few patterns, so that the node is back at once.
    [Theory]
    [InlineData("deepstream", "listen")]
    [InlineData("native", "listen")]
    [InlineData("deepstream", "subscribe")]
    [InlineData("native", "subscribe")]
    [InlineData("deepstream", "slowreader")]
    [InlineData("native", "slowreader")]
    public async Task Attack_measures_the_ordinary_clients_without_and_with_the_attacker(string protocol, string attack)
    {
        var data = Directory.CreateTempSubdirectory("statemesh-attack-");
        try
        {
            await using var server = await ServerProcess.StartAsync($"--StateMesh:DataDirectory={data.FullName}");
            var result = await RunAsync(server, protocol, "attack", "--target", Target(server, protocol), "--attack", attack,
                "--pairs", "4", "--attack-patterns", "3", "--attack-names", "500");
            Assert.Equal(0, result.GetProperty("Errors").GetInt32());
            var phases = result.GetProperty("Attack").GetProperty("Phases").EnumerateArray().ToList();
            Assert.Equal(["none", attack], phases.Select(p => p.GetProperty("Attack").GetString()));
            foreach (var phase in phases)
            {
                Assert.True(phase.GetProperty("RoundTrips").GetInt64() > 0, phase.ToString());
                Assert.True(phase.GetProperty("LatencySamples").GetInt32() > 0, phase.ToString());
                Assert.True(phase.GetProperty("NodeCpuSeconds").GetDouble() > 0, phase.ToString());
            }
            Assert.Equal(JsonValueKind.Null, phases[0].GetProperty("Attacker").ValueKind);
            var attacker = phases[1].GetProperty("Attacker");
            Assert.True(attacker.GetProperty("Connections").GetInt32() >= 1, attacker.ToString());
            Assert.True(attacker.GetProperty("NamesSent").GetInt64() > 0, attacker.ToString());
            Assert.Equal(JsonValueKind.Number, phases[1].GetProperty("ThroughputKeptPercent").ValueKind);

            // The report gives attack runs their own table (they compare a node with itself, not with deepstream).
            await File.WriteAllTextAsync(Path.Combine(data.FullName, "attack.json"), result.ToString());
            var markdown = Path.Combine(data.FullName, "report.md");
            var (code, output) = await Repository.RunAsync("dotnet",
                [LoadToolDll, "report", "--in", data.FullName, "--markdown", markdown, "--chart", Path.Combine(data.FullName, "chart.png")], Repository.Root, TimeSpan.FromMinutes(1));
            Assert.True(code == 0, output);
            var text = await File.ReadAllTextAsync(markdown);
            Assert.Contains("### Ordinary clients without and with an attacker", text);
            Assert.Contains($"| {protocol} | {attack} |", text);
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_target_that_is_not_loopback_is_refused()
    {
        var (code, output) = await Repository.RunAsync("dotnet", [LoadToolDll, "fanout", "--target", "tcp://10.1.2.3:6021"], Repository.Root, TimeSpan.FromMinutes(1));
        Assert.Equal(2, code);
        Assert.Contains("loopback", output);
    }

    [Fact]
    public async Task The_report_compares_against_the_baseline_label_and_draws_a_png()
    {
        var input = Directory.CreateTempSubdirectory("statemesh-report-");
        try
        {
            foreach (var (label, protocol) in new[] { ("deepstream", "deepstream"), ("StateMesh native", "native") })
            {
                var result = await RunAsync(protocol, "fanout", "--target", Target(protocol), "--subscribers", "3");
                await File.WriteAllTextAsync(Path.Combine(input.FullName, $"{protocol}.json"),
                    result.ToString().Replace($"\"Label\": \"{protocol}\"", $"\"Label\": \"{label}\"", StringComparison.Ordinal));
            }
            var markdown = Path.Combine(input.FullName, "report.md");
            var chart = Path.Combine(input.FullName, "chart.png");
            var (code, output) = await Repository.RunAsync("dotnet", [LoadToolDll, "report", "--in", input.FullName, "--markdown", markdown, "--chart", chart], Repository.Root, TimeSpan.FromMinutes(1));
            Assert.True(code == 0, output);
            var text = await File.ReadAllTextAsync(markdown);
            Assert.Contains("| fanout | 1→3 | max | StateMesh native |", text);
            Assert.Contains("![StateMesh against deepstream](chart.png)", text);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, (await File.ReadAllBytesAsync(chart))[..4]);
        }
        finally
        {
            input.Delete(recursive: true);
        }
    }
}
