using System.Globalization;
using System.Text;
using StateMesh.Client;
using StateMesh.Redis.Tests.Support;
using StateMesh.Tests.Cluster;
using StateMesh.Tests.Support;
using Xunit.Abstractions;

namespace StateMesh.Redis.Tests;

/// <summary>
/// What an event and a record write cost in Redis, with the publisher's client on node 1 of three and subscribers on
/// none, one (the publisher's own node), two or three of the nodes. Counted, not timed: commands by Redis itself
/// (<c>INFO commandstats</c> after <c>CONFIG RESETSTAT</c>), deliveries by Redis (<c>PUBSUB NUMSUB</c> times the
/// publishes) and by each node's bus (what Redis delivered to it, and which of those were its own coming back). The
/// table is printed: <c>dotnet test tests/StateMesh.Redis.Tests -c Release --filter
/// FullyQualifiedName~RedisMessagesPerEventTests --logger "console;verbosity=detailed"</c>.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class RedisMessagesPerEventTests(RedisServer redis, ITestOutputHelper output) : IAsyncLifetime
{
    public sealed record Doc(int N);

    private const int Nodes = 3;
    private const int Events = 2000;
    private const int Writes = 250;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// What <paramref name="writes"/> record writes cost, as Redis counts them (a script's commands count as commands):
    /// per write the node sends EVALSHA (the compare-and-set: HMGET, HSET), PUBLISH, and EVALSHA (mark shown: EXISTS,
    /// HGET, and HSET unless a newer version is marked already: <paramref name="marksSet"/>) once per mark; and <paramref name="loads"/> HMGET, the accepted state read before a write. A write that
    /// waits for its acknowledgement before the next is sent reads it every time; writes sent one after another are built
    /// on the node's own newest while its answer is on its way, so most of them read nothing. A change that cuts a
    /// command updates this, and the tables in README.md and docs/benchmarks.md.
    /// </summary>
    private static Dictionary<string, long> CommandsOfWrites(long writes, long marks, long loads, long marksSet) => new(StringComparer.Ordinal)
    {
        ["hmget"] = writes + loads,
        ["evalsha"] = writes + marks,
        ["hget"] = marks,
        ["hset"] = writes + marksSet,
        ["exists"] = marks,
        ["publish"] = writes,
    };

    private readonly string _prefix = "t" + Guid.NewGuid().ToString("N")[..8] + ":";
    private readonly List<RedisClusterBus> _buses = [];
    private readonly List<StateMeshNode> _nodes = [];
    private readonly List<StateMeshClient> _subscribers = [];
    private readonly ClusterNodesSpecification.SlowStorage _storage = new();
    private StateMeshClient _publisher = null!;
    private CommandStats _stats = null!;

    public async Task InitializeAsync()
    {
        // Heartbeats (three commands per node every 250 ms by default, traffic or not), and on a slow machine the
        // multiplexer's keep-alive and configuration checks (after 60 s), would be counted with the traffic; nothing
        // measured here needs them.
        var options = new RedisClusterOptions
        {
            Configuration = redis.Configuration + ",keepAlive=600,configCheckSeconds=600", Prefix = _prefix,
            HeartbeatInterval = TimeSpan.FromHours(1), NodeTimeout = TimeSpan.FromHours(2),
        };
        _stats = new CommandStats(redis.Port);
        for (var i = 0; i < Nodes; i++)
        {
            var bus = new RedisClusterBus(options);
            _buses.Add(bus);
            _nodes.Add(await TestNode.StartAsync(storage: _storage, clusterBus: bus, store: new RedisRecordStore(bus, options), registry: new RedisClusterRegistry(bus, options)));
            _subscribers.Add(await StateMeshClient.ConnectAsync(_nodes[i].TcpAddress!.ToString(), new { username = "subscriber" + i }));
        }
        _publisher = await StateMeshClient.ConnectAsync(_nodes[0].TcpAddress!.ToString(), new { username = "publisher" });
    }

    public async Task DisposeAsync()
    {
        if (_publisher is not null)
        {
            await _publisher.DisposeAsync();
        }
        foreach (var client in _subscribers)
        {
            await client.DisposeAsync();
        }
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_event_costs_one_PUBLISH_and_reaches_only_the_nodes_whose_clients_subscribe()
    {
        var phases = new List<Phase>();
        for (var interested = 0; interested <= Nodes; interested++)
        {
            var name = "count/" + interested;
            var seen = Enumerable.Range(0, interested).Select(_ => new List<int>()).ToArray();
            var subscriptions = new List<IDisposable>();
            for (var i = 0; i < interested; i++)
            {
                var mine = seen[i];
                subscriptions.Add(await _subscribers[i].Events.SubscribeAsync<int>(name, v => { lock (mine) { mine.Add(v); } }));
            }
            // The bus channels are ClusterChannels': E/<event>, R/{<record>}.
            phases.Add(await MeasureAsync("E/" + name, interested, Events,
                async () =>
                {
                    for (var e = 0; e < Events; e++)
                    {
                        await _publisher.Events.PublishAsync(name, e);
                    }
                },
                () => seen.All(s => { lock (s) { return s.Count >= Events; } })));
            // Every subscriber, the one on the publisher's own node included, got every event once, in order.
            foreach (var s in seen)
            {
                lock (s)
                {
                    Assert.Equal(Enumerable.Range(0, Events), s);
                }
            }
            subscriptions.ForEach(s => s.Dispose());
        }
        Print("event", phases);
        foreach (var phase in phases)
        {
            Assert.Equal(new Dictionary<string, long> { ["publish"] = Events }, phase.Commands);
            AssertDeliveries(phase);
        }
    }

    [Fact]
    public async Task A_call_to_a_provider_on_another_node_costs_three_PUBLISH_and_no_read_of_who_provides()
    {
        const int Calls = 500;
        await using var provided = await _subscribers[1].Rpc.ProvideAsync<int, int>("rpc/square", (x, ct) => Task.FromResult(x * x));
        // The first call reads who provides the name; the caller's node keeps what it read until a provider comes or goes.
        Assert.Equal(4, await _publisher.Rpc.MakeAsync<int, int>("rpc/square", 2));
        await _stats.ResetAsync();
        for (var i = 0; i < Calls; i++)
        {
            Assert.Equal(i * i, await _publisher.Rpc.MakeAsync<int, int>("rpc/square", i));
        }
        // The provider's node publishes the accept before the response, on one connection: both have run by now.
        var commands = await _stats.CallsAsync();
        output.WriteLine(FormattableString.Invariant($"Redis per RPC call to a provider on another node, {Calls} calls: ")
            + string.Join(", ", commands.Select(c => FormattableString.Invariant($"{c.Key.ToUpperInvariant()} {c.Value / (double)Calls:0.##}"))));
        // The request to the provider's node, its accept and its response; no SMEMBERS.
        Assert.Equal(new Dictionary<string, long> { ["publish"] = 3 * Calls }, commands);
    }

    [Fact]
    public async Task A_record_write_costs_the_same_commands_however_many_nodes_subscribe_and_reaches_only_those()
    {
        var phases = new List<Phase>();
        // Storage that answers later, as PostgreSQL does; then storage done at once (memory); then, last, versioned
        // writes sent one after another without waiting for an answer, as a busy writer sends them.
        var rows = Enumerable.Range(0, Nodes + 1).Select(n => (Interested: n, Delay: TimeSpan.FromMilliseconds(1), Streamed: false))
            .Append((Nodes, TimeSpan.Zero, false)).Append((Nodes, TimeSpan.FromMilliseconds(1), true));
        foreach (var (interested, delay, streamed) in rows)
        {
            _storage.Delay = delay;
            var name = $"doc/{interested}/{delay.Ticks}/{streamed}";
            // Created (and the scripts loaded) before counting.
            Assert.True((await _publisher.Records.SetDataWithAckAsync(name, new Doc(0))).Succeeded);
            var seen = Enumerable.Range(0, interested).Select(_ => new List<int>()).ToArray();
            var held = new List<IAsyncDisposable>();
            var subscriptions = new List<IDisposable>();
            for (var i = 0; i < interested; i++)
            {
                var mine = seen[i];
                var record = await _subscribers[i].Records.GetAsync<Doc>(name);
                held.Add(record);
                subscriptions.Add(record.Changes.Subscribe(d => { lock (mine) { mine.Add(d.N); } }));
            }
            var writer = streamed ? await _publisher.Records.GetAsync<Doc>(name) : null;
            var first = writer?.Version ?? 0;
            var phase = await MeasureAsync("R/{" + name + "}", interested, Writes,
                async () =>
                {
                    for (var w = 1; w <= Writes; w++)
                    {
                        if (writer is not null)
                        {
                            await writer.SetAsync(new Doc(w));
                            continue;
                        }
                        var written = await _publisher.Records.SetDataWithAckAsync(name, new Doc(w));
                        Assert.True(written.Succeeded, written.ToString());
                    }
                },
                () => seen.All(s => { lock (s) { return s.Count > 0 && s[^1] == Writes; } }));
            if (writer is not null)
            {
                // Every write was accepted: none was refused on the way.
                Assert.Equal(first + Writes, writer.Version);
                Assert.Equal(Writes, writer.Value!.N);
                await writer.DisposeAsync();
            }
            phases.Add(phase with
            {
                Storage = (delay > TimeSpan.Zero ? "answers later" : "done at once") + (streamed ? ", writes sent one after another" : ""),
                Streamed = streamed,
            });
            // The current value, then every version once, in order.
            foreach (var s in seen)
            {
                lock (s)
                {
                    Assert.Equal(Enumerable.Range(0, Writes + 1), s);
                }
            }
            subscriptions.ForEach(s => s.Dispose());
            foreach (var record in held)
            {
                await record.DisposeAsync();
            }
        }
        Print("record write", phases);
        foreach (var phase in phases)
        {
            // One mark per write.
            var marks = phase.Commands.GetValueOrDefault("exists");
            Assert.Equal(Writes, marks);
            var loads = phase.Commands.GetValueOrDefault("hmget") - Writes;
            var marksSet = phase.Commands.GetValueOrDefault("hset") - Writes;
            if (phase.Streamed)
            {
                // The first write reads; the rest read only when the node had no answer of its own on its way. Marks
                // are sent as writes become durable, not one round trip after another: one that finds a newer version
                // marked sets nothing.
                Assert.InRange(loads, 1, Writes / 2);
                Assert.InRange(marksSet, 1, Writes);
            }
            else
            {
                Assert.Equal(Writes, loads);
                Assert.Equal(Writes, marksSet);
            }
            Assert.Equal(CommandsOfWrites(Writes, marks, loads, marksSet), phase.Commands);
            AssertDeliveries(phase);
        }
    }

    /// <summary>
    /// Redis delivers each message to every interested node, the publisher's own included (it drops its own); only the
    /// other interested nodes take it in, and a node without an interested client gets nothing at all.
    /// </summary>
    private static void AssertDeliveries(Phase phase)
    {
        Assert.Equal((long)phase.Interested * phase.Count, phase.RedisDeliveries);
        for (var i = 0; i < Nodes; i++)
        {
            var interested = i < phase.Interested;
            Assert.Equal(interested ? phase.Count : 0, phase.Received[i]);
            Assert.Equal(interested && i == 0 ? phase.Count : 0, phase.ReturnedOwn[i]);
        }
        Assert.Equal((long)Math.Max(0, phase.Interested - 1) * phase.Count, phase.TakenIn);
    }

    /// <summary>
    /// One measured phase on <paramref name="channel"/>: the first <paramref name="interested"/> nodes have a subscribed
    /// client. Waits until Redis has confirmed their subscriptions, resets Redis's counters, publishes, and waits
    /// (bounded) until every subscriber has the last message and Redis has run every publish.
    /// </summary>
    private async Task<Phase> MeasureAsync(string channel, int interested, int count, Func<Task> publish, Func<bool> subscribersDone)
    {
        for (var i = 0; i < interested; i++)
        {
            // The node's interest is counted: this awaits the subscription its client made, without adding one.
            await _buses[i].Subscribe(channel).WaitAsync(Timeout);
            _buses[i].Unsubscribe(channel);
        }
        var subscribed = await SubscribedNodesAsync(channel);
        Assert.Equal(interested, subscribed);
        var receivedBefore = _buses.Select(b => b.Received).ToArray();
        var returnedBefore = _buses.Select(b => b.ReturnedOwn).ToArray();
        await _stats.ResetAsync();
        await publish();
        var deadline = DateTime.UtcNow + Timeout;
        Dictionary<string, long> commands;
        while (true)
        {
            commands = await _stats.CallsAsync();
            var arrived = Enumerable.Range(0, interested).All(i => _buses[i].Received - receivedBefore[i] >= count);
            if (subscribersDone() && arrived && commands.GetValueOrDefault("publish") >= count)
            {
                break;
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{channel}: not every message arrived in {Timeout} ({string.Join(", ", commands)})");
            }
            await Task.Delay(20);
        }
        Assert.Equal(subscribed, await SubscribedNodesAsync(channel));
        var received = _buses.Select((b, i) => b.Received - receivedBefore[i]).ToArray();
        var returned = _buses.Select((b, i) => b.ReturnedOwn - returnedBefore[i]).ToArray();
        return new Phase(interested, count, commands, commands.GetValueOrDefault("publish") * subscribed, received, returned);
    }

    /// <summary>Redis's own count of the connections subscribed to the channel (asked outside the counted window).</summary>
    private async Task<int> SubscribedNodesAsync(string channel) =>
        (int)await _buses[0].Redis.GetServers()[0].SubscriptionSubscriberCountAsync(StackExchange.Redis.RedisChannel.Literal(_prefix + channel));

    private void Print(string what, List<Phase> phases)
    {
        var storage = phases.Any(p => p.Storage is not null);
        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"Redis per {what}, {phases[0].Count} in each row, the client that sends them on node 1 of {Nodes}:");
        table.AppendLine(CultureInfo.InvariantCulture,
            $"| nodes with a subscriber |{(storage ? " storage write |" : "")} Redis commands | PUBLISH | Redis deliveries to nodes | taken in by other nodes | messages to nodes without a subscriber, in all | commands, each |");
        table.AppendLine(storage ? "|---|---|---|---|---|---|---|---|" : "|---|---|---|---|---|---|---|");
        foreach (var p in phases)
        {
            var per = (double)p.Count;
            var each = string.Join(", ", p.Commands.OrderByDescending(c => c.Value).ThenBy(c => c.Key, StringComparer.Ordinal)
                .Select(c => FormattableString.Invariant($"{c.Key.ToUpperInvariant()} {c.Value / per:0.##}")));
            var nodes = p.Interested switch { 0 => "0", 1 => "1 (node 1)", var n => $"{n} (nodes 1–{n})" };
            table.AppendLine(FormattableString.Invariant(
                $"| {nodes} |{(storage ? $" {p.Storage} |" : "")} {p.Commands.Values.Sum() / per:0.##} | {p.Commands.GetValueOrDefault("publish") / per:0.##} | {p.RedisDeliveries / per:0.##} | {p.TakenIn / per:0.##} | {p.Received.Skip(p.Interested).Sum()} | {each} |"));
        }
        output.WriteLine(table.ToString());
    }

    private sealed record Phase(int Interested, int Count, Dictionary<string, long> Commands, long RedisDeliveries, long[] Received, long[] ReturnedOwn)
    {
        /// <summary>How the records' storage answered a write, for the record rows.</summary>
        public string? Storage { get; init; }

        /// <summary>Record writes sent one after another, none waiting for the one before.</summary>
        public bool Streamed { get; init; }

        /// <summary>Messages nodes took in: delivered to them, not their own.</summary>
        public long TakenIn => Received.Sum() - ReturnedOwn.Sum();
    }

    /// <summary>
    /// Redis's per-command call counts, over connections of its own (no client library, so no command of its own but
    /// the ones it counts and leaves out: the reset and its own INFO).
    /// </summary>
    private sealed class CommandStats(int port)
    {
        private int _reads;

        public async Task ResetAsync()
        {
            Assert.Equal("+OK", await RedisProcess.SendAsync(port, Timeout, "CONFIG", "RESETSTAT"));
            _reads = 0;
        }

        /// <summary>Calls per command since the reset, this class's own left out (Redis counts a command once it has run).</summary>
        public async Task<Dictionary<string, long>> CallsAsync()
        {
            var info = await RedisProcess.SendAsync(port, Timeout, "INFO", "commandstats");
            var calls = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var line in info.Split("\r\n"))
            {
                // cmdstat_publish:calls=2000,usec=...
                if (line.StartsWith("cmdstat_", StringComparison.Ordinal) && line.IndexOf(':', StringComparison.Ordinal) is > 0 and var colon)
                {
                    var fields = line[(colon + 1)..].Split(',');
                    calls[line[8..colon]] = long.Parse(fields[0]["calls=".Length..], CultureInfo.InvariantCulture);
                }
            }
            Leave(calls, "config|resetstat", 1);
            Leave(calls, "info", _reads);
            _reads++;
            return calls;
        }

        private static void Leave(Dictionary<string, long> calls, string command, long own)
        {
            var left = calls.GetValueOrDefault(command) - own;
            if (left > 0)
            {
                calls[command] = left;
            }
            else
            {
                calls.Remove(command);
            }
        }
    }
}
