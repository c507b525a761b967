using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace StateMesh.LoadTest;

/// <summary>
/// What a cluster run costs besides the tool: the CPU of every node process, of redis-server and of PostgreSQL (the
/// postmaster and its backends), and the commands Redis executed, each counted over the measured window.
/// </summary>
internal sealed class ClusterProbe
{
    private readonly NodeProbe[] _nodes;
    private readonly NodeProbe? _redisProcess;
    private readonly int? _postgres;
    private readonly IPEndPoint? _redis;

    private ClusterProbe(NodeProbe[] nodes, NodeProbe? redisProcess, int? postgres, IPEndPoint? redis)
    {
        _nodes = nodes;
        _redisProcess = redisProcess;
        _postgres = postgres;
        _redis = redis;
    }

    /// <summary>The processes named on the command line; Redis's own process when only its address is given.</summary>
    public static async Task<ClusterProbe> ForAsync(LoadOptions o)
    {
        var nodes = o.NodePids.Select(pid => NodeProbe.For(pid) ?? throw new ArgumentException($"--node-pid {pid}: no such process")).ToArray();
        var redisPid = o.RedisPid;
        if (redisPid is null && o.Redis is { } redis)
        {
            // Only a redis-server on this machine (loopback) reports a pid that is ours to read.
            redisPid = (await RedisStats.ReadAsync(redis)).ProcessId;
        }
        var redisProcess = redisPid is { } r ? NodeProbe.For(r) ?? throw new ArgumentException($"--redis-pid {r}: no such process") : null;
        if (o.PostgresPid is { } pg && NodeProbe.For(pg) is null)
        {
            throw new ArgumentException($"--postgres-pid {pg}: no such process");
        }
        return new ClusterProbe(nodes, redisProcess, o.PostgresPid, o.Redis);
    }

    /// <summary>
    /// Redis's counters first, then at once the tool's own (messages sent and delivered) and the clock, then CPU: a
    /// window's commands and its messages are then counted between the same two instants, give or take a round trip.
    /// </summary>
    public async Task<Snapshot> TakeAsync(Func<long> published, Func<long> delivered)
    {
        var commands = _redis is { } redis ? await RedisStats.ReadAsync(redis) : null;
        var timestamp = Stopwatch.GetTimestamp();
        var d = delivered();
        var p = published();
        return new Snapshot(
            p, d, timestamp,
            [.. _nodes.Select(n => n.CpuSeconds())],
            _redisProcess?.CpuSeconds(),
            _postgres is { } pg ? ProcessTree.CpuSeconds(pg) : null,
            commands,
            Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds,
            _nodes.Length > 0 ? _nodes[0].RssBytes() : null);
    }

    /// <summary>Counters at one instant.</summary>
    internal sealed record Snapshot(long Published, long Delivered, long Timestamp, double[] Nodes, double? Redis, double? Postgres, RedisStats? Commands, double Tool, long? Rss)
    {
        public Usage Since(Snapshot start)
        {
            var nodes = Nodes.Zip(start.Nodes, (b, a) => b - a).ToArray();
            Dictionary<string, long>? byName = null;
            long? commands = null;
            if (Commands is { } after && start.Commands is { } before)
            {
                // The INFO that took the first snapshot ran inside the window; the second one had not finished yet.
                commands = after.TotalCommands - before.TotalCommands - 1;
                byName = after.Calls
                    .Select(c => (c.Key, Calls: c.Value - before.Calls.GetValueOrDefault(c.Key) - (c.Key == "info" ? 1 : 0)))
                    .Where(c => c.Calls > 0)
                    .OrderByDescending(c => c.Calls)
                    .ToDictionary(c => c.Key, c => c.Calls);
            }
            return new Usage(
                Published - start.Published,
                Delivered - start.Delivered,
                Stopwatch.GetElapsedTime(start.Timestamp, Timestamp).TotalSeconds,
                nodes.Length > 0 ? nodes.Sum() : null,
                nodes.Length > 1 ? nodes : null,
                Redis - start.Redis,
                Postgres - start.Postgres,
                commands,
                byName,
                Tool - start.Tool,
                Rss);
        }
    }

    /// <summary>What the window cost: CPU seconds of each party, and Redis's commands.</summary>
    internal sealed record Usage(
        long Published, long Delivered, double Elapsed, double? NodeCpu, double[]? NodeCpuEach, double? RedisCpu, double? PostgresCpu,
        long? RedisCommands, Dictionary<string, long>? RedisCommandsByName, double ToolCpu, long? Rss);
}

/// <summary>The CPU time of a process and of its children (PostgreSQL forks one backend per connection).</summary>
internal static class ProcessTree
{
    public static double CpuSeconds(int root)
    {
        double sum = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }
            string stat;
            try
            {
                stat = File.ReadAllText($"/proc/{pid}/stat");
            }
            catch (IOException)
            {
                continue; // ended while we looked
            }
            catch (UnauthorizedAccessException)
            {
                continue;
            }
            // Fields after "(comm)": state, ppid, …, utime (12th), stime (13th).
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (pid == root || fields[1] == root.ToString(CultureInfo.InvariantCulture))
            {
                sum += NodeProbe.CpuSecondsOf(fields);
            }
        }
        return sum;
    }
}

/// <summary>Redis's counters from one INFO, over a plain socket (RESP): commands executed in all and per command.</summary>
internal sealed record RedisStats(long TotalCommands, Dictionary<string, long> Calls, int? ProcessId)
{
    public static async Task<RedisStats> ReadAsync(IPEndPoint redis, CancellationToken cancellationToken = default)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        using var socket = new Socket(redis.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(redis, timeout.Token);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync("*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n"u8.ToArray(), timeout.Token);
        // The reply is one bulk string: $<length>\r\n<text>\r\n.
        var reader = new StreamReader(stream, Encoding.UTF8);
        var header = await reader.ReadLineAsync(timeout.Token) ?? throw new IOException("Redis closed the connection before answering INFO");
        if (!header.StartsWith('$') || !int.TryParse(header.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out var length))
        {
            throw new IOException("Redis answered INFO with " + header);
        }
        var text = new char[length];
        var read = 0;
        while (read < length)
        {
            var n = await reader.ReadAsync(text.AsMemory(read), timeout.Token);
            if (n == 0)
            {
                throw new IOException("Redis closed the connection in the middle of INFO");
            }
            read += n;
        }
        return Parse(new string(text, 0, read));
    }

    /// <summary>Reads <c>total_commands_processed</c>, <c>process_id</c> and the <c>cmdstat_&lt;name&gt;:calls=N,…</c> lines.</summary>
    internal static RedisStats Parse(string info)
    {
        long total = 0;
        int? pid = null;
        var calls = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var raw in info.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.StartsWith("total_commands_processed:", StringComparison.Ordinal))
            {
                total = long.Parse(line.AsSpan("total_commands_processed:".Length), CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("process_id:", StringComparison.Ordinal))
            {
                pid = int.Parse(line.AsSpan("process_id:".Length), CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("cmdstat_", StringComparison.Ordinal) && line.IndexOf(":calls=", StringComparison.Ordinal) is var colon and > 0)
            {
                var value = line.AsSpan(colon + ":calls=".Length);
                var comma = value.IndexOf(',');
                calls[line[8..colon]] = long.Parse(comma < 0 ? value : value[..comma], CultureInfo.InvariantCulture);
            }
        }
        return new RedisStats(total, calls, pid);
    }
}
