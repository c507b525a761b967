using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace StateMesh.LoadTest;

internal sealed record LoadOptions
{
    public static readonly string[] Scenarios = ["fanout", "pairs", "records", "rpc", "idle", "durable", "attack"];

    public required string Scenario { get; init; }
    /// <summary>Where the tool connects: one node, or the nodes of one cluster (<c>--target a,b,c</c>).</summary>
    public IReadOnlyList<Endpoint> Targets { get; init; } = [Endpoint.Parse("tcp://127.0.0.1:6021")];

    /// <summary>The first node: every client of a single-node run, and the senders (publishers, writers, callers) of a cluster run.</summary>
    public Endpoint Target => Targets[0];

    /// <summary>
    /// Where receiver <paramref name="index"/> (subscriber, provider) connects: the first node when there is one, else
    /// round robin over the others, so that every delivery crosses from node 1 to another node.
    /// </summary>
    public Endpoint ReceiverTarget(int index) => Targets.Count == 1 ? Targets[0] : Targets[1 + index % (Targets.Count - 1)];

    /// <summary>Appended to a scenario's shape in a cluster run: where the senders and the receivers are.</summary>
    public string Placement(string senders, string receivers) => Targets.Count == 1 ? ""
        : Targets.Count == 2 ? $", {senders} on node 1, {receivers} on node 2"
        : $", {senders} on node 1, {receivers} on nodes 2–{Targets.Count}";
    public string Label { get; init; } = "StateMesh";
    public int Publishers { get; init; } = 1;
    public int Subscribers { get; init; } = 100;
    public int Pairs { get; init; } = 50;
    public int Providers { get; init; } = 4;
    public int Callers { get; init; } = 16;
    public int Connections { get; init; } = 2000;
    public int Writers { get; init; } = 1;
    public int Seconds { get; init; } = 10;
    public int Warmup { get; init; } = 2;
    public int Payload { get; init; } = 64;
    public int Window { get; init; } = 1000;

    /// <summary>Whether --window was given (attack keeps one round trip in flight per pair unless told).</summary>
    public bool WindowGiven { get; init; }

    /// <summary>attack: listen, subscribe, slowreader, or all (one attacked phase per kind, against one baseline).</summary>
    public string Attack { get; init; } = "all";

    /// <summary>attack listen: pathological patterns the attacker listens to, per topic (events and records).</summary>
    public int AttackPatterns { get; init; } = 40;

    /// <summary>attack subscribe: names per subscribe message of the flood.</summary>
    public int AttackNames { get; init; } = 5000;

    /// <summary>Offered load in messages per second over all publishers (open loop); 0 runs closed loop, as fast as the window allows.</summary>
    public double Rate { get; init; }

    /// <summary>The processes of the node (or of every node of a cluster) whose CPU is measured (<c>--node-pid 1,2,3</c>).</summary>
    public IReadOnlyList<int> NodePids { get; init; } = [];

    /// <summary>The first node's process: memory (idle) and the attack phases are measured on it alone.</summary>
    public int? NodePid => NodePids.Count > 0 ? NodePids[0] : null;

    /// <summary>Redis (host:port on loopback) whose command counters are read before and after the measured window.</summary>
    public System.Net.IPEndPoint? Redis { get; init; }

    /// <summary>The redis-server process whose CPU counts with the nodes'; by default the process_id Redis reports.</summary>
    public int? RedisPid { get; init; }

    /// <summary>The PostgreSQL postmaster: its CPU and that of all its children (the backends) count with the nodes'.</summary>
    public int? PostgresPid { get; init; }
    public string? JsonPath { get; init; }

