using Microsoft.Extensions.Hosting;
using StateMesh.Client;

namespace StateMesh.Hosting;

/// <summary>
/// Runs the node with the host, and connects the in-process client once the node is up. The node stops in the host's
/// stopping phase, before any hosted service stops: a web server (Kestrel) waits for its open WebSocket requests when
/// it stops, so the node must tell those clients CLOSING and close them first, or both wait out the shutdown timeout.
/// </summary>
internal sealed class StateMeshHostedService(StateMeshNode node, InProcessClientHolder client) : IHostedLifecycleService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await node.StartAsync(cancellationToken).ConfigureAwait(false);
        await client.Client.OpenAsync(cancellationToken).ConfigureAwait(false);
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        await client.Client.CloseAsync(cancellationToken).ConfigureAwait(false);
        await node.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    // Stopped already in StoppingAsync; a second stop does nothing.
    public Task StopAsync(CancellationToken cancellationToken) => StoppingAsync(cancellationToken);

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>The in-process client of the node in this host: it reaches the node through memory, not a socket.</summary>
internal sealed class InProcessClientHolder(StateMeshNode node, Microsoft.Extensions.Options.IOptions<StateMeshClientOptions> options) : IAsyncDisposable
{
    public StateMeshClient Client { get; } = StateMeshClient.Create(node.InProcessAddress, null, options.Value, trustedUserId: node.Options.NodeName);

    public ValueTask DisposeAsync() => Client.DisposeAsync();
}

/// <summary>Connects a remote client with the host and closes it on stop.</summary>
internal sealed class RemoteClientHostedService(RemoteClientHolder holder) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => holder.Client.OpenAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => holder.Client.CloseAsync(cancellationToken);
}

internal sealed class RemoteClientHolder : IAsyncDisposable
{
    public RemoteClientHolder(Microsoft.Extensions.Options.IOptions<StateMeshRemoteClientOptions> options)
    {
        var o = options.Value;
        if (string.IsNullOrEmpty(o.Address))
        {
            throw new InvalidOperationException("AddStateMeshClient needs an Address such as tcp://127.0.0.1:6021.");
        }
        Client = StateMeshClient.Create(new Uri(o.Address), o.AuthData, o.Client);
    }

    public StateMeshClient Client { get; }

    public ValueTask DisposeAsync() => Client.DisposeAsync();
}

/// <summary>A client of a remote node, registered by <c>AddStateMeshClient</c>.</summary>
public sealed class StateMeshRemoteClientOptions
{
    /// <summary>The node's address: <c>tcp://host:port</c>.</summary>
    public string? Address { get; set; }

    /// <summary>Login data (a JSON object).</summary>
    public System.Text.Json.Nodes.JsonObject? AuthData { get; set; }

    /// <summary>Client settings.</summary>
    public StateMeshClientOptions Client { get; set; } = new();
}
