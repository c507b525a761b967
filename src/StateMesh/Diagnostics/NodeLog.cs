using Microsoft.Extensions.Logging;
using StateMesh.Protocol;

namespace StateMesh.Diagnostics;

internal static partial class NodeLog
{
    [LoggerMessage(EventId = 1, EventName = "NodeStarted", Level = LogLevel.Information, Message = "StateMesh node '{NodeName}' started")]
    public static partial void NodeStarted(ILogger logger, string nodeName);

    [LoggerMessage(EventId = 2, EventName = "Listening", Level = LogLevel.Information, Message = "Listening for native TCP connections on tcp://{EndPoint}")]
    public static partial void Listening(ILogger logger, string endPoint);

    [LoggerMessage(EventId = 3, EventName = "NodeStopping", Level = LogLevel.Information, Message = "StateMesh node stopping; closing {Count} connections")]
    public static partial void NodeStopping(ILogger logger, int count);

    [LoggerMessage(EventId = 4, EventName = "PlainTextPassword", Level = LogLevel.Warning, Message = "User '{User}' has a plain-text password in configuration; store a hash instead (StateMesh.Server hash <password>)")]
    public static partial void PlainTextPassword(ILogger logger, string user);

    [LoggerMessage(EventId = 10, EventName = "ConnectionOpened", Level = LogLevel.Debug, Message = "Connection {SessionId} opened from {RemoteAddress} over {Transport}")]
    public static partial void ConnectionOpened(ILogger logger, long sessionId, string remoteAddress, string transport);

    [LoggerMessage(EventId = 11, EventName = "ConnectionClosed", Level = LogLevel.Debug, Message = "Connection {SessionId} ({User}) closed: {Reason}")]
    public static partial void ConnectionClosed(ILogger logger, long sessionId, string? user, DisconnectReason reason);

    [LoggerMessage(EventId = 12, EventName = "SlowConsumer", Level = LogLevel.Warning, Message = "Connection {SessionId} ({User}) closed: slow consumer, {Queued} messages / {QueuedBytes} bytes queued (limits {Capacity} / {MaxBytes})")]
    public static partial void SlowConsumer(ILogger logger, long sessionId, string? user, int queued, long queuedBytes, int capacity, long maxBytes);

    [LoggerMessage(EventId = 13, EventName = "HeartbeatMissing", Level = LogLevel.Information, Message = "Connection {SessionId} ({User}) closed: no message for {Silence}")]
    public static partial void HeartbeatMissing(ILogger logger, long sessionId, string? user, TimeSpan silence);

    [LoggerMessage(EventId = 14, EventName = "FrameTooLarge", Level = LogLevel.Warning, Message = "Connection {SessionId} closed: a frame of {Length} bytes exceeds the maximum message size {Max}")]
    public static partial void FrameTooLarge(ILogger logger, long sessionId, long length, int max);

    [LoggerMessage(EventId = 15, EventName = "ParseError", Level = LogLevel.Information, Message = "Connection {SessionId}: frame did not parse ({Action}): {Description}")]
    public static partial void ParseError(ILogger logger, long sessionId, string action, string description);

    [LoggerMessage(EventId = 16, EventName = "AuthFailed", Level = LogLevel.Information, Message = "Connection {SessionId} from {RemoteAddress}: login refused (attempt {Attempt})")]
    public static partial void AuthFailed(ILogger logger, long sessionId, string remoteAddress, int attempt);

    [LoggerMessage(EventId = 17, EventName = "AuthHandlerFailed", Level = LogLevel.Error, Message = "Connection {SessionId}: an authentication handler threw; the login is refused")]
    public static partial void AuthHandlerFailed(ILogger logger, long sessionId, Exception exception);

    [LoggerMessage(EventId = 18, EventName = "UnknownAction", Level = LogLevel.Information, Message = "Connection {SessionId}: unknown action {Action} on topic {Topic}")]
    public static partial void UnknownAction(ILogger logger, long sessionId, Topic topic, int action);

    [LoggerMessage(EventId = 19, EventName = "SessionFailed", Level = LogLevel.Error, Message = "Connection {SessionId}: unexpected error; the connection is closed")]
    public static partial void SessionFailed(ILogger logger, long sessionId, Exception exception);

    [LoggerMessage(EventId = 20, EventName = "TooManyAuthAttempts", Level = LogLevel.Warning, Message = "Connection {SessionId} from {RemoteAddress}: too many failed logins; closed")]
    public static partial void TooManyAuthAttempts(ILogger logger, long sessionId, string remoteAddress);

    [LoggerMessage(EventId = 21, EventName = "TransportFailed", Level = LogLevel.Debug, Message = "Connection {SessionId}: the transport failed ({ErrorType}: {Error}); closing")]
    public static partial void TransportFailed(ILogger logger, long sessionId, string errorType, string error);

    [LoggerMessage(EventId = 22, EventName = "TooManyUnauthenticated", Level = LogLevel.Warning, Message = "A connection from {RemoteAddress} was refused: {Max} connections have not logged in yet")]
    public static partial void TooManyUnauthenticated(ILogger logger, string remoteAddress, int max);

    [LoggerMessage(EventId = 23, EventName = "AcceptFailed", Level = LogLevel.Warning, Message = "Accepting a TCP connection failed ({Error}); retrying in 100 ms")]
    public static partial void AcceptFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 24, EventName = "Throttled", Level = LogLevel.Information, Message = "Connection {SessionId} ({UserId}) sends names faster than {Rate} per second; reading it more slowly")]
    public static partial void Throttled(ILogger logger, long sessionId, string? userId, int rate);

    [LoggerMessage(EventId = 25, EventName = "ClusterMessageFailed", Level = LogLevel.Error, Message = "A message from another node on channel {Channel} could not be handled")]
    public static partial void ClusterMessageFailed(ILogger logger, string channel, Exception exception);
}
