using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using StateMesh.Protocol;

namespace StateMesh.LoadTest;

/// <summary>
/// Load that hurts nobody else: K pairs of ordinary clients (2K connections) do event round trips (the pinger emits
/// its ping event, the ponger echoes it on the pong event the pinger subscribes to) and, every quarter second each
/// pinger, an event subscribe round trip on a fresh name. One phase is measured without an attacker, then one with a
/// single attacker connection per attack kind, in the same run against the same node; the figure is what the
/// ordinary clients keep. The attacker's failures (refused patterns, limit errors, a closed connection) are expected:
/// it reconnects and carries on, and nothing it meets stops the ordinary clients or fails the run.
/// </summary>
internal static class AttackScenario
{
    public static readonly string[] Kinds = ["listen", "subscribe", "slowreader"];

    /// <summary>For all: the kinds that leave least behind on the node come first.</summary>
    private static readonly string[] AllInOrder = ["slowreader", "subscribe", "listen"];

    private static readonly TimeSpan SubscribeEvery = TimeSpan.FromMilliseconds(250);

    // Each of these makes a backtracking engine explode on EvilName (checked against .NET's interpreter: every match
    // runs into a 100 ms timeout), while failing at once on the ordinary clients' names.
    private static readonly string[] PatternTemplates =
    [
        @"^(a+)+$", @"(x+x+)+y", @"^(a|aa)+$", @"^(\w+\s?)+$", @"^([a-z]+)*$", @"^(a*)*b$", @"(.*a){25}", @"^(a+)+b",
        @"^((a+)+)+$", @"^(([a-z])+.)+[A-Z]([a-z])+$", @"(\w*)*!$",
    ];

    /// <summary>Pattern i: the templates in turn, made distinct by a regex comment once they repeat.</summary>
    internal static string Pattern(int i) =>
        PatternTemplates[i % PatternTemplates.Length] + (i < PatternTemplates.Length ? "" : string.Create(CultureInfo.InvariantCulture, $"(?#{i})"));

    internal static string EvilName(int n) =>
        string.Create(CultureInfo.InvariantCulture, $"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx!{n}");

    private sealed class PendingSubscribe(string id)
    {
        public readonly string Id = id;
        public readonly TaskCompletionSource Answered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public long SentAt = Stopwatch.GetTimestamp();
    }

    private sealed class Pair(int phases)
    {
        public required LoadConnection Pinger { get; init; }
        public required LoadConnection Ponger { get; init; }
        public required string Ping { get; init; }
        public required string Pong { get; init; }
        public readonly LatencyRecorder[] RoundTrips = [.. Enumerable.Range(0, phases).Select(_ => new LatencyRecorder())];
        public readonly LatencyRecorder[] Subscribes = [.. Enumerable.Range(0, phases).Select(_ => new LatencyRecorder())];
        public long Completed;
        public long Sent;
        public PendingSubscribe? Subscribe;
    }

    /// <summary>Everything one run shares: the pairs, the phase being measured, the ordinary clients' errors.</summary>
    private sealed class Run(LoadOptions o, int phases)
    {
        public readonly LoadOptions Options = o;
        public readonly string Prefix = string.Create(CultureInfo.InvariantCulture, $"loadtest/{Random.Shared.Next(100_000, 1_000_000)}");
        public readonly List<Pair> Pairs = [];
        public readonly ConcurrentDictionary<string, int>[] OrdinaryErrors = [.. Enumerable.Range(0, phases + 1).Select(_ => new ConcurrentDictionary<string, int>())];
        public readonly int[] Unanswered = new int[phases];
        /// <summary>The phase being measured, -1 between phases (warm-up, settling).</summary>
        public int Phase = -1;
        public volatile bool Sending = true;

        public void OrdinaryError(Message m) => OrdinaryErrors[Volatile.Read(ref Phase) + 1].AddOrUpdate(ErrorKind(m), 1, (_, n) => n + 1);
    }

