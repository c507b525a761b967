using System.Globalization;
using System.Text;
using System.Text.Json;
using ScottPlot;

namespace StateMesh.LoadTest;

/// <summary>
/// Turns the JSON results of one side-by-side run into markdown (every run, then StateMesh against deepstream and
/// against the bare relay, with the targets) and a PNG chart of the ratios.
/// </summary>
internal static class Report
{
    public const string Baseline = "deepstream";
    public const string Relay = "bare relay";

    private sealed record Target(string Text, Func<Ratio, double?> Figure, double Goal);

    /// <summary>StateMesh against deepstream in one scenario; each figure is "how many times better" (higher is better).</summary>
    private sealed record Ratio(LoadResult Ours, LoadResult Theirs, LoadResult? Relay)
    {
        public double? Throughput => Ours.Scenario == "idle" ? null : Ours.DeliveredPerSecond / Theirs.DeliveredPerSecond;
        public double? Cpu => Ours.NodeCpuMicrosPerMessage is { } o && Theirs.NodeCpuMicrosPerMessage is { } t && o > 0 ? t / o : null;
        public double? P99 => Ours.OfferedPerSecond > 0 && Ours.LatencyP99Ms > 0 ? Theirs.LatencyP99Ms / Ours.LatencyP99Ms : null;
        public double? Memory => Ours.MemoryPerConnectionBytes is { } o && Theirs.MemoryPerConnectionBytes is { } t && o > 0 ? t / o : null;
        public double? OfRelay => Relay is null ? null : Ours.DeliveredPerSecond / Relay.DeliveredPerSecond;
    }

