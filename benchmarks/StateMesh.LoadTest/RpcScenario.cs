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
            var provider = await LoadConnection.OpenAsync(o.Target, "provider" + p);
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
        var measuring = 0;
        var errors = 0;
        long completed = 0;
        var callers = new List<LoadConnection>();
        var starts = new List<Action>();
        for (var c = 0; c < o.Callers; c++)
        {
            var caller = await LoadConnection.OpenAsync(o.Target, "caller" + c);
            caller.Counted = (Topic.Rpc, (int)RpcAction.Response);
            var started = new ConcurrentDictionary<string, long>();
            var next = 0;
            var self = caller;
            void Call()
            {
                var id = Interlocked.Increment(ref next).ToString(CultureInfo.InvariantCulture);
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
                if (!self.Closed && Volatile.Read(ref measuring) >= 0)
                {
                    Call();
                }
            };
            // ACCEPT is forwarded to the caller; anything else is an error (NO_RPC_PROVIDER, timeouts).
            caller.OnOther = m =>
            {
                if (m.IsError || m.Action is not ((int)RpcAction.Accept))
                {
                    if (Interlocked.Increment(ref errors) == 1)
                    {
                        Console.Error.WriteLine("first error: " + m);
                    }
                    // A failed call frees its slot: the caller keeps its window full.
                    if (m.CorrelationId is { } id && started.TryRemove(id, out _) && !self.Closed && Volatile.Read(ref measuring) >= 0)
                    {
                        Call();
                    }
                }
            };
            callers.Add(caller);
            starts.Add(() => { for (var i = 0; i < o.Window; i++) { Call(); } });
        }
        starts.ForEach(start => start());
        var measured = await Measurement.RunAsync(o, () => Interlocked.Read(ref completed), () => Interlocked.Read(ref completed),
            on => Volatile.Write(ref measuring, on ? 1 : -1));
        errors += callers.Concat(providers).Count(c => c.Closed);
        await Task.WhenAll(callers.Concat(providers).Select(c => c.DisposeAsync().AsTask()));
        return measured.ToResult(o, "rpc", $"{o.Providers} providers, {o.Callers}×{o.Window} in flight", [recorder], errors, o.Providers + o.Callers);
    }
}
