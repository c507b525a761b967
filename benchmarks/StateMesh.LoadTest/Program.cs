// End-to-end load against a StateMesh node, the deepstream server, or the bare relay of this tool, on loopback.
//   dotnet run -c Release --project benchmarks/StateMesh.LoadTest -- fanout --target ws://127.0.0.1:6020/deepstream
// Every run is bounded in time; only loopback IP addresses are accepted as targets.
using System.Globalization;
using System.Text.Json;
using StateMesh.LoadTest;

const string Usage = """
    usage: StateMesh.LoadTest <scenario> [options]
      fanout   --publishers P emit one event that --subscribers S observe
      pairs    --pairs K publishers each emit their own event to their own subscriber
      records  one writer patches a record that --subscribers S observe
      rpc      --providers P answer at once; --callers C keep --window W calls in flight each
      idle     --connections N logged-in connections held; the node's memory per connection (needs --node-pid)
      durable  --writers W each write their own record and wait for the durable write acknowledgement
      attack   --pairs K ordinary event ping-pong pairs measured without, then with one attacker, in one run:
               --attack listen|subscribe|slowreader|all (all: one attacked phase per kind)
               --attack-patterns 40 (listen, per topic)  --attack-names 5000 (subscribe, per message)
               --window 1 (round trips in flight per pair)  or --rate R (round trips/s offered, open loop)
    options: --target tcp://127.0.0.1:6021 | ws://127.0.0.1:6020/deepstream | ws://127.0.0.1:6020/statemesh | relay://127.0.0.1:7000
             --target A,B,C (fanout, pairs, records, rpc on a cluster): publishers, the writer and the callers on A;
               subscribers and providers round robin over B, C, … (every delivery crosses from node A to another node)
             --node-pid P1,P2,P3 (CPU of every node, summed)  --redis 127.0.0.1:PORT (Redis commands over the window;
               its CPU too)  --redis-pid PID  --postgres-pid PID (the postmaster: its CPU and its backends')
             --label NAME  --seconds 10  --warmup 2  --payload 64  --window 1000 (in flight per subscriber, or per caller)
             --rate R (offered messages/s, open loop; default: closed loop)  --node-pid PID (CPU and memory from /proc)
             --json FILE
      relay    --port 7000 [--max-seconds 3600]: run the bare relay (read a frame, copy it to each receiver)
      report   --in DIR --markdown FILE --chart FILE.png: the side-by-side report from the JSON results in DIR
      cluster-report --in DIR --markdown FILE: the cluster table from the JSON results in DIR
    """;

try
{
    switch (args.FirstOrDefault())
    {
        case "relay":
            var port = args.SkipWhile(a => a != "--port").Skip(1).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).FirstOrDefault(7000);
            var max = args.SkipWhile(a => a != "--max-seconds").Skip(1).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).FirstOrDefault(3600);
            return await Relay.RunAsync(port, max);
        case "report":
            return await Report.RunAsync(args);
        case "cluster-report":
            return await ClusterReport.RunAsync(args);
    }
    var options = LoadOptions.Parse(args);
    if (FileDescriptors.RaiseToHardLimit() is { } files)
    {
        Console.WriteLine(files.Before == files.After
            ? $"open files: soft limit {files.After} (hard limit {files.Hard})"
            : $"open files: soft limit raised from {files.Before} to {files.After} (the hard limit)");
    }
    var result = options.Scenario switch
    {
        "pairs" => await EventScenarios.PairsAsync(options),
        "records" => await RecordScenarios.PatchFanoutAsync(options),
        "rpc" => await RpcScenario.RunAsync(options),
        "idle" => await IdleScenario.RunAsync(options),
        "durable" => await RecordScenarios.DurableWritesAsync(options),
        "attack" => await AttackScenario.RunAsync(options),
        _ => await EventScenarios.FanoutAsync(options),
    };
    if (result.Nodes > 1 || options.Redis is not null)
    {
        Console.WriteLine(ClusterReport.MarkdownHeader);
        Console.WriteLine(ClusterReport.Row(result));
    }
    else
    {
        Console.WriteLine(LoadResult.MarkdownHeader);
        Console.WriteLine(result.ToMarkdownRow());
    }
    if (result.Attack is { } attack)
    {
        Console.WriteLine();
        Console.WriteLine(AttackReport.MarkdownHeader);
        foreach (var row in attack.ToMarkdownRows(result))
        {
            Console.WriteLine(row);
        }
    }
    if (options.JsonPath is not null)
    {
        await File.WriteAllTextAsync(options.JsonPath, JsonSerializer.Serialize(result, LoadResult.Json));
    }
    return result.Errors == 0 ? 0 : 1;
}
catch (ArgumentException ex) when (ex is not ArgumentOutOfRangeException)
{
    Console.Error.WriteLine(ex.Message);
    Console.Error.WriteLine(Usage);
    return 2;
}
