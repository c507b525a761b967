using System.Text.Json;

namespace StateMesh.Client;

/// <summary>A connection to a StateMesh node: events now; records, RPC and presence as they land.</summary>
public interface IStateMeshClient : IAsyncDisposable
{
    /// <summary>The connection state now.</summary>
    ConnectionState ConnectionState { get; }

    /// <summary>The connection state: the current one first, then every change.</summary>
    IObservable<ConnectionState> ConnectionStates { get; }

    /// <summary>What the node sent on login (its clientData), if anything.</summary>
    JsonElement? ClientData { get; }

    /// <summary>Events: publish and observe.</summary>
    IEventsClient Events { get; }

    /// <summary>Records: observe, read and write versioned JSON documents.</summary>
    IRecordsClient Records { get; }

    /// <summary>Presence: who is online.</summary>
    IPresenceClient Presence { get; }

    /// <summary>Remote procedure calls.</summary>
    IRpcClient Rpc { get; }

    /// <summary>Closes the connection; pending operations fail.</summary>
    Task CloseAsync(CancellationToken cancellationToken = default);
}

/// <summary>Fire-and-forget events on names; a publisher never receives its own events.</summary>
public interface IEventsClient
{
    /// <summary>
    /// Events on <paramref name="name"/> as values of <typeparamref name="T"/>. The first observer subscribes on
    /// the node; the last one to dispose unsubscribes. Payloads that do not deserialize are skipped.
    /// </summary>
    IObservable<T> Observe<T>(string name, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>? typeInfo = null);

    /// <summary>Like <see cref="Observe{T}"/>, but completes once the node has acknowledged the subscription.</summary>
    Task<IDisposable> SubscribeAsync<T>(string name, Action<T> onEvent, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>? typeInfo = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Publishes <paramref name="value"/> on <paramref name="name"/>. Completes once queued for the node; while the
    /// connection is briefly lost it waits in the offline buffer, and fails with <see cref="StateMeshOfflineException"/> after it.
    /// </summary>
    Task PublishAsync<T>(string name, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>? typeInfo = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Offers of event names matching <paramref name="pattern"/> (a regular expression) that gained subscribers: accept to
    /// become their publisher. Listens again after a reconnect.
    /// </summary>
    IObservable<ListenOffer> Listen(string pattern);
}
