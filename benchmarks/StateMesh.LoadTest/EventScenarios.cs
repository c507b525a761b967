using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace StateMesh.LoadTest;

/// <summary>
/// fanout: P publishers emit one event name that S subscribers observe. pairs: K publishers each emit their own event
/// name to their own subscriber. Closed loop (never more than the window in flight per subscriber) or, with a rate,
/// open loop at that offered load. The payload starts with the send timestamp.
/// </summary>
internal static class EventScenarios
{
    private sealed class Group(string name)
    {
        public readonly string Name = name;
        public readonly List<LoadConnection> Subscribers = [];
        public readonly List<LoadConnection> Publishers = [];
        public long Published;

        /// <summary>Deliveries of the probes that showed the group connected, left out of the count.</summary>
        public long Settled;

        public long Delivered() => All() - Settled;

        public long All()
        {
            long sum = 0;
            foreach (var s in Subscribers)
            {
                sum += Volatile.Read(ref s.Delivered);
            }
            return sum;
        }
    }

    public static Task<LoadResult> FanoutAsync(LoadOptions o) =>
        RunAsync(o, groups: 1, o.Publishers, o.Subscribers, $"{o.Publishers}→{o.Subscribers}" + o.Placement(o.Publishers == 1 ? "publisher" : "publishers", "subscribers"));

    public static Task<LoadResult> PairsAsync(LoadOptions o) =>
        RunAsync(o, groups: o.Pairs, 1, 1, $"{o.Pairs} pairs" + o.Placement("publishers", "subscribers"));

    private static async Task<LoadResult> RunAsync(LoadOptions o, int groups, int publishersPerGroup, int subscribersPerGroup, string shape)
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var all = new List<Group>();
        var recorders = new List<LatencyRecorder>();
        var sampled = new List<LoadConnection>();
        var connections = new List<LoadConnection>();
        for (var g = 0; g < groups; g++)
        {
            var group = new Group($"loadtest/{run}/{g}");
            for (var i = 0; i < subscribersPerGroup; i++)
            {
                var s = await LoadConnection.OpenAsync(o.ReceiverTarget(g * subscribersPerGroup + i), $"sub{g}-{i}");
                // One subscriber in ten decodes and records latency; the rest count frames.
                if ((g * subscribersPerGroup + i) % 10 == 0)
                {
                    s.Latencies = new LatencyRecorder();
                    recorders.Add(s.Latencies);
                    sampled.Add(s);
                }
                await s.SubscribeEventAsync(group.Name);
                group.Subscribers.Add(s);
                connections.Add(s);
            }
            for (var i = 0; i < publishersPerGroup; i++)
            {
                var p = await LoadConnection.OpenAsync(o.Target, $"pub{g}-{i}");
                await p.PrepareEmitAsync(group.Name);
                group.Publishers.Add(p);
                connections.Add(p);
            }
            all.Add(group);
        }

