using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using StateMesh.Protocol;

namespace StateMesh.LoadTest;

/// <summary>P providers answer at once; C callers keep W calls in flight each. Counts completed calls and their round trip.</summary>
internal static class RpcScenario
{
    public static async Task<LoadResult> RunAsync(LoadOptions o, int callers, int inFlight)
    {
        var name = "loadtest/echo-" + Guid.NewGuid().ToString("N")[..8];
        var providers = new List<LoadConnection>();
        for (var p = 0; p < o.Publishers; p++)
        {
            var provider = await LoadConnection.OpenAsync(o.Address, "provider" + p);
            provider.Counts = static m => m.Topic == Topic.Rpc && m.Action == (int)RpcAction.Request;
            var self = provider;
            provider.OnEvent = m =>
            {
                self.Send(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Accept, Name = m.Name, CorrelationId = m.CorrelationId });
                self.Send(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Response, Name = m.Name, CorrelationId = m.CorrelationId, Data = m.Data });
            };
            var provided = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            provider.OnOther = m => { if (m.IsAck) { provided.TrySetResult(); } };
            provider.Send(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Provide, Names = [name], CorrelationId = "p" });
            await provided.Task.WaitAsync(TimeSpan.FromSeconds(30));
            providers.Add(provider);
        }
        var latencies = new LatencyRecorder();
        var measuring = 0;
        var errors = 0;
        long completed = 0;
        var callerConnections = new List<LoadConnection>();
        for (var c = 0; c < callers; c++)
        {
            var caller = await LoadConnection.OpenAsync(o.Address, "caller" + c);
            caller.Counts = static m => m.Topic == Topic.Rpc && m.Action == (int)RpcAction.Response;
            var started = new ConcurrentDictionary<string, long>();
            var next = 0;
            var self = caller;
            void Call()
            {
                var id = Interlocked.Increment(ref next).ToString(CultureInfo.InvariantCulture);
                started[id] = Stopwatch.GetTimestamp();
                self.Send(new Message { Topic = Topic.Rpc, Action = (int)RpcAction.Request, Name = name, CorrelationId = id, Data = "1"u8.ToArray() });
            }
            caller.OnEvent = m =>
            {
                if (started.TryRemove(m.CorrelationId!, out var t0))
                {
                    Interlocked.Increment(ref completed);
                    if (Volatile.Read(ref measuring) == 1)
                    {
                        latencies.Record(Stopwatch.GetTimestamp() - t0);
                    }
                }
                if (!self.Closed && Volatile.Read(ref measuring) >= 0)
                {
                    Call();
                }
            };
            caller.OnOther = m => { if (m.IsError) { Interlocked.Increment(ref errors); } };
            callerConnections.Add(caller);
            caller.Tag = (Action)(() => { for (var i = 0; i < inFlight; i++) { Call(); } });
        }
        foreach (var caller in callerConnections)
        {
            ((Action)caller.Tag!)();
        }
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
        Volatile.Write(ref measuring, 1);
        var c0 = Interlocked.Read(ref completed);
        var clock = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(o.Seconds));
        var elapsed = clock.Elapsed.TotalSeconds;
        var calls = Interlocked.Read(ref completed) - c0;
        Volatile.Write(ref measuring, -1);
        errors += callerConnections.Concat(providers).Count(c => c.Closed);
        foreach (var c in callerConnections.Concat(providers))
        {
            await c.DisposeAsync();
        }
        var (p50, p99, max) = latencies.Percentiles();
        return new LoadResult($"rpc ({o.Publishers} providers, {callers}×{inFlight} in flight)", o.Publishers, callers, 1, elapsed, calls, calls, calls / elapsed, calls / elapsed, p50, p99, max, errors,
            $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
    }
}
