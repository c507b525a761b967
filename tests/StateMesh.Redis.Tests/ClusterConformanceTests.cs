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
    public async Task The_official_deepstream_client_works_unchanged_across_nodes(string scenario)
    {
        var logged = cluster.Nodes.Select(n => n.Output.Length).ToArray();
        var (code, output) = await Repository.RunAsync(
            "node", ["scenarios.mjs", cluster.DeepstreamUrls, scenario], DeepstreamClientConformanceTests.ServerFixture.ConformanceDirectory, TimeSpan.FromSeconds(60));
        // What the nodes logged meanwhile says on which side a failure lies.
        var nodeLogs = string.Concat(cluster.Nodes
            .Select((n, i) => (Name: StateMeshClusterFixture.NodeName(i), Lines: n.Output[logged[i]..].Trim()))
            .Where(n => n.Lines.Length > 0)
            .Select(n => $"\n--- {n.Name} logged ---\n{n.Lines}"));
        Assert.True(code == 0, output + nodeLogs);
        Assert.Contains("OK " + scenario, output, StringComparison.Ordinal);
    }
}

/// <summary>The cluster meets in one redis-server.</summary>
[Collection(ClusterConformanceCollection.Name)]
public sealed class ClusterConformanceOverRedisTests(ClusterOverRedisFixture cluster)
    : ClusterConformanceTests(cluster), IClassFixture<ClusterOverRedisFixture>;

/// <summary>Three nodes meeting in one redis-server, which a test may stop, kill or start again (<see cref="Redis"/>).</summary>
public sealed class ClusterOverRedisFixture : StateMeshClusterFixture
{
    public RedisServer Redis { get; } = new();

    protected override async Task<string> StartRedisAsync()
    {
        await Redis.InitializeAsync();
        return Redis.Configuration;
    }

    protected override Task StopRedisAsync() => Redis.DisposeAsync();
}

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

/// <summary>One cluster at a time: each is seven processes, more than a small machine runs twice over.</summary>
[CollectionDefinition(Name)]
public sealed class ClusterConformanceCollection
{
    public const string Name = "Cluster conformance";
}

/// <summary>
/// Three StateMesh.Server processes as one cluster: node1, node2 and node3, each on its own HTTP port, meeting in Redis
/// and keeping records in one PostgreSQL database, with the users of <see cref="DeepstreamClientConformanceTests"/>.
/// </summary>
public abstract class StateMeshClusterFixture : IAsyncLifetime
{
    public const int NodeCount = 3;

    private readonly PostgresServer _postgres = new();
    private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("statemesh-cluster-conformance-");
    private readonly List<ServerProcess> _nodes = [];

    internal IReadOnlyList<ServerProcess> Nodes => _nodes;

    /// <summary>The nodes' /deepstream URLs, comma-separated, node1 first: the first argument of scenarios.mjs.</summary>
    public string DeepstreamUrls => string.Join(',', _nodes.Select(n => $"ws://127.0.0.1:{n.HttpPort}/deepstream"));

    public static string NodeName(int index) => $"node{index + 1}";

    /// <summary>Starts Redis and returns its StackExchange.Redis configuration string.</summary>
    protected abstract Task<string> StartRedisAsync();

    protected abstract Task StopRedisAsync();

    public async Task InitializeAsync()
    {
        // xunit disposes a fixture whose start failed too, so whatever did start is stopped.
        var redis = StartRedisAsync();
        await Task.WhenAll(Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "conformance")), redis, _postgres.InitializeAsync());
        var hash = Auth.PasswordHash.Create("alicepw", 1000);
        var starts = Enumerable.Range(0, NodeCount).Select(i => ServerProcess.StartAsync(
            $"--StateMesh:NodeName={NodeName(i)}",
            $"--StateMesh:Cluster:Redis={redis.Result}",
            $"--StateMesh:Postgres:ConnectionString={_postgres.ConnectionString}",
            $"--StateMesh:DataDirectory={_data.CreateSubdirectory(NodeName(i)).FullName}",
            $"--StateMesh:Users:alice:PasswordHash={hash}",
            "--StateMesh:Users:alice:ClientData={\"role\":\"tester\",\"name\":\"Alice\"}",
            "--StateMesh:AllowAnonymous=true")).ToArray();
        try
        {
            await Task.WhenAll(starts);
        }
        finally
        {
            // In node order, so that URL i is node i.
            _nodes.AddRange(starts.Where(s => s.IsCompletedSuccessfully).Select(s => s.Result));
        }
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
