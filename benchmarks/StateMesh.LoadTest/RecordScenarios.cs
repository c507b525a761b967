using System.Diagnostics;
using System.Globalization;
using System.Text;
using StateMesh.Protocol;

namespace StateMesh.LoadTest;

internal static class RecordScenarios
{
    /// <summary>One writer patches path "t" of one record (the value is a send timestamp); S subscribers receive every PATCH.</summary>
    public static async Task<LoadResult> PatchFanoutAsync(LoadOptions o)
    {
        var name = "loadtest/record-" + Guid.NewGuid().ToString("N")[..8];
        var recorders = new List<LatencyRecorder>();
        var subscribers = new List<LoadConnection>();
        for (var i = 0; i < o.Subscribers; i++)
        {
            var s = await LoadConnection.OpenAsync(o.ReceiverTarget(i), "sub" + i);
            s.Counted = (Topic.Record, (int)RecordAction.Patch);
            s.CountedToo = (int)RecordAction.Update;
            if (i % 10 == 0)
            {
                s.Latencies = new LatencyRecorder();
                recorders.Add(s.Latencies);
            }
            await s.SubscribeRecordAsync(name);
            subscribers.Add(s);
        }
        var writer = await LoadConnection.OpenAsync(o.Target, "writer");
        var errors = 0;
        string? firstError = null;
        writer.OnOther = m =>
        {
            if (m.IsError && Interlocked.Increment(ref errors) == 1)
            {
                firstError = m.ToString();
            }
        };
        var version = await writer.SubscribeRecordAsync(name);
        var shape = $"1→{o.Subscribers}" + o.Placement("writer", "subscribers");
        void Patch() => writer.Send(new Message
        {
            Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = name, Version = ++version, Path = "t",
            Data = Encoding.UTF8.GetBytes(Stopwatch.GetTimestamp().ToString(CultureInfo.InvariantCulture)),
        });
        // As with events: every subscriber hears the writer before the count starts (a subscription takes a moment to
        // be known across a cluster).
        if (!await Settle.UntilAsync(Patch, () => subscribers.All(s => Volatile.Read(ref s.Delivered) > 0)))
        {
            await Task.WhenAll(subscribers.Append(writer).Select(c => c.DisposeAsync().AsTask()));
            return LoadResult.Failed(o, "records", shape, o.Subscribers + 1,
                $"subscribers of {name} heard no patch from the writer within {Settle.Timeout.TotalSeconds:F0} s" + (firstError is null ? "" : "; the writer was sent " + firstError));
        }
        var settled = subscribers.Sum(s => Volatile.Read(ref s.Delivered));
        long published = 0;
        using var stop = new CancellationTokenSource();
        long Delivered() => subscribers.Sum(s => Volatile.Read(ref s.Delivered)) - settled;
        var writing = Task.Run(async () =>
        {
            var clock = Stopwatch.StartNew();
            while (!stop.IsCancellationRequested)
            {
                var n = o.Rate > 0
                    ? (int)Math.Min((long)(clock.Elapsed.TotalSeconds * o.Rate) - Interlocked.Read(ref published), 1000)
                    : Interlocked.Read(ref published) * o.Subscribers - Delivered() > (long)o.Window * o.Subscribers ? 0 : 20;
                if (n <= 0)
                {
                    await Task.Delay(1);
                    continue;
                }
                for (var k = 0; k < n; k++)
                {
                    Patch();
                }
                Interlocked.Add(ref published, n);
                await Task.Yield();
            }
        });
        var sampled = subscribers.Where(s => s.Latencies is not null).ToList();
        var measured = await Measurement.RunAsync(o, () => Interlocked.Read(ref published), Delivered, on => sampled.ForEach(s => s.Sampling = on));
        await stop.CancelAsync();
        await writing;
        errors += subscribers.Count(s => s.Closed) + (writer.Closed ? 1 : 0);
        await Task.WhenAll(subscribers.Append(writer).Select(c => c.DisposeAsync().AsTask()));
        return measured.ToResult(o, "records", shape, recorders, errors, o.Subscribers + 1, firstError);
    }

    /// <summary>W writers, each on its own record, each waiting for the durable acknowledgement before the next write.</summary>
    public static async Task<LoadResult> DurableWritesAsync(LoadOptions o)
    {
        var recorder = new LatencyRecorder();
        var measuring = 0;
        long acknowledged = 0;
        var errors = 0;
        using var stop = new CancellationTokenSource();
        var writers = new List<LoadConnection>();
        var run = Guid.NewGuid().ToString("N")[..8];
        for (var w = 0; w < o.Writers; w++)
        {
            writers.Add(await LoadConnection.OpenAsync(o.Target, "writer" + w));
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
                    recorder.Record(Stopwatch.GetTimestamp() - started);
                }
            }
        })).ToArray();
        var measured = await Measurement.RunAsync(o, () => Interlocked.Read(ref acknowledged), () => Interlocked.Read(ref acknowledged),
            on => Volatile.Write(ref measuring, on ? 1 : 0));
        await stop.CancelAsync();
        await Task.WhenAll(loops);
        errors += writers.Count(c => c.Closed);
        await Task.WhenAll(writers.Select(c => c.DisposeAsync().AsTask()));
        return measured.ToResult(o, "durable", $"{o.Writers} writers", [recorder], errors, o.Writers);
    }
}
