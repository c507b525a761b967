namespace StateMesh.LoadTest;

/// <summary>
/// N logged-in connections held open: the growth of the node's resident memory per connection. A hundred connections
/// are opened first and kept, so code loaded on the first connection is not counted against each.
/// </summary>
internal static class IdleScenario
{
    public static async Task<LoadResult> RunAsync(LoadOptions o)
    {
        var probe = NodeProbe.For(o.NodePid) ?? throw new ArgumentException("idle needs --node-pid: it measures the node's memory");
        var warm = await OpenAsync(o, 100, "warm");
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
        var before = probe.RssBytes();
        var window = new Window(probe);
        var held = await OpenAsync(o, o.Connections, "idle");
        await Task.Delay(TimeSpan.FromSeconds(o.Seconds));
        var after = probe.RssBytes();
        var (elapsed, nodeCpu, toolCpu, _) = window.End();
        var errors = warm.Concat(held).Count(c => c.Closed);
        await Task.WhenAll(warm.Concat(held).Select(c => c.DisposeAsync().AsTask()));
        return new LoadResult
        {
            Label = o.Label, Target = o.Target.ToString(), Scenario = "idle", Shape = $"{o.Connections} connections",
            Connections = o.Connections, Seconds = elapsed, Errors = errors, NodeCpuSeconds = nodeCpu, ToolCpuSeconds = toolCpu,
            NodeRssBytes = after, MemoryPerConnectionBytes = (after - before) / (double)o.Connections,
        };
    }

    private static async Task<List<LoadConnection>> OpenAsync(LoadOptions o, int count, string prefix)
    {
        var opened = new List<LoadConnection>(count);
        for (var i = 0; i < count; i += 50)
        {
            var batch = Enumerable.Range(i, Math.Min(50, count - i)).Select(k => LoadConnection.OpenAsync(o.Target, prefix + k));
            opened.AddRange(await Task.WhenAll(batch));
        }
        return opened;
    }
}