    public static LoadOptions Parse(string[] args)
    {
        if (args.Length == 0 || !Scenarios.Contains(args[0]))
        {
            throw new ArgumentException("unknown scenario");
        }
        var o = new LoadOptions { Scenario = args[0] };
        for (var i = 1; i < args.Length; i += 2)
        {
            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"{args[i]} needs a value");
            }
            var v = args[i + 1];
            int Int(int min, int max) => Math.Clamp(int.Parse(v, CultureInfo.InvariantCulture), min, max);
            o = args[i] switch
            {
                "--target" or "--targets" or "--address" => o with { Targets = [.. v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Endpoint.Parse)] },
                "--label" => o with { Label = v },
                "--publishers" => o with { Publishers = Int(1, 1000) },
                "--subscribers" => o with { Subscribers = Int(1, 10_000) },
                "--pairs" => o with { Pairs = Int(1, 5000) },
                "--providers" => o with { Providers = Int(1, 1000) },
                "--callers" => o with { Callers = Int(1, 5000) },
                "--connections" => o with { Connections = Int(1, 100_000) },
                "--writers" => o with { Writers = Int(1, 1000) },
                "--seconds" => o with { Seconds = Int(1, 600) },
                "--warmup" => o with { Warmup = Int(0, 60) },
                "--payload" => o with { Payload = Int(16, 1 << 20) },
                "--window" => o with { Window = Int(1, 1_000_000), WindowGiven = true },
                "--attack" => o with { Attack = AttackScenario.Kinds.Contains(v) || v == "all" ? v : throw new ArgumentException($"unknown attack {v}: use listen, subscribe, slowreader or all") },
                "--attack-patterns" => o with { AttackPatterns = Int(1, 10_000) },
                "--attack-names" => o with { AttackNames = Int(1, 100_000) },
                "--rate" => o with { Rate = Math.Max(0, double.Parse(v, CultureInfo.InvariantCulture)) },
                "--node-pid" or "--node-pids" => o with { NodePids = [.. v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture))] },
                "--redis" => o with { Redis = LoopbackEndPoint(v) },
                "--redis-pid" => o with { RedisPid = int.Parse(v, CultureInfo.InvariantCulture) },
                "--postgres-pid" => o with { PostgresPid = int.Parse(v, CultureInfo.InvariantCulture) },
                "--json" => o with { JsonPath = v },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        if (o.Targets.Count == 0)
        {
            throw new ArgumentException("--target names no endpoint");
        }
        if (o.Targets.Count > 1 && o.Scenario is not ("fanout" or "pairs" or "records" or "rpc"))
        {
            throw new ArgumentException($"{o.Scenario} runs against one node; several targets are for fanout, pairs, records and rpc");
        }
        return o;
    }

    private static System.Net.IPEndPoint LoopbackEndPoint(string text)
    {
        if (!System.Net.IPEndPoint.TryParse(text, out var endPoint) || endPoint.Port == 0 || !System.Net.IPAddress.IsLoopback(endPoint.Address))
        {
            throw new ArgumentException($"--redis {text}: give a loopback IP address and port, such as 127.0.0.1:6050");
        }
        return endPoint;
    }
}

/// <summary>One run of one scenario against one target.</summary>
internal sealed record LoadResult
{
    public required string Label { get; init; }
    public required string Target { get; init; }
    public required string Scenario { get; init; }
    public required string Shape { get; init; }
    public double OfferedPerSecond { get; init; }
    public int PayloadBytes { get; init; }
    public int Connections { get; init; }
    public double Seconds { get; init; }
    public long Published { get; init; }
    public long Delivered { get; init; }
    public double PublishedPerSecond => Seconds > 0 ? Published / Seconds : 0;
    public double DeliveredPerSecond => Seconds > 0 ? Delivered / Seconds : 0;
    public double LatencyP50Ms { get; init; } = double.NaN;
    public double LatencyP99Ms { get; init; } = double.NaN;
    public double LatencyMaxMs { get; init; } = double.NaN;
    public int LatencySamples { get; init; }
    public int Errors { get; init; }

    /// <summary>CPU seconds (user + system) the node spent during the measured window, from /proc.</summary>
    public double? NodeCpuSeconds { get; init; }

    /// <summary>CPU seconds this tool spent during the measured window.</summary>
    public double ToolCpuSeconds { get; init; }

    public double? NodeCpuMicrosPerMessage => NodeCpuSeconds is { } s && Delivered > 0 ? s * 1e6 / Delivered : null;

    /// <summary>Cluster runs: how many nodes the clients were spread over (1 for a single node).</summary>
    public int Nodes { get; init; } = 1;

    /// <summary>Cluster runs: each node's CPU seconds (their sum is <see cref="NodeCpuSeconds"/>).</summary>
    public double[]? NodeCpuSecondsEach { get; init; }

    /// <summary>CPU seconds redis-server spent during the measured window.</summary>
    public double? RedisCpuSeconds { get; init; }

    /// <summary>CPU seconds PostgreSQL (the postmaster and its backends) spent during the measured window.</summary>
    public double? PostgresCpuSeconds { get; init; }

    /// <summary>CPU per delivered message over every process measured: the nodes, Redis and PostgreSQL (not the tool).</summary>
    public double? AllCpuMicrosPerMessage => NodeCpuSeconds is { } s && Delivered > 0
        ? (s + (RedisCpuSeconds ?? 0) + (PostgresCpuSeconds ?? 0)) * 1e6 / Delivered
        : null;

