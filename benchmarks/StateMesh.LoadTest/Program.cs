// End-to-end load against a StateMesh node over TCP loopback.
//   dotnet run -c Release --project benchmarks/StateMesh.LoadTest -- fanout --subscribers 100 --seconds 10
// Targets loopback only, and every run is bounded in time.
using System.Buffers.Text;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using StateMesh.LoadTest;
using StateMesh.Protocol;

var options = LoadOptions.Parse(args);
if (options is null)
{
    Console.Error.WriteLine("""
        usage: StateMesh.LoadTest <scenario> [options]
          fanout   P publishers emit one event that S subscribers observe
          records  one writer patches a record that S clients observe
          durable  W writers each write their own record and wait for the durable write acknowledgement
          rpc      --publishers providers answer at once; --subscribers callers keep --window calls in flight each
        options: [--address tcp://127.0.0.1:6021] [--publishers 1] [--subscribers 100] [--writers 1]
                 [--seconds 10] [--warmup 2] [--payload 64] [--window 5000] [--json file]
        """);
    return 2;
}
if (!System.Net.IPAddress.TryParse(options.Address.Host, out var ip) || !System.Net.IPAddress.IsLoopback(ip))
{
    Console.Error.WriteLine($"refusing {options.Address}: the load tool targets loopback addresses only");
    return 2;
}