    public static async Task<LoadResult> RunAsync(LoadOptions o)
    {
        var kinds = o.Attack == "all" ? AllInOrder : [o.Attack];
        var run = new Run(o, kinds.Length + 1);
        var probe = NodeProbe.For(o.NodePid);
        using var stop = new CancellationTokenSource();
        var loops = new List<Task>();
        try
        {
            await OpenPairsAsync(run, kinds.Length + 1);
            loops.AddRange(run.Pairs.Select((p, i) => Task.Run(() => SubscribeLoopAsync(run, p, i, stop.Token))));
            if (o.Rate > 0)
            {
                loops.AddRange(run.Pairs.Select(p => Task.Run(() => OfferAsync(run, p, o.Rate / o.Pairs, stop.Token))));
            }
            else
            {
                var window = o.WindowGiven ? o.Window : 1;
                foreach (var p in run.Pairs)
                {
                    for (var i = 0; i < window; i++)
                    {
                        SendPing(run, p);
                    }
                }
            }

            var phases = new List<AttackPhase> { await MeasureAsync(run, probe, 0, "none", null) };
            for (var k = 0; k < kinds.Length; k++)
            {
                if (k > 0)
                {
                    await SettleAsync(run);
                }
                var attacker = new Attacker(kinds[k]);
                using var attack = new CancellationTokenSource();
                var attacking = Task.Run(() => AttackAsync(run, attacker, attack.Token));
                var phase = await MeasureAsync(run, probe, k + 1, kinds[k], attacker);
                await attack.CancelAsync();
                await attacking;
                phases.Add(phase with { Attacker = attacker.Report() });
            }
            var baseline = phases[0];
            phases = [phases[0], .. phases.Skip(1).Select(p => p.ComparedWith(baseline))];

            var closed = run.Pairs.Sum(p => (p.Pinger.Broken ? 1 : 0) + (p.Ponger.Broken ? 1 : 0));
            var errors = closed + run.OrdinaryErrors.Sum(e => e.Values.Sum());
            var worst = phases.Skip(1).MinBy(p => p.ThroughputKeptPercent ?? double.MaxValue)!;
            var loop = o.Rate > 0
                ? string.Create(CultureInfo.InvariantCulture, $"{o.Rate:N0} round trips/s offered")
                : $"{(o.WindowGiven ? o.Window : 1)} in flight per pair";
            return new LoadResult
            {
                Label = o.Label, Target = o.Target.ToString(), Scenario = "attack", Shape = $"{o.Pairs} pairs, {o.Attack}",
                OfferedPerSecond = o.Rate, PayloadBytes = o.Payload, Connections = 2 * o.Pairs + 1, Seconds = worst.Seconds,
                Published = worst.RoundTrips, Delivered = worst.RoundTrips, LatencyP50Ms = worst.LatencyP50Ms,
                LatencyP99Ms = worst.LatencyP99Ms, LatencyMaxMs = worst.LatencyMaxMs, LatencySamples = worst.LatencySamples,
                Errors = errors, NodeCpuSeconds = worst.NodeCpuSeconds, ToolCpuSeconds = worst.ToolCpuSeconds, NodeRssBytes = worst.NodeRssBytes,
                Attack = new AttackReport
                {
                    Kind = o.Attack,
                    Ordinary = $"{o.Pairs} pairs ({2 * o.Pairs} clients) of event ping-pong round trips, {loop}; each pinger subscribes to a fresh event name every {SubscribeEvery.TotalMilliseconds:F0} ms",
                    Phases = phases,
                    OrdinaryErrors = run.OrdinaryErrors.SelectMany(e => e).GroupBy(e => e.Key).ToDictionary(g => g.Key, g => g.Sum(e => e.Value)),
                    OrdinaryConnectionsClosed = closed,
                },
            };
        }
        finally
        {
            run.Sending = false;
            await stop.CancelAsync();
            await Task.WhenAll(loops);
            await Task.WhenAll(run.Pairs.SelectMany(p => new[] { p.Pinger, p.Ponger }).Select(c => c.DisposeAsync().AsTask()));
        }
    }

