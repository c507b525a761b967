using System.Collections.Concurrent;
using System.IO.Pipelines;

namespace StateMesh.Transport;

/// <summary>Pairs of in-memory pipes: clients in the same process reach a node by name (inproc://name).</summary>
internal static class InMemoryTransport
{
    private static readonly ConcurrentDictionary<string, Func<TransportConnection, bool>> Listeners = new(StringComparer.OrdinalIgnoreCase);

    public static IDisposable Listen(string name, Func<TransportConnection, bool> accept)
    {
        if (!Listeners.TryAdd(name, accept))
        {
            throw new InvalidOperationException($"An in-process node named '{name}' is already listening.");
        }
        return new Registration(name, accept);
    }

    public static TransportConnection Connect(string name, string? trustedUserId = null, System.Text.Json.Nodes.JsonNode? trustedServerData = null)
    {
        if (!Listeners.TryGetValue(name, out var accept))
        {
            throw new IOException($"No in-process node named '{name}' is listening.");
        }
        var (client, server) = CreatePair($"inproc://{name}", trustedUserId, trustedServerData: trustedServerData);
        if (!accept(server))
        {
            throw new IOException($"The in-process node '{name}' is not accepting connections.");
        }
        return client;
    }

    public static (TransportConnection Client, TransportConnection Server) CreatePair(string address, string? trustedUserId = null, string transportName = "inproc", System.Text.Json.Nodes.JsonNode? trustedServerData = null)
    {
        var options = new PipeOptions(pauseWriterThreshold: 1024 * 1024, resumeWriterThreshold: 512 * 1024, useSynchronizationContext: false);
        var toServer = new Pipe(options);
        var toClient = new Pipe(options);
        var client = new TransportConnection(toClient.Reader, toServer.Writer, address, transportName);
        var server = new TransportConnection(toServer.Reader, toClient.Writer, transportName == "inproc" ? "inproc" : address, transportName) { TrustedUserId = trustedUserId, TrustedServerData = trustedServerData };
        return (client, server);
    }

    private sealed class Registration(string name, Func<TransportConnection, bool> accept) : IDisposable
    {
        public void Dispose() => Listeners.TryRemove(new KeyValuePair<string, Func<TransportConnection, bool>>(name, accept));
    }
}
