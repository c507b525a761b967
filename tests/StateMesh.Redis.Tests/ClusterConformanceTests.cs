using StateMesh.Postgres.Tests.Support;
using StateMesh.Redis.Tests.Support;
using StateMesh.Tests.Integration;
using StateMesh.Tests.Support;

namespace StateMesh.Redis.Tests;

/// <summary>
/// The official deepstream JavaScript client (tests/conformance) against three StateMesh.Server nodes of one cluster:
/// the same scenarios as <see cref="DeepstreamClientConformanceTests"/>, the i-th client of a scenario on node i mod 3,
/// so that every scenario with two clients or more crosses nodes.
/// </summary>
public abstract class ClusterConformanceTests(StateMeshClusterFixture cluster)
{
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
    public Task The_official_deepstream_client_works_unchanged_across_nodes(string scenario) =>
        cluster.RunScenarioAsync("scenarios.mjs", scenario, TimeSpan.FromSeconds(60));
}

/// <summary>The cluster meets in one redis-server.</summary>
[Collection(ClusterConformanceCollection.Name)]
public sealed class ClusterConformanceOverRedisTests(ClusterOverRedisFixture cluster)
    : ClusterConformanceTests(cluster), IClassFixture<ClusterOverRedisFixture>;

/// <summary>The cluster meets in a three-master Redis Cluster.</summary>
[Collection(ClusterConformanceCollection.Name)]
public sealed class ClusterConformanceOverRedisClusterTests(ClusterConformanceOverRedisClusterTests.Fixture cluster)
    : ClusterConformanceTests(cluster), IClassFixture<ClusterConformanceOverRedisClusterTests.Fixture>
{
    public sealed class Fixture : StateMeshClusterFixture
    {
        private readonly RedisClusterServer _redis = new();

        protected override async Task<string> StartRedisAsync()
        {
            await _redis.InitializeAsync();
            return _redis.Configuration;
        }

        protected override Task StopRedisAsync() => _redis.DisposeAsync();
    }
}

/// <summary>
/// Three nodes meeting in one redis-server, which a test may stop, kill or start again (<see cref="Redis"/>); a class
/// that restarts nodes derives its own fixture, so that its restarts never disturb the classes that share this one.
/// </summary>
public class ClusterOverRedisFixture : StateMeshClusterFixture
{
    public RedisServer Redis { get; } = new();

    protected override async Task<string> StartRedisAsync()
    {
        await Redis.InitializeAsync();
        return Redis.Configuration;
    }

    protected override Task StopRedisAsync() => Redis.DisposeAsync();
}

/// <summary>One cluster at a time: each is seven processes, more than a small machine runs twice over.</summary>
[CollectionDefinition(Name)]
public sealed class ClusterConformanceCollection
{
    public const string Name = "Cluster conformance";
}

/// <summary>How a node goes down in a scenario that asks for it.</summary>
public enum NodeDown
{
    /// <summary>SIGTERM, as an operator stops it: it leaves the cluster and closes its connections.</summary>
    Stopped,

    /// <summary>SIGKILL (<c>kill -9</c>): it says goodbye to no one; the others notice within the membership timeout.</summary>
    Killed,
}

/// <summary>
/// Three StateMesh.Server processes as one cluster: node1, node2 and node3, each on its own HTTP port, meeting in Redis
/// and keeping records in one PostgreSQL database, with the users of <see cref="DeepstreamClientConformanceTests"/>.
/// A node can be stopped or killed and started again on its ports (a class that does so has its own instance).
/// </summary>
public abstract partial class StateMeshClusterFixture : IAsyncLifetime
{
    public const int NodeCount = 3;

    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(15);

    private readonly PostgresServer _postgres = new();
    private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("statemesh-cluster-conformance-");
    private readonly List<ServerProcess> _nodes = [];
    // Every process a node has been, so that a failure shows what the ones that ended logged too.
    private readonly List<(int Index, ServerProcess Process)> _processes = [];

    internal IReadOnlyList<ServerProcess> Nodes => _nodes;

    /// <summary>The nodes' /deepstream URLs, comma-separated, node1 first: the first argument of scenarios.mjs.</summary>
    public string DeepstreamUrls => string.Join(',', _nodes.Select(n => $"ws://127.0.0.1:{n.HttpPort}/deepstream"));

    public static string NodeName(int index) => $"node{index + 1}";

    /// <summary>Settings every node starts with, after the fixture's own; none unless a test class needs some.</summary>
    protected virtual IEnumerable<string> NodeSettings => [];

    /// <summary>Starts Redis and returns its StackExchange.Redis configuration string.</summary>
    protected abstract Task<string> StartRedisAsync();

    protected abstract Task StopRedisAsync();