var result = options.Scenario switch
{
    "records" => await RecordScenarios.PatchFanoutAsync(options),
    "durable" => await RecordScenarios.DurableWritesAsync(options),
    "rpc" => await RpcScenario.RunAsync(options, options.Subscribers, options.Window),
    _ => await Fanout.RunAsync(options),
};
Console.WriteLine(result.ToMarkdown());
if (options.JsonPath is not null)
{
    await File.WriteAllTextAsync(options.JsonPath, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
}
return result.Errors == 0 ? 0 : 1;

namespace StateMesh.LoadTest
{
    internal sealed record LoadOptions(string Scenario, Uri Address, int Publishers, int Subscribers, int Seconds, int Warmup, int Payload, int Window, string? JsonPath, int Writers = 1)
    {
        public static LoadOptions? Parse(string[] args)
        {
            if (args.Length == 0 || args[0] is not ("fanout" or "records" or "durable" or "rpc"))
            {
                return null;
            }
            var o = new LoadOptions(args[0], new Uri("tcp://127.0.0.1:6021"), 1, 100, 10, 2, 64, 5000, null);
            for (var i = 1; i + 1 < args.Length; i += 2)
            {
                var v = args[i + 1];
                o = args[i] switch
                {
                    "--address" => o with { Address = new Uri(v) },
                    "--publishers" => o with { Publishers = int.Parse(v, CultureInfo.InvariantCulture) },
                    "--subscribers" => o with { Subscribers = int.Parse(v, CultureInfo.InvariantCulture) },
                    "--seconds" => o with { Seconds = Math.Clamp(int.Parse(v, CultureInfo.InvariantCulture), 1, 600) },
                    "--warmup" => o with { Warmup = Math.Clamp(int.Parse(v, CultureInfo.InvariantCulture), 0, 60) },
                    "--payload" => o with { Payload = int.Parse(v, CultureInfo.InvariantCulture) },
                    "--window" => o with { Window = int.Parse(v, CultureInfo.InvariantCulture) },
                    "--json" => o with { JsonPath = v },
                    "--writers" => o with { Writers = Math.Clamp(int.Parse(v, CultureInfo.InvariantCulture), 1, 1000) },
                    _ => throw new ArgumentException($"unknown option {args[i]}"),
                };
            }
            return o;
        }
    }

    internal sealed record LoadResult(
        string Scenario, int Publishers, int Subscribers, int PayloadBytes, double Seconds,
        long Published, long Delivered, double PublishedPerSecond, double DeliveredPerSecond,
        double LatencyP50Ms, double LatencyP99Ms, double LatencyMaxMs, int Errors, string Machine)
    {
        public string ToMarkdown() =>
            "| scenario | publishers | subscribers | payload | published/s | delivered/s | p50 ms | p99 ms | max ms | errors |\n" +
            "|---|---|---|---|---|---|---|---|---|---|\n" +
            string.Create(CultureInfo.InvariantCulture, $"| {Scenario} | {Publishers} | {Subscribers} | {PayloadBytes} B | {PublishedPerSecond:N0} | {DeliveredPerSecond:N0} | {LatencyP50Ms:F2} | {LatencyP99Ms:F2} | {LatencyMaxMs:F2} | {Errors} |");
    }

    /// <summary>P publishers emit one event name that S subscribers observe; closed loop with a bounded window in flight.</summary>
    internal static class Fanout
    {
        public static async Task<LoadResult> RunAsync(LoadOptions o)
        {
            const string Name = "loadtest/fanout";
            var subscribers = new List<LoadConnection>();
            var latencies = new LatencyRecorder();
            var measuring = 0;
            for (var i = 0; i < o.Subscribers; i++)
            {
                var s = await LoadConnection.OpenAsync(o.Address, "sub" + i);
                var sample = i % 10 == 0; // one subscriber in ten records latency
                if (sample)
                {
                    s.OnEvent = m =>
                    {
                        if (Volatile.Read(ref measuring) == 1 && m.Data is { } d && Utf8Parser.TryParse(d.Span[1..], out long sent, out _))
                        {
                            latencies.Record(Stopwatch.GetTimestamp() - sent);
                        }
                    };
                }
                await s.SubscribeAsync(Name);
                subscribers.Add(s);
            }
            var publishers = new List<LoadConnection>();
            for (var i = 0; i < o.Publishers; i++)
            {
                publishers.Add(await LoadConnection.OpenAsync(o.Address, "pub" + i));
            }
            var padding = new string('x', Math.Max(0, o.Payload - 24));
            long published = 0;
            var stop = new CancellationTokenSource();
            long Delivered() => subscribers.Sum(s => Interlocked.Read(ref s.Delivered));
            var pubTasks = publishers.Select(p => Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    // Closed loop: never more than Window events per subscriber in flight.
                    if (Interlocked.Read(ref published) * o.Subscribers - Delivered() > (long)o.Window * o.Subscribers)
                    {
                        await Task.Delay(1);
                        continue;
                    }
                    for (var k = 0; k < 50; k++)
                    {
                        var data = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"[{Stopwatch.GetTimestamp()},\"{padding}\"]"));
                        p.Send(new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = Name, Data = data });
                    }
                    Interlocked.Add(ref published, 50);
                    await Task.Yield();
                }
            })).ToArray();

            await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
            Volatile.Write(ref measuring, 1);
            var publishedStart = Interlocked.Read(ref published);
            var deliveredStart = Delivered();
            var clock = Stopwatch.StartNew();
            await Task.Delay(TimeSpan.FromSeconds(o.Seconds));
            var elapsed = clock.Elapsed.TotalSeconds;
            var deliveredEnd = Delivered();
            var publishedEnd = Interlocked.Read(ref published);
            Volatile.Write(ref measuring, 0);
            await stop.CancelAsync();
            await Task.WhenAll(pubTasks);
            var errors = subscribers.Concat(publishers).Count(c => c.Closed);
            foreach (var c in subscribers.Concat(publishers))
            {
                await c.DisposeAsync();
            }
            var (p50, p99, max) = latencies.Percentiles();
            return new LoadResult("fanout", o.Publishers, o.Subscribers, o.Payload, elapsed,
                publishedEnd - publishedStart, deliveredEnd - deliveredStart,
                (publishedEnd - publishedStart) / elapsed, (deliveredEnd - deliveredStart) / elapsed,
                p50, p99, max, errors, $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
        }
    }

    internal sealed class LatencyRecorder
    {
        private readonly List<long> _ticks = [];

        public void Record(long ticks)
        {
            lock (_ticks)
            {
                _ticks.Add(ticks);
            }
        }

        public (double P50, double P99, double Max) Percentiles()
        {
            lock (_ticks)
            {
                if (_ticks.Count == 0)
                {
                    return (double.NaN, double.NaN, double.NaN);
                }
                _ticks.Sort();
                double Ms(long t) => t * 1000.0 / Stopwatch.Frequency;
                return (Ms(_ticks[_ticks.Count / 2]), Ms(_ticks[(int)(_ticks.Count * 0.99)]), Ms(_ticks[^1]));
            }
        }
    }
}
