using System.Diagnostics;
using System.Text.RegularExpressions;
using StateMesh.Tests.Support;

namespace StateMesh.Redis.Tests;

/// <summary>
/// samples/ScaleOut on three StateMesh.Server nodes (Redis, PostgreSQL): two providers of one RPC on node1 and node2,
/// a caller on node3. Calls spread over both; a provider killed between calls costs no call, and takes load again when
/// it is back; the caller's node going down is survived by its client moving to another node.
/// </summary>
[Collection(ClusterConformanceCollection.Name)]
public sealed partial class ScaleOutTests(ScaleOutTests.Fixture cluster) : IClassFixture<ScaleOutTests.Fixture>
{
    public sealed class Fixture : ClusterOverRedisFixture;

    private static string SampleDll
    {
        get
        {
            var configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name;
            var dll = Path.Combine(Repository.Root, "samples", "ScaleOut", "bin", configuration, "net10.0", "ScaleOut.dll");
            Assert.True(File.Exists(dll), "the sample was not built: " + dll);
            return dll;
        }
    }

    /// <summary>A ScaleOut process: a provider, or the caller in step mode ("call n" in, one summary line out).</summary>
    private sealed class Sample : IDisposable
    {
        private readonly Process _process;
        private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();

        public Sample(params string[] args)
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
            start.ArgumentList.Add(SampleDll);
            foreach (var arg in args)
            {
                start.ArgumentList.Add(arg);
            }
            _process = Process.Start(start)!;
            _process.OutputDataReceived += (_, e) => { if (e.Data is { } line) { _lines.Writer.TryWrite(line); } };
            _process.ErrorDataReceived += (_, _) => { };
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public async Task<string> LineAsync(Func<string, bool> match)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            while (true)
            {
                var line = await _lines.Reader.ReadAsync(timeout.Token);
                if (match(line))
                {
                    return line;
                }
            }
        }

        public async Task<(int Failed, Dictionary<string, int> ByProvider)> CallAsync(int count)
        {
            await _process.StandardInput.WriteLineAsync($"call {count}");
            await _process.StandardInput.FlushAsync();
            var line = await LineAsync(l => l.StartsWith("calls ", StringComparison.Ordinal));
            var failed = int.Parse(Summary().Match(line).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            var byProvider = Counts().Matches(line).ToDictionary(m => m.Groups[1].Value, m => int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
            return (failed, byProvider);
        }

        public void Kill() => _process.Kill(entireProcessTree: true);

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
            _process.Dispose();
        }
    }

    [GeneratedRegex("^calls [0-9]+ failed ([0-9]+)")]
    private static partial Regex Summary();

    [GeneratedRegex("([a-z]+)=([0-9]+)")]
    private static partial Regex Counts();

    private string Tcp(int node) => $"tcp://127.0.0.1:{cluster.Nodes[node].Port}";

    private Sample Provider(string name, int node) => new("provider", name, $"{Tcp(node)},{Tcp((node + 1) % 3)}");

    [Fact]
    public async Task Calls_spread_over_both_providers_and_survive_a_provider_and_a_node_going_away()
    {
        using var alpha = Provider("alpha", 0);
        using var beta = Provider("beta", 1);
        await alpha.LineAsync(l => l.StartsWith("providing", StringComparison.Ordinal));
        await beta.LineAsync(l => l.StartsWith("providing", StringComparison.Ordinal));
        using var caller = new Sample("caller", $"{Tcp(2)},{Tcp(0)}", "--steps");
        await caller.LineAsync(l => l == "state Open");

        // Both providers are on other nodes than the caller's: the node picks one at random for each call.
        var (failed, byProvider) = await caller.CallAsync(400);
        Assert.Equal(0, failed);
        Assert.True(byProvider.GetValueOrDefault("alpha") >= 100 && byProvider.GetValueOrDefault("beta") >= 100, string.Join(", ", byProvider));

        // A provider killed between calls: the next calls all go to the other.
        alpha.Kill();
        (failed, byProvider) = await caller.CallAsync(200);
        Assert.Equal(0, failed);
        Assert.Equal(200, byProvider.GetValueOrDefault("beta"));

        // Started again, it takes load again.
        using var alphaAgain = Provider("alpha", 0);
        await alphaAgain.LineAsync(l => l.StartsWith("providing", StringComparison.Ordinal));
        (failed, byProvider) = await caller.CallAsync(400);
        Assert.Equal(0, failed);
        Assert.True(byProvider.GetValueOrDefault("alpha") >= 100, string.Join(", ", byProvider));

        // The caller's node goes down: its client moves to node1, and the calls go on from there.
        await cluster.StopNodeAsync(2);
        try
        {
            await caller.LineAsync(l => l == "state Open");
            (failed, byProvider) = await caller.CallAsync(200);
            Assert.Equal(0, failed);
            Assert.Equal(200, byProvider.Values.Sum());
        }
        finally
        {
            await cluster.StartNodeAsync(2);
        }
    }
}
