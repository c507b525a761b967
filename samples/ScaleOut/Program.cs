// Redundant RPC providers behind several nodes: calls spread over the providers, and go on when a provider or a node
// goes away. Started by samples/ScaleOut/run.sh (Redis, PostgreSQL, three nodes, two providers, a caller); by hand:
//   dotnet run --project samples/ScaleOut -- provider <name> <node address>[,<another node>...]
//   dotnet run --project samples/ScaleOut -- caller <node address>[,<another node>...]
// A node address is tcp://host:port or ws://host:port/statemesh; the ones after the first are where the client goes
// when its node goes away.
using System.Diagnostics;
using StateMesh.Client;

const string Rpc = "scaleout/work";
if (args.Length < 2 || args[0] is not ("provider" or "caller") || (args[0] == "provider" && args.Length < 3))
{
    Console.Error.WriteLine("usage: ScaleOut provider <name> <addresses> | ScaleOut caller <addresses> [--steps]");
    return 2;
}
var addresses = (args[0] == "provider" ? args[2] : args[1]).Split(',', StringSplitOptions.RemoveEmptyEntries);
var options = new StateMeshClientOptions
{
    MaxReconnectAttempts = int.MaxValue,
    ReconnectIntervalIncrement = TimeSpan.FromMilliseconds(250),
    MaxReconnectInterval = TimeSpan.FromSeconds(2),
    OfflineBufferTimeout = TimeSpan.FromSeconds(10),
};
var name = args[0] == "provider" ? args[1] : "caller";
await using var client = await StateMeshClient.ConnectAsync(addresses, new { username = name }, options);
using var states = client.ConnectionStates.Subscribe(state => Console.WriteLine($"state {state}"));

if (args[0] == "provider")
{
    var served = 0L;
    await using var provided = await client.Rpc.ProvideAsync<int, string>(Rpc, (n, _) =>
    {
        Interlocked.Increment(ref served);
        return Task.FromResult(name);
    });
    Console.WriteLine($"providing {Rpc} as {name}");
    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
    AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.Cancel();
    try
    {
        await Task.Delay(Timeout.Infinite, stop.Token);
    }
    catch (OperationCanceledException)
    {
    }
    Console.WriteLine($"served {Interlocked.Read(ref served)} calls");
    return 0;
}

// The caller. With --steps it reads "call <n>" lines and answers each with one summary line (for tests); else it calls
// without end and prints, every second, the calls per second and which provider answered how often.
if (args.Contains("--steps"))
{
    while (Console.ReadLine() is { } line)
    {
        if (line.StartsWith("call ", StringComparison.Ordinal) && int.TryParse(line[5..], out var count))
        {
            var (byProvider, failed) = await CallAsync(count);
            Console.WriteLine($"calls {count} failed {failed} " + string.Join(' ', byProvider.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}")));
        }
    }
    return 0;
}
using (var stop = new CancellationTokenSource())
{
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
    while (!stop.IsCancellationRequested)
    {
        var watch = Stopwatch.StartNew();
        var (byProvider, failed) = await CallAsync(0, TimeSpan.FromSeconds(1));
        var total = byProvider.Values.Sum() + failed;
        Console.WriteLine($"{total} calls in {watch.Elapsed.TotalSeconds:F1} s, answered by " +
            string.Join(", ", byProvider.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}")) + (failed > 0 ? $", {failed} failed" : ""));
    }
}
return 0;

// Calls one after another: count calls, or for a while when count is 0.
async Task<(Dictionary<string, int> ByProvider, int Failed)> CallAsync(int count, TimeSpan? duration = null)
{
    var byProvider = new Dictionary<string, int>();
    var failed = 0;
    var until = DateTime.UtcNow + (duration ?? TimeSpan.Zero);
    for (var i = 0; count > 0 ? i < count : DateTime.UtcNow < until; i++)
    {
        try
        {
            var provider = await client.Rpc.MakeAsync<int, string>(Rpc, i);
            byProvider[provider] = byProvider.GetValueOrDefault(provider) + 1;
        }
        catch (StateMeshException ex)
        {
            failed++;
            Console.Error.WriteLine($"call failed: {ex.Message}");
            await Task.Delay(200); // while no node is reachable, do not spin
        }
    }
    return (byProvider, failed);
}