    public static async Task<int> RunAsync(string[] args)
    {
        string? input = null, markdown = null, chart = null;
        for (var i = 1; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--in": input = args[i + 1]; break;
                case "--markdown": markdown = args[i + 1]; break;
                case "--chart": chart = args[i + 1]; break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        if (input is null || markdown is null || chart is null)
        {
            throw new ArgumentException("report needs --in <directory of results> --markdown <file> --chart <png>");
        }
        var results = Directory.GetFiles(input, "*.json").Order(StringComparer.Ordinal)
            .Select(f => JsonSerializer.Deserialize<LoadResult>(File.ReadAllText(f), LoadResult.Json)!)
            .ToList();
        var ratios = Ratios(results);
        await File.WriteAllTextAsync(markdown, Markdown(results, ratios, Path.GetFileName(chart)));
        Chart(ratios, chart);
        Console.WriteLine($"wrote {markdown} and {chart} from {results.Count} results");
        return 0;
    }

    // attack runs compare a node with itself (without and with an attacker), not with deepstream: their own section.
    private static List<Ratio> Ratios(List<LoadResult> results) =>
        results.Where(r => r.Attack is null).GroupBy(r => (r.Scenario, r.Shape, r.OfferedPerSecond))
            .SelectMany(g =>
            {
                var theirs = g.FirstOrDefault(r => r.Label == Baseline);
                var relay = g.FirstOrDefault(r => r.Label == Relay);
                return theirs is null ? [] : g.Where(r => r.Label is not (Baseline or Relay)).Select(r => new Ratio(r, theirs, relay));
            })
            .ToList();

    private static readonly Target[] Targets =
    [
        new("≥ 5× events/s or CPU/event", r => Best(r.Throughput, r.Cpu), 5),
        new("≥ 5× updates/s or CPU/update", r => Best(r.Throughput, r.Cpu), 5),
        new("≥ 3× calls/s or CPU/call", r => Best(r.Throughput, r.Cpu), 3),
        new("p99 ≤ ⅓ at equal offered load", r => r.P99, 3),
        new("memory/connection ≤ ½", r => r.Memory, 2),
    ];

    private static Target TargetFor(Ratio r) => r.Ours.Scenario switch
    {
        _ when r.Ours.OfferedPerSecond > 0 => Targets[3],
        "records" => Targets[1],
        "rpc" => Targets[2],
        "idle" => Targets[4],
        _ => Targets[0],
    };

    private static double? Best(double? a, double? b) => a is null ? b : b is null ? a : Math.Max(a.Value, b.Value);

    private static string Markdown(List<LoadResult> results, List<Ratio> ratios, string chartFile)
    {
        static string X(double? v) => v is { } x && !double.IsNaN(x) ? x.ToString("F2", CultureInfo.InvariantCulture) + "×" : "";
        var md = new StringBuilder();
        md.AppendLine("### StateMesh against deepstream 7.0.2 (higher is better)").AppendLine();
        md.AppendLine("| scenario | shape | offered/s | StateMesh endpoint | delivered/s | CPU per message | p99 at equal load | memory/connection | against the bare relay | target | met |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in ratios)
        {
            var target = TargetFor(r);
            var figure = target.Figure(r);
            var offered = r.Ours.OfferedPerSecond > 0 ? r.Ours.OfferedPerSecond.ToString("N0", CultureInfo.InvariantCulture) : "max";
            // Closed loop: the share of the relay's throughput. Open loop: the relay's p99, the floor of this tool and machine.
            var relay = r.Relay is null ? ""
                : r.Ours.OfferedPerSecond > 0 ? $"p99 {r.Relay.LatencyP99Ms.ToString("F2", CultureInfo.InvariantCulture)} ms vs {r.Ours.LatencyP99Ms.ToString("F2", CultureInfo.InvariantCulture)} ms"
                : r.OfRelay is { } f ? f.ToString("P0", CultureInfo.InvariantCulture) : "";
            md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Ours.Scenario} | {r.Ours.Shape} | {offered} | {r.Ours.Label} | {X(r.Throughput)} | {X(r.Cpu)} | {X(r.P99)} | {X(r.Memory)} | {relay} | {target.Text} | {(figure >= target.Goal ? "yes" : "**no**")} ({X(figure)}) |");
        }
        md.AppendLine().AppendLine($"![StateMesh against deepstream]({chartFile})").AppendLine();
        var attacks = results.Where(r => r.Attack is not null).OrderBy(r => r.StartedUtc).ToList();
        if (attacks.Count > 0)
        {
            md.AppendLine("### Ordinary clients without and with an attacker (same node, same run)").AppendLine();
            foreach (var ordinary in attacks.Select(r => r.Attack!.Ordinary).Distinct())
            {
                md.AppendLine(CultureInfo.InvariantCulture, $"Ordinary clients: {ordinary}.").AppendLine();
            }
            md.AppendLine(AttackReport.MarkdownHeader);
            foreach (var r in attacks)
            {
                foreach (var row in r.Attack!.ToMarkdownRows(r))
                {
                    md.AppendLine(row);
                }
            }
            md.AppendLine();
        }
        md.AppendLine("### Every run").AppendLine();
        md.AppendLine(LoadResult.MarkdownHeader);
        foreach (var r in results.OrderBy(r => r.StartedUtc))
        {
            md.AppendLine(r.ToMarkdownRow());
        }
        return md.ToString();
    }

    /// <summary>
    /// Grouped bars of "times better than deepstream" on a log scale (bars below the line at 1× are worse), with each
    /// group's target drawn as a red dash.
    /// </summary>
    private static void Chart(List<Ratio> ratios, string path)
    {
        var plot = new Plot();
        var labels = ratios.Select(r => r.Ours.Label).Distinct().ToList();
        var groups = ratios.GroupBy(r => (r.Ours.Scenario, r.Ours.Shape, r.Ours.OfferedPerSecond)).ToList();
        Color[] palette = [Colors.SteelBlue, Colors.DarkOrange, Colors.SeaGreen, Colors.Purple];
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        var slot = labels.Count + 1;
        for (var g = 0; g < groups.Count; g++)
        {
            foreach (var r in groups[g])
            {
                var s = labels.IndexOf(r.Ours.Label);
                var figure = Math.Max(TargetFor(r).Figure(r) ?? 0.01, 0.01);
                bars.Add(new Bar
                {
                    Position = g * slot + s, Value = Math.Log10(figure), FillColor = palette[s % palette.Length],
                    Label = figure.ToString(figure < 10 ? "F1" : "F0", CultureInfo.InvariantCulture) + "×",
                });
            }
            var first = groups[g].First();
            var goal = plot.Add.Line(g * slot - 0.45, Math.Log10(TargetFor(first).Goal), g * slot + labels.Count - 0.55, Math.Log10(TargetFor(first).Goal));
            goal.LineColor = Colors.Red;
            goal.LineWidth = 2;
            var o = first.Ours;
            var name = o.OfferedPerSecond > 0 ? $"{o.Scenario} p99\n@{o.OfferedPerSecond:N0}/s" : o.Scenario == "idle" ? "idle\nmemory" : o.Scenario;
            ticks.Add(new Tick(g * slot + (labels.Count - 1) / 2.0, name, isMajor: true));
        }
        var barPlot = plot.Add.Bars(bars);
        barPlot.ValueLabelStyle.FontSize = 11;
        for (var s = 0; s < labels.Count; s++)
        {
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = labels[s], FillColor = palette[s % palette.Length] });
        }
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "target", LineColor = Colors.Red, LineWidth = 2 });
        plot.ShowLegend(Alignment.UpperRight);
        var one = plot.Add.HorizontalLine(0);
        one.LineColor = Colors.Black;
        one.LinePattern = LinePattern.Dashed;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual([.. ticks]);
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        double[] steps = [0.25, 0.5, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000];
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            [.. steps.Select(v => new Tick(Math.Log10(v), v.ToString(CultureInfo.InvariantCulture) + "×", isMajor: true))]);
        var top = bars.Count == 0 ? 1 : bars.Max(b => b.Value);
        var bottom = bars.Count == 0 ? 0 : Math.Min(0, bars.Min(b => b.Value));
        plot.Axes.SetLimitsY(bottom - 0.15, top + 0.25);
        plot.Title("StateMesh against deepstream 7.0.2, same machine, same run (log scale)");
        plot.Axes.Left.Label.Text = "× better than deepstream";
        plot.SavePng(path, 1400, 600);
    }
}