        var padding = new string('x', Math.Max(0, o.Payload - 24));
        byte[] Payload() => Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"[{Stopwatch.GetTimestamp()},\"{padding}\"]"));
        // A subscription acknowledged by one node may take a moment to be known to the others: until every subscriber
        // has heard the publisher, what it sends could be lost and would shrink the closed loop's window for good.
        foreach (var group in all)
        {
            if (!await Settle.UntilAsync(() => group.Publishers[0].Emit(group.Name, Payload()), () => group.Subscribers.All(s => Volatile.Read(ref s.Delivered) > 0)))
            {
                await Task.WhenAll(connections.Select(c => c.DisposeAsync().AsTask()));
                return LoadResult.Failed(o, o.Scenario, shape, connections.Count,
                    $"subscribers of {group.Name} heard nothing from its publisher within {Settle.Timeout.TotalSeconds:F0} s");
            }
            group.Settled = group.All();
        }
        using var stop = new CancellationTokenSource();
        var publishers = all.SelectMany(g => g.Publishers.Select(p => (Group: g, Publisher: p))).ToArray();
        var ratePerPublisher = o.Rate / publishers.Length;
        var loops = publishers.Select(x => Task.Run(async () =>
        {
            var (group, publisher) = x;
            var clock = Stopwatch.StartNew();
            long sent = 0;
            while (!stop.IsCancellationRequested)
            {
                int n;
                if (ratePerPublisher > 0)
                {
                    n = (int)Math.Min((long)(clock.Elapsed.TotalSeconds * ratePerPublisher) - sent, 1000);
                }
                else
                {
                    var inFlight = Interlocked.Read(ref group.Published) * group.Subscribers.Count - group.Delivered();
                    n = inFlight > (long)o.Window * group.Subscribers.Count ? 0 : 50;
                }
                if (n <= 0)
                {
                    await Task.Delay(1);
                    continue;
                }
                for (var k = 0; k < n; k++)
                {
                    publisher.Emit(group.Name, Payload());
                }
                sent += n;
                Interlocked.Add(ref group.Published, n);
                await Task.Yield();
            }
        })).ToArray();

        long Published() => all.Sum(g => Interlocked.Read(ref g.Published));
        long Delivered() => all.Sum(g => g.Delivered());
        var measured = await Measurement.RunAsync(o, Published, Delivered, on => sampled.ForEach(s => s.Sampling = on));
        await stop.CancelAsync();
        await Task.WhenAll(loops);
        var errors = connections.Count(c => c.Closed);
        await Task.WhenAll(connections.Select(c => c.DisposeAsync().AsTask()));
        return measured.ToResult(o, o.Scenario, shape, recorders, errors, connections.Count);
    }
}

/// <summary>Waits until the clients of a run reach each other: sends a probe every 20 ms until the check holds.</summary>
internal static class Settle
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    public static async Task<bool> UntilAsync(Action probe, Func<bool> reached)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Timeout)
        {
            probe();
            await Task.Delay(20);
            if (reached())
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>Warm up, then count published and delivered messages, CPU and Redis commands over the measured window.</summary>
internal sealed record Measurement(long Published, long Delivered, ClusterProbe.Usage Usage)
{
    public static async Task<Measurement> RunAsync(LoadOptions o, Func<long> published, Func<long> delivered, Action<bool> sampling)
    {
        var probe = await ClusterProbe.ForAsync(o);
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
        sampling(true);
        var start = await probe.TakeAsync(published, delivered);
        await Task.Delay(TimeSpan.FromSeconds(o.Seconds));
        var end = await probe.TakeAsync(published, delivered);
        sampling(false);
        var usage = end.Since(start);
        return new Measurement(usage.Published, usage.Delivered, usage);
    }

    public LoadResult ToResult(LoadOptions o, string scenario, string shape, IEnumerable<LatencyRecorder> latencies, int errors, int connections, string? firstError = null)
    {
        var (p50, p99, max, samples) = LatencyRecorder.Percentiles(latencies);
        var u = Usage;
        return new LoadResult
        {
            Label = o.Label, Target = string.Join(",", o.Targets), Scenario = scenario, Shape = shape, OfferedPerSecond = o.Rate,
            PayloadBytes = o.Payload, Connections = connections, Seconds = u.Elapsed, Published = Published, Delivered = Delivered,
            LatencyP50Ms = p50, LatencyP99Ms = p99, LatencyMaxMs = max, LatencySamples = samples, Errors = errors,
            NodeCpuSeconds = u.NodeCpu, ToolCpuSeconds = u.ToolCpu, NodeRssBytes = u.Rss,
            Nodes = o.Targets.Count, NodeCpuSecondsEach = u.NodeCpuEach, RedisCpuSeconds = u.RedisCpu, PostgresCpuSeconds = u.PostgresCpu,
            RedisCommands = u.RedisCommands, RedisCommandsByName = u.RedisCommandsByName, FirstError = firstError,
        };
    }
}
