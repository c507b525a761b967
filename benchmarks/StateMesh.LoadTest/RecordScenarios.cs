using System.Buffers.Text;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using StateMesh.Protocol;

namespace StateMesh.LoadTest;

internal static class RecordScenarios
{
    private static string Machine => $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}";

    /// <summary>One writer patches path "t" of one record (the value is a send timestamp); S subscribers receive every PATCH.</summary>
    public static async Task<LoadResult> PatchFanoutAsync(LoadOptions o)
    {
        var name = "loadtest/record-" + Guid.NewGuid().ToString("N")[..8];
        var latencies = new LatencyRecorder();
        var measuring = 0;
        var subscribers = new List<LoadConnection>();
        for (var i = 0; i < o.Subscribers; i++)
        {
            var s = await LoadConnection.OpenAsync(o.Address, "sub" + i);
            s.Counts = static m => m.Topic == Topic.Record && m.Action == (int)RecordAction.Patch;
            if (i % 10 == 0)
            {
                s.OnEvent = m =>
                {
                    if (Volatile.Read(ref measuring) == 1 && m.Data is { } d && Utf8Parser.TryParse(d.Span, out long sent, out _))
                    {
                        latencies.Record(Stopwatch.GetTimestamp() - sent);
                    }
                };
            }
            await s.SubscribeRecordAsync(name);
            subscribers.Add(s);
        }
        var writer = await LoadConnection.OpenAsync(o.Address, "writer");
        var errors = 0;
        writer.OnOther = m => { if (m.IsError) { Interlocked.Increment(ref errors); } };
        var version = await writer.SubscribeRecordAsync(name);
        long published = 0;
        using var stop = new CancellationTokenSource();
        long Delivered() => subscribers.Sum(s => Interlocked.Read(ref s.Delivered));
        var writing = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (Interlocked.Read(ref published) * o.Subscribers - Delivered() > (long)o.Window * o.Subscribers)
                {
                    await Task.Delay(1);
                    continue;
                }
                for (var k = 0; k < 20; k++)
                {
                    var data = Encoding.UTF8.GetBytes(Stopwatch.GetTimestamp().ToString(CultureInfo.InvariantCulture));
                    writer.Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = name, Version = ++version, Path = "t", Data = data });
                }
                Interlocked.Add(ref published, 20);
                await Task.Yield();
            }
        });
        var (elapsed, p, d) = await MeasureAsync(o, () => Interlocked.Read(ref published), Delivered, () => Volatile.Write(ref measuring, 1));
        Volatile.Write(ref measuring, 0);
        await stop.CancelAsync();
        await writing;
        errors += subscribers.Count(s => s.Closed) + (writer.Closed ? 1 : 0);
        foreach (var c in subscribers.Append(writer))
        {
            await c.DisposeAsync();
        }
        var (p50, p99, max) = latencies.Percentiles();
        return new LoadResult("records", 1, o.Subscribers, 0, elapsed, p, d, p / elapsed, d / elapsed, p50, p99, max, errors, Machine);
    }

    /// <summary>W writers, each on its own record, each waiting for the durable acknowledgement before the next write.</summary>
    public static async Task<LoadResult> DurableWritesAsync(LoadOptions o)
    {
        var latencies = new LatencyRecorder();
        var measuring = 0;
        long acknowledged = 0;
        var errors = 0;
        using var stop = new CancellationTokenSource();
        var writers = new List<LoadConnection>();
        var run = Guid.NewGuid().ToString("N")[..8];
        for (var w = 0; w < o.Writers; w++)
        {
            writers.Add(await LoadConnection.OpenAsync(o.Address, "writer" + w));
        }
        var padding = new string('x', Math.Max(0, o.Payload - 16));
        var loops = writers.Select((writer, w) => Task.Run(async () =>
        {
            var name = $"loadtest/durable-{run}-{w}";
            TaskCompletionSource<Message>? pending = null;
            writer.OnOther = m => Volatile.Read(ref pending)?.TrySetResult(m);
            var i = 0;
            while (!stop.IsCancellationRequested)
            {
                var done = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
                Volatile.Write(ref pending, done);
                var started = Stopwatch.GetTimestamp();
                writer.Send(new Message
                {
                    Topic = Topic.Record, Action = (int)RecordAction.CreateAndUpdate, Name = name, Version = -1,
                    Data = Encoding.UTF8.GetBytes($"{{\"i\":{i++},\"p\":\"{padding}\"}}"), IsWriteAck = true, CorrelationId = "w",
                });
                Message reply;
                try
                {
                    reply = await done.Task.WaitAsync(TimeSpan.FromSeconds(10));
                }
                catch (TimeoutException)
                {
                    Interlocked.Increment(ref errors);
                    return;
                }
                if (reply.Action != (int)RecordAction.WriteAcknowledgement)
                {
                    Interlocked.Increment(ref errors);
                    continue;
                }
                Interlocked.Increment(ref acknowledged);
                if (Volatile.Read(ref measuring) == 1)
                {
                    latencies.Record(Stopwatch.GetTimestamp() - started);
                }
            }
        })).ToArray();
        var (elapsed, a, _) = await MeasureAsync(o, () => Interlocked.Read(ref acknowledged), () => Interlocked.Read(ref acknowledged), () => Volatile.Write(ref measuring, 1));
        Volatile.Write(ref measuring, 0);
        await stop.CancelAsync();
        await Task.WhenAll(loops);
        errors += writers.Count(c => c.Closed);
        foreach (var c in writers)
        {
            await c.DisposeAsync();
        }
        var (p50, p99, max) = latencies.Percentiles();
        return new LoadResult($"durable ({o.Writers} writers)", o.Writers, 0, o.Payload, elapsed, a, a, a / elapsed, a / elapsed, p50, p99, max, errors, Machine);
    }

    /// <summary>Warm up, then count over the measured window.</summary>
    private static async Task<(double Elapsed, long Published, long Delivered)> MeasureAsync(LoadOptions o, Func<long> published, Func<long> delivered, Action startMeasuring)
    {
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
        startMeasuring();
        var p0 = published();
        var d0 = delivered();
        var clock = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(o.Seconds));
        var elapsed = clock.Elapsed.TotalSeconds;
        return (elapsed, published() - p0, delivered() - d0);
    }
}
