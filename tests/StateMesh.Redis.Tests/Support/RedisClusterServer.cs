using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace StateMesh.Redis.Tests.Support;

/// <summary>
/// A real Redis Cluster of the tests' own: three masters (no replicas), each a <c>redis-server --cluster-enabled yes</c>
/// on a free port of 127.0.0.1 in a temporary folder of its own, joined with <c>redis-cli --cluster create</c>; ready when
/// every node reports <c>cluster_state:ok</c>. Stopped and deleted on dispose.
/// </summary>
/// <remarks>
/// Needs <c>RedisServer.cs</c> beside it (the server process is started as there). A node's cluster bus listens on its
/// port + 10000, so only ports whose bus port is free too are taken. Without <c>redis-server</c> or <c>redis-cli</c>
/// every test that asks for <see cref="Configuration"/> fails with the reason and the fix.
/// </remarks>
public sealed class RedisClusterServer : IAsyncLifetime, IAsyncDisposable
{
    /// <summary>How many masters the cluster has.</summary>
    public const int Masters = 3;

    private const int BusPortOffset = 10000;
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(30);
    private readonly List<RedisProcess> _nodes = [];
    private readonly List<DirectoryInfo> _roots = [];
    private string? _unavailable;

    /// <summary>The masters' ports, on 127.0.0.1 only.</summary>
    public IReadOnlyList<int> Ports => [.. _nodes.Select(n => n.Port)];

    /// <summary>Why there is no cluster (null when there is one).</summary>
    public string? UnavailableReason => _unavailable;

    /// <summary>A StackExchange.Redis configuration string naming every master: <c>127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3</c>.</summary>
    public string Configuration
    {
        get
        {
            if (_unavailable is not null)
            {
                throw new InvalidOperationException(_unavailable);
            }
            return string.Join(',', Ports.Select(p => $"127.0.0.1:{p}"));
        }
    }

    /// <summary>Starts the three nodes, creates the cluster and waits until every node reports it ok.</summary>
    public async Task InitializeAsync()
    {
        var server = RedisProcess.FindServer();
        var cli = server is null ? null : RedisProcess.FindProgram("redis-cli", server);
        if (server is null || cli is null)
        {
            _unavailable = RedisProcess.UnavailableMessage(server is null ? "redis-server" : "redis-cli", RedisProcess.ServicesRequired);
            return;
        }
        try
        {
            for (var i = 0; i < Masters; i++)
            {
                var root = Directory.CreateTempSubdirectory($"statemesh-redis-cluster-{i}-");
                _roots.Add(root);
                _nodes.Add(await RedisProcess.StartOnFreePortAsync(server, root.FullName, appendOnly: false,
                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"],
                    FreePortWithFreeBusPort));
            }
            await RunAsync(cli, ["--cluster", "create", .. Ports.Select(p => $"127.0.0.1:{p}"), "--cluster-replicas", "0", "--cluster-yes"]);
            await WaitUntilOkAsync();
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    /// <summary>Stops every node and deletes their folders.</summary>
    public async Task DisposeAsync()
    {
        try
        {
            await Task.WhenAll(_nodes.Select(n => n.StopAsync()));
        }
        finally
        {
            _nodes.Clear();
            foreach (var root in _roots)
            {
                root.Delete(recursive: true);
            }
            _roots.Clear();
        }
    }

    /// <inheritdoc />
    async ValueTask IAsyncDisposable.DisposeAsync() => await DisposeAsync();

    private async Task WaitUntilOkAsync()
    {
        var deadline = Stopwatch.StartNew();
        var states = new string[_nodes.Count];
        while (true)
        {
            for (var i = 0; i < _nodes.Count; i++)
            {
                var info = await RedisProcess.SendAsync(_nodes[i].Port, TimeSpan.FromSeconds(5), "CLUSTER", "INFO");
                states[i] = info.Split("\r\n").FirstOrDefault(l => l.StartsWith("cluster_state:", StringComparison.Ordinal)) ?? info;
            }
            if (states.All(s => s == "cluster_state:ok"))
            {
                return;
            }
            if (deadline.Elapsed > ReadyTimeout)
            {
                throw new InvalidOperationException(
                    $"The Redis Cluster on ports {string.Join(", ", Ports)} was not ok within {ReadyTimeout.TotalSeconds}s: {string.Join("; ", states)}. " +
                    $"The first node's output and log end with:\n{_nodes[0].Diagnostics()}");
            }
            // Polling outside processes (gossip settles in well under a second here).
            await Task.Delay(50);
        }
    }

    /// <summary>A free port of 127.0.0.1 whose cluster bus port (+10000, at most 65535) is free too.</summary>
    private static int FreePortWithFreeBusPort()
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var port = RedisProcess.FreePort();
            if (port + BusPortOffset <= IPEndPoint.MaxPort && IsFree(port + BusPortOffset))
            {
                return port;
            }
        }
        throw new InvalidOperationException("No free port of 127.0.0.1 with a free port 10000 above it (for the cluster bus) was found.");
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Runs redis-cli to its end; fails with its output.</summary>
    private static async Task RunAsync(string file, string[] args)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
        // --cluster-yes answers its question; nothing else is to be read from the input.
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
        }
        catch (TimeoutException)
        {
            process.Kill();
            throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', args)} did not end within a minute");
        }
        var output = await stdout + await stderr;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', args)} exited with {process.ExitCode}: {output}");
        }
    }
}

/// <summary>The tests that share one <see cref="RedisClusterServer"/>; they run one after another.</summary>
[CollectionDefinition(Name)]
public sealed class RedisClusterCollection : ICollectionFixture<RedisClusterServer>
{
    /// <summary>The collection's name, for <c>[Collection(RedisClusterCollection.Name)]</c>.</summary>
    public const string Name = "Redis Cluster";
}
