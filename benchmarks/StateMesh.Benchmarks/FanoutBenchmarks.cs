using System.Text;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Options;
using StateMesh.Client;
using StateMesh.Protocol;
using StateMesh.Server;

namespace StateMesh.Benchmarks;

/// <summary>
/// One event to N subscribers: encode once, queue the shared bytes to each session. The subscribers are real
/// in-process clients whose connections drain in the background, so queues stay short.
/// </summary>
[MemoryDiagnoser]
public class FanoutBenchmarks
{
    private StateMeshNode _node = null!;
    private readonly List<StateMeshClient> _clients = [];
    private Session[] _subscribers = null!;
    private Message _emit = null!;

    [Params(1, 100)]
    public int Subscribers { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _node = new StateMeshNode(Options.Create(new StateMeshOptions { NodeName = "bench-" + Guid.NewGuid(), OutboundQueueCapacity = 1 << 22 }));
        await _node.StartAsync();
        for (var i = 0; i < Subscribers; i++)
        {
            var client = await StateMeshClient.ConnectAsync(_node.InProcessAddress.ToString());
            await client.Events.SubscribeAsync<int>("bench", _ => { });
            _clients.Add(client);
        }
        _subscribers = _node.Engine.Events.Registry.Get("bench");
        _emit = new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "bench", Data = Encoding.UTF8.GetBytes("42") };
    }

    [Benchmark]
    public int FanOutOneEvent() => Fanout.Send(_emit, _subscribers, null);

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        foreach (var c in _clients)
        {
            await c.DisposeAsync();
        }
        await _node.DisposeAsync();
    }
}

/// <summary>Registry lookups among many names, the step before every fan-out.</summary>
[MemoryDiagnoser]
public class RegistryBenchmarks
{
    private readonly SubscriptionRegistry _registry = new();
    private string[] _names = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        var node = new StateMeshNode(Options.Create(new StateMeshOptions()));
        var (_, server) = Transport.InMemoryTransport.CreatePair("bench");
        var session = new Session(node.Engine, server, NativeCodec.Instance);
        _names = Enumerable.Range(0, 10_000).Select(i => $"prices/instrument-{i}").ToArray();
        foreach (var name in _names)
        {
            _registry.Add(name, session);
        }
    }

    [Benchmark]
    public int LookupAmong10kNames() => _registry.Get(_names[_next++ % _names.Length]).Length;
}