    public async Task InitializeAsync()
    {
        // xunit disposes a fixture whose start failed too, so whatever did start is stopped.
        var redis = StartRedisAsync();
        await Task.WhenAll(Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "conformance")), redis, _postgres.InitializeAsync());
        var hash = Auth.PasswordHash.Create("alicepw", 1000);
        var starts = Enumerable.Range(0, NodeCount).Select(i => ServerProcess.StartAsync([
            $"--StateMesh:NodeName={NodeName(i)}",
            $"--StateMesh:Cluster:Redis={redis.Result}",
            $"--StateMesh:Postgres:ConnectionString={_postgres.ConnectionString}",
            $"--StateMesh:DataDirectory={_data.CreateSubdirectory(NodeName(i)).FullName}",
            $"--StateMesh:Users:alice:PasswordHash={hash}",
            "--StateMesh:Users:alice:ClientData={\"role\":\"tester\",\"name\":\"Alice\"}",
            "--StateMesh:AllowAnonymous=true",
            .. NodeSettings])).ToArray();
        try
        {
            await Task.WhenAll(starts);
        }
        finally
        {
            // In node order, so that URL i is node i.
            _nodes.AddRange(starts.Where(s => s.IsCompletedSuccessfully).Select(s => s.Result));
            _processes.AddRange(_nodes.Select((n, i) => (i, n)));
        }
    }

    /// <summary>
    /// Runs <paramref name="script"/> of tests/conformance with the nodes' URLs and <paramref name="scenario"/>, and
    /// fails with its output and what every node logged meanwhile unless it passes. When the scenario asks for a node
    /// to go down or come back (cluster-scenarios.mjs), the node goes down as <paramref name="down"/> says; a scenario
    /// that asks without one fails. Nodes a scenario before left down are started again first.
    /// </summary>
    internal async Task RunScenarioAsync(string script, string scenario, TimeSpan timeout, NodeDown? down = null)
    {
        await Task.WhenAll(Enumerable.Range(0, NodeCount).Where(i => _nodes[i].HasExited).Select(StartNodeAsync));
        var logged = _processes.Select(p => p.Process.Output.Length).ToArray();
        var (code, output) = await Repository.RunAsync(
            "node", [script, DeepstreamUrls, scenario], DeepstreamClientConformanceTests.ServerFixture.ConformanceDirectory, timeout,
            line => AnswerAsync(line, down));
        // What the nodes logged meanwhile says on which side a failure lies.
        var nodeLogs = string.Concat(_processes
            .Select((p, k) => (Name: $"{NodeName(p.Index)} (pid {p.Process.Pid})", Lines: p.Process.Output[(k < logged.Length ? logged[k] : 0)..].Trim()))
            .Where(n => n.Lines.Length > 0)
            .Select(n => $"\n--- {n.Name} logged ---\n{n.Lines}"));
        Assert.True(code == 0, output + nodeLogs);
        Assert.Contains("OK " + scenario, output, StringComparison.Ordinal);
    }

    // "@@ down 2", "@@ up all": a scenario asks for nodes to go down or come back, and goes on at "@@ done".
    private async Task<string?> AnswerAsync(string line, NodeDown? down)
    {
        var ask = StepRequest().Match(line);
        if (!ask.Success)
        {
            return null;
        }
        var which = ask.Groups["node"].Value == "all"
            ? Enumerable.Range(0, NodeCount)
            : [int.Parse(ask.Groups["node"].Value, System.Globalization.CultureInfo.InvariantCulture) - 1];
        try
        {
            if (ask.Groups["step"].Value == "up")
            {
                await Task.WhenAll(which.Where(i => _nodes[i].HasExited).Select(StartNodeAsync));
            }
            else
            {
                var end = down ?? throw new InvalidOperationException("this test takes no node down");
                await Task.WhenAll(which.Where(i => !_nodes[i].HasExited).Select(i => end == NodeDown.Killed ? KillNodeAsync(i) : StopNodeAsync(i)));
            }
            return "@@ done";
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException)
        {
            return "@@ failed " + ex.Message.ReplaceLineEndings(" | ");
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex("^@@ (?<step>down|up) (?<node>all|[1-3])$")]
    private static partial System.Text.RegularExpressions.Regex StepRequest();

    /// <summary>
    /// Stops node <paramref name="index"/> as an operator would (SIGTERM: it leaves the cluster and closes its
    /// connections) and waits until it has ended. <see cref="StartNodeAsync"/> brings it back.
    /// </summary>
    public Task StopNodeAsync(int index) => EndNodeAsync(index, "TERM");

    /// <summary>Kills node <paramref name="index"/> with SIGKILL (<c>kill -9</c>: no goodbye to anyone) and waits until it has ended.</summary>
    public Task KillNodeAsync(int index) => EndNodeAsync(index, "KILL");

    /// <summary>Starts node <paramref name="index"/>, stopped or killed before, again: same name, settings and ports.</summary>
    public async Task StartNodeAsync(int index)
    {
        var ended = _nodes[index];
        var started = await ended.StartAgainAsync();
        // Nodes start side by side.
        lock (_processes)
        {
            _nodes[index] = started;
            _processes.Add((index, started));
        }
        await ended.DisposeAsync();
    }

    private async Task EndNodeAsync(int index, string signal)
    {
        _nodes[index].Signal(signal);
        await _nodes[index].WaitForExitAsync(StopTimeout);
    }

    public async Task DisposeAsync()
    {
        try
        {
            foreach (var node in _nodes)
            {
                await node.DisposeAsync();
            }
            await StopRedisAsync();
            await _postgres.DisposeAsync();
        }
        finally
        {
            _data.Delete(recursive: true);
        }
    }
}
