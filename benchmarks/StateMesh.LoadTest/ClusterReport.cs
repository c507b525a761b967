using System.Globalization;
using System.Text;
using System.Text.Json;

namespace StateMesh.LoadTest;

/// <summary>
/// The cluster table of one cluster-side-by-side run: every run with its cost over all processes and Redis's commands,
/// then each StateMesh target against deepstream in the same scenario. A run that never got its load going (the
/// clients on node 1 and on the others did not reach each other) shows its reason instead of figures.
/// </summary>
internal static class ClusterReport
{
    public const string MarkdownHeader =
        "| target | scenario | shape | delivered/s | p50 ms | p99 ms | CPU µs/msg, all processes | nodes · Redis · PostgreSQL µs/msg | Redis cmds/msg sent | Redis commands per msg sent | errors |\n" +
        "|---|---|---|---|---|---|---|---|---|---|---|";

    public static async Task<int> RunAsync(string[] args)
    {
        string? input = null, markdown = null;
        for (var i = 1; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--in": input = args[i + 1]; break;
                case "--markdown": markdown = args[i + 1]; break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        if (input is null || markdown is null)
        {
            throw new ArgumentException("cluster-report needs --in <directory of results> --markdown <file>");
        }
        var results = Directory.GetFiles(input, "*.json").Order(StringComparer.Ordinal)
            .Select(f => JsonSerializer.Deserialize<LoadResult>(File.ReadAllText(f), LoadResult.Json)!)
            .ToList();
        await File.WriteAllTextAsync(markdown, Markdown(results));
        Console.WriteLine($"wrote {markdown} from {results.Count} results");
        return 0;
    }

    public static string Markdown(IReadOnlyList<LoadResult> results)
    {
        var md = new StringBuilder();
        md.AppendLine(MarkdownHeader);
        foreach (var r in results)
        {
            md.AppendLine(Row(r));
        }
        var ratios = results.GroupBy(r => r.Scenario)
            .SelectMany(g => g.Where(r => r.Label != Report.Baseline).Select(r => (Ours: r, Theirs: g.FirstOrDefault(t => t.Label == Report.Baseline))))
            .Where(x => x.Theirs is not null)
            .ToList();
        if (ratios.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("| scenario | StateMesh target | delivered/s against deepstream | CPU per message against deepstream (all processes) |");
            md.AppendLine("|---|---|---|---|");
            foreach (var (ours, theirs) in ratios)
            {
                var throughput = Works(ours) && Works(theirs!) ? X(ours.DeliveredPerSecond / theirs!.DeliveredPerSecond) : "no figure";
                var cpu = Works(ours) && Works(theirs!) && ours.AllCpuMicrosPerMessage is { } o && theirs!.AllCpuMicrosPerMessage is { } t && o > 0 ? X(t / o) : "no figure";
                md.AppendLine(CultureInfo.InvariantCulture, $"| {ours.Scenario} | {ours.Label} | {throughput} | {cpu} |");
            }
        }
        return md.ToString();
    }

    private static bool Works(LoadResult r) => r.Delivered > 0;

    private static string X(double v) => v.ToString("F2", CultureInfo.InvariantCulture) + "×";

    public static string Row(LoadResult r)
    {
        if (!Works(r))
        {
            return $"| {r.Label} | {r.Scenario} | {r.Shape} | no figure: {Escape(r.FirstError ?? "nothing was delivered")} | | | | | | | {r.Errors} |";
        }
        double? PerMessage(double? seconds) => seconds is { } s ? s * 1e6 / r.Delivered : null;
        var parts = $"{F(PerMessage(r.NodeCpuSeconds))} · {F(PerMessage(r.RedisCpuSeconds))} · {(r.PostgresCpuSeconds is null ? "–" : F(PerMessage(r.PostgresCpuSeconds)))}";
        var commands = r.RedisCommandsByName is { } byName && r.Published > 0
            ? string.Join(", ", byName.Select(c => (c.Key, PerMessage: (double)c.Value / r.Published)).Where(c => c.PerMessage >= 0.005).Take(4)
                .Select(c => $"{c.Key} {c.PerMessage.ToString("F2", CultureInfo.InvariantCulture)}"))
            : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"| {r.Label} | {r.Scenario} | {r.Shape} | {r.DeliveredPerSecond:N0} | {F(r.LatencyP50Ms)} | {F(r.LatencyP99Ms)} | {F(r.AllCpuMicrosPerMessage)} | {parts} | {F(r.RedisCommandsPerMessage)} | {commands} | {r.Errors} |");
    }

    private static string F(double? value) =>
        value is { } v && !double.IsNaN(v) ? v.ToString("F2", CultureInfo.InvariantCulture) : "";

    private static string Escape(string text) => text.Replace("|", "\\|", StringComparison.Ordinal).ReplaceLineEndings(" ");
}
