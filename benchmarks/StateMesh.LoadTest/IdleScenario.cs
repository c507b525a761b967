namespace StateMesh.LoadTest;

/// <summary>
/// N logged-in connections held open: the growth of the node's resident memory per connection. A hundred connections
/// are opened first and kept, so code loaded on the first connection is not counted against each. Beyond 25,000
/// connections the tool connects from several loopback source addresses (<see cref="Endpoint.SourceAddressFor"/>).
/// </summary>
internal static class IdleScenario
{
    private const int Warm = 100;

    public static async Task<LoadResult> RunAsync(LoadOptions o)
    {
        var probe = NodeProbe.For(o.NodePid) ?? throw new ArgumentException("idle needs --node-pid: it measures the node's memory");
        var total = Warm + o.Connections;
        var limit = FileDescriptors.RaiseToHardLimit();
        // One socket per connection here; the node needs as many (its own limit is its own affair).
        if (limit is { } l && l.After < (ulong)total + 64)
        {
            throw new ArgumentException($"{o.Connections} connections need about {total + 64} open files and the hard limit is {l.Hard}: raise it before starting the tool (as root: ulimit -Hn {total * 2}), and the node's too");
        }
        var sources = o.Target.SourceAddressCount(total);
        if (sources > 0)
        {
            Console.WriteLine($"connecting from {sources} loopback source addresses, 127.0.0.2 to 127.0.0.{1 + sources}");
        }
        var held = new List<LoadConnection>(total);
        using var stop = new CancellationTokenSource();
        // The node closes a connection silent for two heartbeat intervals (deepstream's 30 s by default), and opening
        // tens of thousands takes longer than that: ping each held connection as a client would.
        var heartbeat = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(15), stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                LoadConnection[] now;
                lock (held)
                {
                    now = [.. held];
                }
                foreach (var c in now.Where(c => !c.Broken))
                {
                    c.Ping();
                }
            }
        });
        try
        {
            await OpenAsync(o, held, 0, Warm, total, "warm");
            await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
            var before = probe.RssBytes();
            var window = new Window(probe);
            await OpenAsync(o, held, Warm, o.Connections, total, "idle");
            await Task.Delay(TimeSpan.FromSeconds(o.Seconds));
            var after = probe.RssBytes();
            var (elapsed, nodeCpu, toolCpu, _) = window.End();
            var errors = held.Count(c => c.Broken);
            return new LoadResult
            {
                Label = o.Label, Target = o.Target.ToString(), Scenario = "idle", Shape = $"{o.Connections} connections",
                Connections = o.Connections, Seconds = elapsed, Errors = errors, NodeCpuSeconds = nodeCpu, ToolCpuSeconds = toolCpu,
                NodeRssBytes = after, MemoryPerConnectionBytes = (after - before) / (double)o.Connections,
            };
        }
        finally
        {
            await stop.CancelAsync();
            await heartbeat;
            await Task.WhenAll(held.Select(c => c.DisposeAsync().AsTask()));
        }
    }

    private static async Task OpenAsync(LoadOptions o, List<LoadConnection> held, int first, int count, int total, string prefix)
    {
        for (var i = 0; i < count; i += 50)
        {
            var batch = Enumerable.Range(first + i, Math.Min(50, count - i))
                .Select(k => LoadConnection.OpenAsync(o.Target, prefix + k, o.Target.SourceAddressFor(k, total)));
            var opened = await Task.WhenAll(batch);
            lock (held)
            {
                held.AddRange(opened);
            }
        }
    }
}
