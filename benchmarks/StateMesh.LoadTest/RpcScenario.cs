using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using StateMesh.Protocol;

namespace StateMesh.LoadTest;

/// <summary>P providers accept and answer at once; C callers keep W calls in flight each. Counts completed calls and their round trip.</summary>
internal static class RpcScenario
{
    public static async Task<LoadResult> RunAsync(LoadOptions o)
    {
        var name = "loadtest/echo-" + Guid.NewGuid().ToString("N")[..8];
        var providers = new List<LoadConnection>();
        for (var p = 0; p < o.Providers; p++)
        {
            var provider = await LoadConnection.OpenAsync(o.ReceiverTarget(p), "provider" + p);
            provider.Counted = (Topic.Rpc, (int)RpcAction.Request);
            var self = provider;
            provider.OnDelivery = m =>
            {
                self.Send(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Accept, Name = m.Name, CorrelationId = m.CorrelationId });
                self.Send(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Response, Name = m.Name, CorrelationId = m.CorrelationId, Data = m.Data });
            };
            var ack = await provider.RequestAsync(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Provide, Names = [name], CorrelationId = "p" });
            if (!ack.IsAck)
            {
                throw new InvalidOperationException("provide refused: " + ack);
            }
            providers.Add(provider);
        }
        var recorder = new LatencyRecorder();
        // 1 measured, 0 warming up, -1 stopping; settling (before the callers' windows start) is 2.
        var measuring = 2;
        var errors = 0;
        string? firstError = null;
        string? settleError = null;
        var measuredErrors = 0;
        long completed = 0;
        var callers = new List<LoadConnection>();
        var starts = new List<Action>();
        var probes = new List<Action>();
        for (var c = 0; c < o.Callers; c++)
        {
            var caller = await LoadConnection.OpenAsync(o.Target, "caller" + c);
            var index = c;
            caller.Counted = (Topic.Rpc, (int)RpcAction.Response);
            var started = new ConcurrentDictionary<string, long>();
            var next = 0;
            var self = caller;
            void Call(string prefix = "")
            {
                // Unique over all callers, as a real client's are: deepstream keys the calls it routes to another node
                // by correlation id alone, so two callers' "1" in flight at once would take each other's answers.
                var id = string.Create(CultureInfo.InvariantCulture, $"{prefix}{index}.{Interlocked.Increment(ref next)}");
                started[id] = Stopwatch.GetTimestamp();
                self.Send(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Request, Name = name, CorrelationId = id, Data = "1"u8.ToArray() });
            }
            caller.OnDelivery = m =>
            {
                if (started.TryRemove(m.CorrelationId!, out var t0))
                {
                    Interlocked.Increment(ref completed);
                    if (Volatile.Read(ref measuring) == 1)
                    {
                        recorder.Record(Stopwatch.GetTimestamp() - t0);
                    }
                }
                if (!self.Closed && Volatile.Read(ref measuring) is 0 or 1 && !m.CorrelationId!.StartsWith('s'))
                {
                    Call();
                }
            };
            // ACCEPT is forwarded to the caller; anything else is an error (NO_RPC_PROVIDER, timeouts).
            caller.OnOther = m =>
            {
                if (m.IsError || m.Action is not ((int)RpcAction.Accept))
                {
                    if (m.CorrelationId?.StartsWith('s') == true)
                    {
                        // A probe before the load: the provider may not be known on the caller's node yet.
                        settleError ??= m.ToString();
                        started.TryRemove(m.CorrelationId, out _);
                        return;
                    }
                    if (Volatile.Read(ref measuring) == 1)
                    {
                        Interlocked.Increment(ref measuredErrors);
                    }
                    if (Interlocked.Increment(ref errors) == 1)
                    {
                        firstError = m.ToString();
                        Console.Error.WriteLine("first error: " + m);
                    }
                    // A failed call frees its slot: the caller keeps its window full.
                    if (m.CorrelationId is { } id && started.TryRemove(id, out _) && !self.Closed && Volatile.Read(ref measuring) is 0 or 1)
                    {
                        Call();
                    }
                }
            };
            callers.Add(caller);
            starts.Add(() => { for (var i = 0; i < o.Window; i++) { Call(); } });
            probes.Add(() => Call("s"));
        }
        var shape = $"{o.Providers} providers, {o.Callers}×{o.Window} in flight" + o.Placement("callers", "providers");
        // Every provider (or, if the node prefers some, at least one for 3 s) has answered a probe call from node 1.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (!await Settle.UntilAsync(probes[0], () => Interlocked.Read(ref completed) > 0 && (providers.All(p => Volatile.Read(ref p.Delivered) > 0) || clock.Elapsed.TotalSeconds > 3)))
        {
            await Task.WhenAll(callers.Concat(providers).Select(c => c.DisposeAsync().AsTask()));
            return LoadResult.Failed(o, "rpc", shape, o.Providers + o.Callers,
                $"no call from the callers' node was answered within {Settle.Timeout.TotalSeconds:F0} s" + (settleError is null ? "" : "; the caller was sent " + settleError));
        }
        Volatile.Write(ref measuring, 0);
        starts.ForEach(start => start());
        var measured = await Measurement.RunAsync(o, () => Interlocked.Read(ref completed), () => Interlocked.Read(ref completed),
            on => Volatile.Write(ref measuring, on ? 1 : -1));
        if (errors > 0)
        {
            firstError += $" ({errors} errors, {measuredErrors} of them in the measured window)";
            Console.Error.WriteLine(firstError);
        }
        errors += callers.Concat(providers).Count(c => c.Closed);
        await Task.WhenAll(callers.Concat(providers).Select(c => c.DisposeAsync().AsTask()));
        return measured.ToResult(o, "rpc", shape, [recorder], errors, o.Providers + o.Callers, firstError);
    }
}