    private static async Task OpenPairsAsync(Run run, int phases)
    {
        var o = run.Options;
        for (var i = 0; i < o.Pairs; i++)
        {
            var pinger = await LoadConnection.OpenAsync(o.Target, "pinger" + i);
            var ponger = await LoadConnection.OpenAsync(o.Target, "ponger" + i);
            var pair = new Pair(phases)
            {
                Pinger = pinger, Ponger = ponger,
                Ping = string.Create(CultureInfo.InvariantCulture, $"{run.Prefix}/ping/{i}"),
                Pong = string.Create(CultureInfo.InvariantCulture, $"{run.Prefix}/pong/{i}"),
            };
            await ponger.SubscribeEventAsync(pair.Ping);
            await pinger.SubscribeEventAsync(pair.Pong);
            ponger.OnDelivery = m =>
            {
                if (run.Sending && !ponger.Broken)
                {
                    ponger.Send(new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = pair.Pong, Data = m.Data });
                }
            };
            ponger.OnOther = m =>
            {
                if (IsError(m))
                {
                    run.OrdinaryError(m);
                }
            };
            pinger.OnDelivery = m => OnPong(run, pair, m);
            pinger.OnOther = m =>
            {
                var pending = Volatile.Read(ref pair.Subscribe);
                var answers = pending is not null && m.Topic == Topic.Event && m.CorrelationId == pending.Id;
                if (IsError(m))
                {
                    run.OrdinaryError(m);
                }
                if (answers && (m.IsAck || IsError(m)))
                {
                    pending!.Answered.TrySetResult();
                }
            };
            run.Pairs.Add(pair);
        }
    }

    private static void SendPing(Run run, Pair pair)
    {
        var padding = Math.Max(0, run.Options.Payload - 24);
        pair.Pinger.Emit(pair.Ping, Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"[{Stopwatch.GetTimestamp()},\"{new string('x', padding)}\"]")));
        Interlocked.Increment(ref pair.Sent);
    }

    private static void OnPong(Run run, Pair pair, Message m)
    {
        Interlocked.Increment(ref pair.Completed);
        var phase = Volatile.Read(ref run.Phase);
        if (phase >= 0 && m.Data is { } data)
        {
            var payload = data.Span;
            if (payload.Length > 0 && payload[0] == (byte)'[')
            {
                payload = payload[1..];
            }
            if (Utf8Parser.TryParse(payload, out long sent, out _))
            {
                pair.RoundTrips[phase].Record(Stopwatch.GetTimestamp() - sent);
            }
        }
        if (run.Options.Rate <= 0 && run.Sending && !pair.Pinger.Broken)
        {
            SendPing(run, pair);
        }
    }

    /// <summary>Open loop: this pair's share of the offered round trips per second, whatever comes back.</summary>
    private static async Task OfferAsync(Run run, Pair pair, double perSecond, CancellationToken stop)
    {
        var clock = Stopwatch.StartNew();
        long sent = 0;
        while (!stop.IsCancellationRequested && !pair.Pinger.Broken)
        {
            var n = (int)Math.Min((long)(clock.Elapsed.TotalSeconds * perSecond) - sent, 1000);
            if (n <= 0)
            {
                try
                {
                    await Task.Delay(1, stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            for (var k = 0; k < n; k++)
            {
                SendPing(run, pair);
            }
            sent += n;
        }
    }

    /// <summary>A subscribe round trip on a fresh event name, then its unsubscribe, every quarter second.</summary>
    private static async Task SubscribeLoopAsync(Run run, Pair pair, int index, CancellationToken stop)
    {
        for (var n = 0; !stop.IsCancellationRequested && !pair.Pinger.Broken; n++)
        {
            var name = string.Create(CultureInfo.InvariantCulture, $"{run.Prefix}/sub/{index}/{n}");
            var pending = new PendingSubscribe(string.Create(CultureInfo.InvariantCulture, $"s{n}"));
            Volatile.Write(ref pair.Subscribe, pending);
            pair.Pinger.Send(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = [name], CorrelationId = pending.Id });
            try
            {
                await pending.Answered.Task.WaitAsync(stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            // Counted in the phase it is answered in, however long before that it was sent (a subscribe stuck since the
            // warm-up shows in the phase it holds up); one still waiting when a phase ends was counted there (MeasureAsync).
            var sentAt = Interlocked.Exchange(ref pending.SentAt, 0);
            var phase = Volatile.Read(ref run.Phase);
            if (sentAt != 0 && phase >= 0)
            {
                pair.Subscribes[phase].Record(Stopwatch.GetTimestamp() - sentAt);
            }
            pair.Pinger.Send(new Message { Topic = Topic.Event, Action = (int)EventAction.Unsubscribe, Names = [name], CorrelationId = string.Create(CultureInfo.InvariantCulture, $"u{n}") });
            try
            {
                await Task.Delay(SubscribeEvery, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Warm up (the attacker, if any, already at work), then measure one phase.</summary>
    private static async Task<AttackPhase> MeasureAsync(Run run, NodeProbe? probe, int index, string attack, Attacker? attacker)
    {
        var o = run.Options;
        // The first warm-up is twice as long: the code of both processes is compiled under load then, and a baseline
        // measured on code still being compiled would flatter every attacked phase after it.
        await Task.Delay(TimeSpan.FromSeconds(index == 0 ? 2 * o.Warmup : o.Warmup));
        var completed0 = run.Pairs.Sum(p => Interlocked.Read(ref p.Completed));
        var sent0 = run.Pairs.Sum(p => Interlocked.Read(ref p.Sent));
        var window = new Window(probe);
        Volatile.Write(ref run.Phase, index);
        await Task.Delay(TimeSpan.FromSeconds(o.Seconds));
        Volatile.Write(ref run.Phase, -1);
        var completed1 = run.Pairs.Sum(p => Interlocked.Read(ref p.Completed));
        var sent1 = run.Pairs.Sum(p => Interlocked.Read(ref p.Sent));
        var (elapsed, nodeCpu, toolCpu, rss) = window.End();
        // A subscribe still unanswered counts with the time it has waited so far: a lower bound, not left out.
        var now = Stopwatch.GetTimestamp();
        foreach (var p in run.Pairs)
        {
            if (Volatile.Read(ref p.Subscribe) is { } pending && !pending.Answered.Task.IsCompleted && Interlocked.Exchange(ref pending.SentAt, 0) is var sentAt and not 0)
            {
                p.Subscribes[index].Record(now - sentAt);
                run.Unanswered[index]++;
            }
        }
        var (p50, p99, max, samples) = LatencyRecorder.Percentiles(run.Pairs.Select(p => p.RoundTrips[index]));
        var (s50, s99, smax, subscribes) = LatencyRecorder.Percentiles(run.Pairs.Select(p => p.Subscribes[index]));
        return new AttackPhase
        {
            Attack = attack, Seconds = elapsed, PingsSent = sent1 - sent0, RoundTrips = completed1 - completed0,
            LatencyP50Ms = p50, LatencyP99Ms = p99, LatencyMaxMs = max, LatencySamples = samples,
            Subscribes = subscribes, SubscribesUnanswered = run.Unanswered[index],
            SubscribeP50Ms = s50, SubscribeP99Ms = s99, SubscribeMaxMs = smax,
            NodeCpuSeconds = nodeCpu, ToolCpuSeconds = toolCpu, NodeRssBytes = rss,
            OrdinaryErrors = run.OrdinaryErrors[index + 1].Values.Sum(),
            OrdinaryConnectionsClosed = run.Pairs.Sum(p => (p.Pinger.Broken ? 1 : 0) + (p.Ponger.Broken ? 1 : 0)),
            Attacker = attacker?.Report(),
        };
    }

    /// <summary>Between attacks (all): waits until the node answers the ordinary subscribes again (at most two minutes).</summary>
    private static async Task SettleAsync(Run run)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromMinutes(2))
        {
            var now = Stopwatch.GetTimestamp();
            var waiting = run.Pairs.Count(p => Volatile.Read(ref p.Subscribe) is { } s && !s.Answered.Task.IsCompleted
                && Stopwatch.GetElapsedTime(Volatile.Read(ref s.SentAt) is var t and not 0 ? t : now, now) > TimeSpan.FromSeconds(1));
            if (waiting == 0)
            {
                break;
            }
            await Task.Delay(100);
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"node settled after the attacker left: {clock.Elapsed.TotalSeconds:F1} s"));
    }

    /// <summary>The attacker: one connection at a time; when the node closes it or refuses it, it comes back.</summary>
    private static async Task AttackAsync(Run run, Attacker attacker, CancellationToken stop)
    {
        for (var k = 0; !stop.IsCancellationRequested; k++)
        {
            LoadConnection? c = null;
            var opening = LoadConnection.OpenAsync(run.Options.Target, string.Create(CultureInfo.InvariantCulture, $"attacker-{attacker.Kind}-{k}"), stop);
            try
            {
                c = await opening.WaitAsync(stop);
                attacker.Connected(c);
                await (attacker.Kind switch
                {
                    "listen" => ListenAsync(run, c, attacker, stop),
                    "subscribe" => FloodAsync(run, c, attacker, k, stop),
                    _ => SlowReadAsync(run, c, attacker, stop),
                });
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                if (c is null)
                {
                    _ = opening.ContinueWith(t => t.Result.DisposeAsync().AsTask(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default).Unwrap();
                }
            }
            catch (Exception ex)
            {
                attacker.Failed(ex, connected: c is not null);
            }
            finally
            {
                if (c is not null)
                {
                    attacker.Left(c);
                    await c.DisposeAsync();
                }
            }
            try
            {
                await Task.Delay(100, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>
    /// Listens to many pathological patterns on events and records, then subscribes, one at a time and waiting for
    /// each answer, to names that make each match run to the node's regex timeout: three in four on events, where the
    /// ordinary clients subscribe, the fourth on records. One in flight: when the attacker stops, the node is left
    /// with at most one such name to finish.
    /// </summary>
    private static async Task ListenAsync(Run run, LoadConnection c, Attacker attacker, CancellationToken stop)
    {
        foreach (var (topic, listen) in new[] { (Topic.Event, (int)EventAction.Listen), (Topic.Record, (int)RecordAction.Listen) })
        {
            for (var i = 0; i < run.Options.AttackPatterns; i++)
            {
                c.Send(new Message { Topic = topic, Action = listen, Name = Pattern(i), CorrelationId = string.Create(CultureInfo.InvariantCulture, $"l{(int)topic}-{i}") });
                attacker.Sent(patterns: 1);
            }
        }
        for (var n = 0; ; n++)
        {
            var (topic, subscribe) = n % 4 != 3 ? (Topic.Event, (int)EventAction.Subscribe) : (Topic.Record, (int)RecordAction.Subscribe);
            var id = string.Create(CultureInfo.InvariantCulture, $"e{n}");
            var answered = attacker.Expect(id);
            c.Send(new Message { Topic = topic, Action = subscribe, Names = [EvilName(n)], CorrelationId = id });
            attacker.Sent(names: 1);
            if (!await AnsweredAsync(c, answered, stop))
            {
                return;
            }
        }
    }

    /// <summary>Subscribes to fresh event and record names, many per message, as fast as the node takes them.</summary>
    private static async Task FloodAsync(Run run, LoadConnection c, Attacker attacker, int connection, CancellationToken stop)
    {
        const long MaxBacklog = 4 << 20;
        var perMessage = run.Options.AttackNames;
        var next = 0;
        for (var m = 0; ; m++)
        {
            while (c.Backlog > MaxBacklog)
            {
                if (c.Broken)
                {
                    return;
                }
                await Task.Delay(1, stop);
            }
            stop.ThrowIfCancellationRequested();
            if (c.Broken)
            {
                return;
            }
            var names = new string[perMessage];
            for (var i = 0; i < names.Length; i++)
            {
                names[i] = string.Create(CultureInfo.InvariantCulture, $"{run.Prefix}/flood/{connection}/{next++}");
            }
            var (topic, subscribe) = m % 2 == 0 ? (Topic.Event, (int)EventAction.Subscribe) : (Topic.Record, (int)RecordAction.Subscribe);
            c.Send(new Message { Topic = topic, Action = subscribe, Names = names, CorrelationId = string.Create(CultureInfo.InvariantCulture, $"f{m}") });
            attacker.Sent(names: perMessage);
            if (m % 8 == 7)
            {
                await Task.Yield();
            }
        }
    }

    /// <summary>
    /// Subscribes to every ordinary client's events, then stops reading its socket, so what the node sends it piles up.
    /// It pings twice a second (which also shows when the node has closed it: the write fails).
    /// </summary>
    private static async Task SlowReadAsync(Run run, LoadConnection c, Attacker attacker, CancellationToken stop)
    {
        var names = run.Pairs.SelectMany(p => new[] { p.Ping, p.Pong }).ToArray();
        var answered = attacker.Expect("w");
        c.Send(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = names, CorrelationId = "w" });
        attacker.Sent(names: names.Length);
        if (!await AnsweredAsync(c, answered, stop))
        {
            return;
        }
        c.PauseReading();
        while (!c.Broken)
        {
            c.Ping();
            await Task.Delay(500, stop);
        }
        // Closed by the node: read what it sent before (an error saying why, if it said).
        c.ResumeReading();
        await Task.Delay(200, stop);
    }

    /// <summary>Waits for an answer; false when the connection broke first.</summary>
    private static async Task<bool> AnsweredAsync(LoadConnection c, Task answer, CancellationToken stop)
    {
        while (!answer.IsCompleted)
        {
            if (c.Broken)
            {
                return false;
            }
            await Task.WhenAny(answer, Task.Delay(250, stop));
            stop.ThrowIfCancellationRequested();
        }
        return true;
    }

    internal static bool IsError(Message m) => m.IsError || m.Topic == Topic.Parser || m.Action == 1 || m.Action >= 100;

    /// <summary>An error as deepstream names it: <c>EVENT INVALID_LISTEN_REGEX</c>.</summary>
    internal static string ErrorKind(Message m)
    {
        var action = m.Topic switch
        {
            Topic.Parser => ((ParserAction)m.Action).ToString(),
            Topic.Connection => ((ConnectionAction)m.Action).ToString(),
            Topic.Auth => ((AuthAction)m.Action).ToString(),
            Topic.Event => ((EventAction)m.Action).ToString(),
            Topic.Record => ((RecordAction)m.Action).ToString(),
            Topic.Rpc => ((RpcAction)m.Action).ToString(),
            Topic.Presence => ((PresenceAction)m.Action).ToString(),
            _ => m.Action.ToString(CultureInfo.InvariantCulture),
        };
        return $"{m.Topic.ToString().ToUpperInvariant()} {Snake(action)}";
    }

    private static string Snake(string name)
    {
        var s = new StringBuilder(name.Length + 8);
        for (var i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsUpper(name[i]) && !char.IsUpper(name[i - 1]))
            {
                s.Append('_');
            }
            s.Append(char.ToUpperInvariant(name[i]));
        }
        return s.ToString();
    }

    /// <summary>What one attacker did and met, over its phase (the warm-up included).</summary>
    private sealed class Attacker(string kind)
    {
        public readonly string Kind = kind;
        private readonly ConcurrentDictionary<string, int> _errors = new();
        private readonly ConcurrentDictionary<string, TaskCompletionSource> _pending = new();
        private int _connections, _disconnects, _connectFailures, _failures;
        private long _names, _patterns, _messages, _acks, _received, _deliveries;
        private string? _lastFailure;

        public Task Expect(string correlationId)
        {
            var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _pending[correlationId] = answered;
            return answered.Task;
        }

        public void Connected(LoadConnection c)
        {
            Interlocked.Increment(ref _connections);
            _pending.Clear();
            c.OnOther = OnMessage;
            c.OnRecordAck = OnMessage;
        }

        private void OnMessage(Message m)
        {
            Interlocked.Increment(ref _received);
            if (IsError(m))
            {
                _errors.AddOrUpdate(ErrorKind(m), 1, (_, n) => n + 1);
            }
            else if (m.IsAck)
            {
                Interlocked.Increment(ref _acks);
            }
            if (m.CorrelationId is { } id && (m.IsAck || IsError(m)) && _pending.TryRemove(id, out var answered))
            {
                answered.TrySetResult();
            }
        }

        public void Sent(long names = 0, long patterns = 0)
        {
            Interlocked.Increment(ref _messages);
            Interlocked.Add(ref _names, names);
            Interlocked.Add(ref _patterns, patterns);
        }

        public void Failed(Exception ex, bool connected)
        {
            Interlocked.Increment(ref connected ? ref _failures : ref _connectFailures);
            _lastFailure = $"{ex.GetType().Name}: {ex.Message}";
        }

        public void Left(LoadConnection c)
        {
            if (c.Broken)
            {
                Interlocked.Increment(ref _disconnects);
            }
            Interlocked.Add(ref _deliveries, Volatile.Read(ref c.Delivered));
        }

        public AttackerReport Report() => new()
        {
            Kind = Kind, Connections = _connections, Disconnects = _disconnects, ConnectFailures = _connectFailures, Failures = _failures,
            LastFailure = _lastFailure, MessagesSent = Interlocked.Read(ref _messages), NamesSent = Interlocked.Read(ref _names),
            PatternsSent = Interlocked.Read(ref _patterns), AcksReceived = Interlocked.Read(ref _acks),
            MessagesReceived = Interlocked.Read(ref _received) + Interlocked.Read(ref _deliveries),
            Errors = new SortedDictionary<string, int>(_errors, StringComparer.Ordinal),
        };
    }
}

/// <summary>The attack scenario's own figures, in the run's JSON next to the common ones.</summary>
internal sealed record AttackReport
{
    public required string Kind { get; init; }
    public required string Ordinary { get; init; }

    /// <summary>The phase without an attacker first, then one per attack kind.</summary>
    public required List<AttackPhase> Phases { get; init; }

    public required Dictionary<string, int> OrdinaryErrors { get; init; }
    public int OrdinaryConnectionsClosed { get; init; }

    public const double ThroughputTarget = 95;
    public const double P99Target = 1.5;

    public const string MarkdownHeader =
        "| target | attack | without: round trips/s | p50 ms | p99 ms | with: round trips/s | p50 ms | p99 ms | throughput kept | p99 ratio | subscribe p99 ms without → with (unanswered) | attacker | node CPU without → with | node RSS without → with | met (≥ 95 %, ≤ 1.5×) |\n" +
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

    public IEnumerable<string> ToMarkdownRows(LoadResult result)
    {
        var without = Phases[0];
        foreach (var with in Phases.Skip(1))
        {
            yield return string.Create(CultureInfo.InvariantCulture,
                $"| {result.Label} | {with.Attack} | {without.RoundTripsPerSecond:N0} | {F(without.LatencyP50Ms)} | {F(without.LatencyP99Ms)} | {with.RoundTripsPerSecond:N0} | {F(with.LatencyP50Ms)} | {F(with.LatencyP99Ms)} | {F(with.ThroughputKeptPercent, "F1")} % | {F(with.P99Ratio)}× | {F(without.SubscribeP99Ms)} ({without.SubscribesUnanswered}) → {F(with.SubscribeP99Ms)} ({with.SubscribesUnanswered}) | {with.Attacker?.Summary()} | {Cpu(without)} → {Cpu(with)} | {Mib(without.NodeRssBytes)} → {Mib(with.NodeRssBytes)} | {(with.Met == true ? "yes" : "**no**")} |");
        }
    }

    private static string F(double? value, string format = "F2") => value is { } v && !double.IsNaN(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "";

    private static string Cpu(AttackPhase p) => p.NodeCpuSeconds is { } s ? (s / p.Seconds * 100).ToString("F0", CultureInfo.InvariantCulture) + " %" : "";

    private static string Mib(long? bytes) => bytes is { } b ? (b / (1024.0 * 1024)).ToString("F0", CultureInfo.InvariantCulture) + " MiB" : "";
}

/// <summary>One measured phase: the ordinary clients' figures, and the attacker's when there was one.</summary>
internal sealed record AttackPhase
{
    /// <summary>none, listen, subscribe or slowreader.</summary>
    public required string Attack { get; init; }
    public double Seconds { get; init; }
    public long PingsSent { get; init; }
    public long RoundTrips { get; init; }
    public double RoundTripsPerSecond => Seconds > 0 ? RoundTrips / Seconds : 0;
    public double LatencyP50Ms { get; init; } = double.NaN;
    public double LatencyP99Ms { get; init; } = double.NaN;
    public double LatencyMaxMs { get; init; } = double.NaN;
    public int LatencySamples { get; init; }

    /// <summary>Subscribe round trips timed in the phase, those still unanswered at its end included (with the time they had waited).</summary>
    public int Subscribes { get; init; }
    public int SubscribesUnanswered { get; init; }
    public double SubscribeP50Ms { get; init; } = double.NaN;
    public double SubscribeP99Ms { get; init; } = double.NaN;
    public double SubscribeMaxMs { get; init; } = double.NaN;
    public double? NodeCpuSeconds { get; init; }
    public double ToolCpuSeconds { get; init; }
    public long? NodeRssBytes { get; init; }
    public int OrdinaryErrors { get; init; }
    public int OrdinaryConnectionsClosed { get; init; }

    /// <summary>Round trips per second with the attacker as a share of those without, in per cent.</summary>
    public double? ThroughputKeptPercent { get; init; }
    public double? P99Ratio { get; init; }
    public double? SubscribeP99Ratio { get; init; }
    public bool? Met => ThroughputKeptPercent is null ? null : ThroughputKeptPercent >= AttackReport.ThroughputTarget && P99Ratio <= AttackReport.P99Target;
    public AttackerReport? Attacker { get; init; }

    public AttackPhase ComparedWith(AttackPhase without) => this with
    {
        ThroughputKeptPercent = without.RoundTripsPerSecond > 0 ? RoundTripsPerSecond / without.RoundTripsPerSecond * 100 : null,
        P99Ratio = without.LatencyP99Ms > 0 && !double.IsNaN(LatencyP99Ms) ? LatencyP99Ms / without.LatencyP99Ms : null,
        SubscribeP99Ratio = without.SubscribeP99Ms > 0 && !double.IsNaN(SubscribeP99Ms) ? SubscribeP99Ms / without.SubscribeP99Ms : null,
    };
}

/// <summary>What the attacker did and what the node answered it.</summary>
internal sealed record AttackerReport
{
    public required string Kind { get; init; }

    /// <summary>Connections it logged in on (it comes back after each disconnect).</summary>
    public int Connections { get; init; }

    /// <summary>Connections the node closed under it.</summary>
    public int Disconnects { get; init; }
    public int ConnectFailures { get; init; }
    public int Failures { get; init; }
    public string? LastFailure { get; init; }
    public long MessagesSent { get; init; }
    public long NamesSent { get; init; }
    public long PatternsSent { get; init; }
    public long AcksReceived { get; init; }
    public long MessagesReceived { get; init; }

    /// <summary>Error messages it received, by kind (<c>EVENT INVALID_LISTEN_REGEX</c>).</summary>
    public required SortedDictionary<string, int> Errors { get; init; }

    public string Summary()
    {
        var sent = Kind switch
        {
            "listen" => $"{PatternsSent:N0} patterns, {NamesSent:N0} names",
            "subscribe" => $"{NamesSent:N0} names in {MessagesSent:N0} messages",
            _ => $"{NamesSent:N0} names, {MessagesReceived:N0} messages read",
        };
        var errors = Errors.Count == 0 ? "no errors" : string.Join(", ", Errors.Select(e => $"{e.Key} ×{e.Value:N0}"));
        var refused = ConnectFailures > 0 ? $", {ConnectFailures} refused" : "";
        return string.Create(CultureInfo.InvariantCulture, $"{sent}; {Connections} connections, {Disconnects} closed by the node{refused}; {errors}");
    }
}
