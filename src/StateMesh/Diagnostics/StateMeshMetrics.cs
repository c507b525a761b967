using System.Diagnostics.Metrics;

namespace StateMesh.Diagnostics;

/// <summary>The node's instruments, on the Meter named "StateMesh".</summary>
internal sealed class StateMeshMetrics : IDisposable
{
    public const string MeterName = "StateMesh";

    private readonly Meter _meter;

    public StateMeshMetrics(IMeterFactory? meterFactory = null)
    {
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        Connections = _meter.CreateUpDownCounter<long>("statemesh.connections", "{connection}", "Open connections");
        MessagesReceived = _meter.CreateCounter<long>("statemesh.messages.received", "{message}", "Messages received from clients");
        MessagesSent = _meter.CreateCounter<long>("statemesh.messages.sent", "{message}", "Messages written to clients");
        Errors = _meter.CreateCounter<long>("statemesh.errors", "{error}", "Error messages sent to clients, by topic and action");
        Disconnects = _meter.CreateCounter<long>("statemesh.disconnects", "{connection}", "Closed connections, by reason");
    }

    public Meter Meter => _meter;

    public UpDownCounter<long> Connections { get; }

    public Counter<long> MessagesReceived { get; }

    public Counter<long> MessagesSent { get; }

    public Counter<long> Errors { get; }

    public Counter<long> Disconnects { get; }

    public void Dispose() => _meter.Dispose();
}

/// <summary>Why a node closed a connection.</summary>
public enum DisconnectReason
{
    /// <summary>The client closed it.</summary>
    ClientClosed,
    /// <summary>Too many failed logins.</summary>
    TooManyAuthAttempts,
    /// <summary>No login within the unauthenticated timeout.</summary>
    AuthenticationTimeout,
    /// <summary>No message for twice the heartbeat interval.</summary>
    HeartbeatTimeout,
    /// <summary>The outbound queue filled up: the client reads too slowly.</summary>
    SlowConsumer,
    /// <summary>A frame larger than the maximum message size.</summary>
    MessageTooLarge,
    /// <summary>A frame that did not parse, or login data that was not a JSON object.</summary>
    ProtocolError,
    /// <summary>The node is stopping.</summary>
    NodeStopping,
    /// <summary>The transport failed.</summary>
    TransportError,
    /// <summary>Refused at once: too many connections had not logged in yet.</summary>
    TooManyUnauthenticated,
}
