using Microsoft.Extensions.Logging;

namespace StateMesh.Client;

internal static partial class ClientLog
{
    [LoggerMessage(EventId = 100, EventName = "ConnectionLost", Level = LogLevel.Warning, Message = "Connection to {Address} lost; reconnecting")]
    public static partial void ConnectionLost(ILogger logger, string address, Exception? exception);

    [LoggerMessage(EventId = 101, EventName = "Reconnected", Level = LogLevel.Information, Message = "Reconnected to {Address} after {Attempts} attempts")]
    public static partial void Reconnected(ILogger logger, string address, int attempts);

    [LoggerMessage(EventId = 102, EventName = "ReconnectFailed", Level = LogLevel.Debug, Message = "Reconnect attempt {Attempt} to {Address} failed")]
    public static partial void ReconnectFailed(ILogger logger, int attempt, string address, Exception exception);

    [LoggerMessage(EventId = 103, EventName = "GaveUp", Level = LogLevel.Error, Message = "Gave up reconnecting to {Address} after {Attempts} attempts")]
    public static partial void GaveUp(ILogger logger, string address, int attempts);

    [LoggerMessage(EventId = 104, EventName = "NodeError", Level = LogLevel.Warning, Message = "The node answered with an error: {Message}")]
    public static partial void NodeError(ILogger logger, string message);

    [LoggerMessage(EventId = 105, EventName = "BadPayload", Level = LogLevel.Warning, Message = "An event on '{Name}' did not deserialize as {Type}; skipped")]
    public static partial void BadPayload(ILogger logger, string name, string type, Exception exception);

    [LoggerMessage(EventId = 106, EventName = "HeartbeatTimeout", Level = LogLevel.Warning, Message = "No message from {Address} for {Silence}; reconnecting")]
    public static partial void HeartbeatTimeout(ILogger logger, string address, TimeSpan silence);

    [LoggerMessage(EventId = 108, EventName = "MergeFailed", Level = LogLevel.Error, Message = "The merge function for record '{Name}' threw; the node's version is kept")]
    public static partial void MergeFailed(ILogger logger, string name, Exception exception);

    [LoggerMessage(EventId = 109, EventName = "ObserverFailed", Level = LogLevel.Error, Message = "An observer of '{Name}' threw; the others still receive")]
    public static partial void ObserverFailed(ILogger logger, string name, Exception exception);

    [LoggerMessage(EventId = 107, EventName = "ReauthenticationFailed", Level = LogLevel.Error, Message = "The node at {Address} refused the login on reconnect; giving up")]
    public static partial void ReauthenticationFailed(ILogger logger, string address);

    [LoggerMessage(EventId = 110, EventName = "TransportFailed", Level = LogLevel.Debug, Message = "Writing to {Address} failed ({ErrorType}: {Error}); the connection ends")]
    public static partial void TransportFailed(ILogger logger, string address, string errorType, string error);

    [LoggerMessage(EventId = 111, EventName = "ProviderFailed", Level = LogLevel.Error, Message = "The provider of '{Name}' threw; the caller gets \"{Answer}\"")]
    public static partial void ProviderFailed(ILogger logger, string name, string answer, Exception exception);

    [LoggerMessage(EventId = 112, EventName = "Connected", Level = LogLevel.Information, Message = "Connected to {Address}")]
    public static partial void Connected(ILogger logger, string address);

    [LoggerMessage(EventId = 113, EventName = "ConnectFailed", Level = LogLevel.Warning, Message = "Could not connect to {Address}; trying {Next}")]
    public static partial void ConnectFailed(ILogger logger, string address, string next, Exception exception);

    [LoggerMessage(EventId = 120, EventName = "NodeStopping", Level = LogLevel.Information, Message = "The node at {Address} is stopping (it said CLOSING); closing the connection")]
    public static partial void NodeStopping(ILogger logger, string address);

    [LoggerMessage(EventId = 121, EventName = "NodeStoppedReconnecting", Level = LogLevel.Information, Message = "Connection to {Address} closed because the node stopped; reconnecting")]
    public static partial void NodeStoppedReconnecting(ILogger logger, string address);
}
