using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace StateMesh.LoadTest;

internal sealed record LoadOptions
{
    public static readonly string[] Scenarios = ["fanout", "pairs", "records", "rpc", "idle", "durable", "attack"];

    public required string Scenario { get; init; }
    public Endpoint Target { get; init; } = Endpoint.Parse("tcp://127.0.0.1:6021");
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

    public int? NodePid { get; init; }
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
                "--target" or "--address" => o with { Target = Endpoint.Parse(v) },
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
                "--node-pid" => o with { NodePid = int.Parse(v, CultureInfo.InvariantCulture) },
                "--json" => o with { JsonPath = v },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        return o;
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

    /// <summary>The node's resident memory at the end of the run.</summary>
    public long? NodeRssBytes { get; init; }

    /// <summary>Idle only: growth of the node's resident memory per held connection.</summary>
    public double? MemoryPerConnectionBytes { get; init; }

    /// <summary>Attack only: the ordinary clients without and with the attacker, phase by phase.</summary>
    public AttackReport? Attack { get; init; }

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
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / TicksPerSecond;
    }

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