    /// <summary>Commands Redis executed during the measured window (the tool's own INFO left out).</summary>
    public long? RedisCommands { get; init; }

    /// <summary>The same, per command, most frequent first.</summary>
    public Dictionary<string, long>? RedisCommandsByName { get; init; }

    /// <summary>Redis commands per message sent (event emitted, patch written, call made): what one message costs the bus.</summary>
    public double? RedisCommandsPerMessage => RedisCommands is { } c && Published > 0 ? (double)c / Published : null;

    /// <summary>The first error a client was sent, if any (what kept a run from working).</summary>
    public string? FirstError { get; init; }

    /// <summary>The node's resident memory at the end of the run.</summary>
    public long? NodeRssBytes { get; init; }

    /// <summary>Idle only: growth of the node's resident memory per held connection.</summary>
    public double? MemoryPerConnectionBytes { get; init; }

    /// <summary>Attack only: the ordinary clients without and with the attacker, phase by phase.</summary>
    public AttackReport? Attack { get; init; }

    /// <summary>A run that could not start its load (the clients never reached each other): no figures, the reason.</summary>
    public static LoadResult Failed(LoadOptions o, string scenario, string shape, int connections, string reason)
    {
        Console.Error.WriteLine($"{o.Label} {scenario}: {reason}");
        return new LoadResult
        {
            Label = o.Label, Target = string.Join(",", o.Targets), Scenario = scenario, Shape = shape, OfferedPerSecond = o.Rate,
            PayloadBytes = o.Payload, Connections = connections, Nodes = o.Targets.Count, Errors = 1, FirstError = reason,
        };
    }

    public string Machine { get; init; } = $"{Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}";
    public DateTime StartedUtc { get; init; } = DateTime.UtcNow;

    /// <summary>NaN stands for "not measured" (no latency samples in idle, no CPU without a pid).</summary>
    public static readonly System.Text.Json.JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public const string MarkdownHeader =
        "| target | scenario | shape | offered/s | delivered/s | node CPU µs/msg | node CPU | tool CPU | p50 ms | p99 ms | max ms | memory/conn | errors |\n" +
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|";

    public string ToMarkdownRow() => string.Create(CultureInfo.InvariantCulture,
        $"| {Label} | {Scenario} | {Shape} | {(OfferedPerSecond > 0 ? OfferedPerSecond.ToString("N0", CultureInfo.InvariantCulture) : "max")} | {DeliveredPerSecond:N0} | {Format(NodeCpuMicrosPerMessage, "F2")} | {Format(NodeCpuSeconds / Seconds * 100, "F0")}% | {ToolCpuSeconds / Seconds * 100:F0}% | {Format(LatencyP50Ms, "F2")} | {Format(LatencyP99Ms, "F2")} | {Format(LatencyMaxMs, "F2")} | {(MemoryPerConnectionBytes is { } m ? (m / 1024).ToString("F1", CultureInfo.InvariantCulture) + " KiB" : "")} | {Errors} |");

    private static string Format(double? value, string format) =>
        value is { } v && !double.IsNaN(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "";
}

/// <summary>Reads a process's CPU time and resident memory from /proc (Linux).</summary>
internal sealed class NodeProbe(int pid)
{
    // USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on Linux x86-64 and arm64.
    private const double TicksPerSecond = 100;

    public static NodeProbe? For(int? pid) => pid is { } p && File.Exists($"/proc/{p}/stat") ? new NodeProbe(p) : null;

    public double CpuSeconds()
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        // Fields after "(comm)": state is field 3, utime 14, stime 15.
        return CpuSecondsOf(stat[(stat.LastIndexOf(')') + 2)..].Split(' '));
    }

    /// <summary>utime + stime from the fields of /proc/&lt;pid&gt;/stat after "(comm) ".</summary>
    internal static double CpuSecondsOf(string[] fields) =>
        (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / TicksPerSecond;

    public long RssBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }
        return 0;
    }
}

/// <summary>Counts the measured window: the node's and the tool's CPU, and the elapsed time.</summary>
internal sealed class Window(NodeProbe? node)
{
    private readonly double _node0 = node?.CpuSeconds() ?? 0;
    private readonly TimeSpan _tool0 = Process.GetCurrentProcess().TotalProcessorTime;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public (double Elapsed, double? NodeCpu, double ToolCpu, long? Rss) End() =>
        (_clock.Elapsed.TotalSeconds, node is null ? null : node.CpuSeconds() - _node0,
         (Process.GetCurrentProcess().TotalProcessorTime - _tool0).TotalSeconds, node?.RssBytes());
}
