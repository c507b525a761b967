using Microsoft.Extensions.Logging;

namespace StateMesh.Redis;

internal static partial class RedisLog
{
    [LoggerMessage(EventId = 400, EventName = "Connected", Level = LogLevel.Information, Message = "Node {NodeName} joined the cluster on Redis {Endpoints} ({Mode})")]
    public static partial void Connected(ILogger logger, string nodeName, string endpoints, string mode);

    [LoggerMessage(EventId = 401, EventName = "SubscribeFailed", Level = LogLevel.Warning, Message = "Subscribing to {Channel} in Redis failed; the multiplexer subscribes again when Redis is back")]
    public static partial void SubscribeFailed(ILogger logger, string channel, Exception exception);

    [LoggerMessage(EventId = 402, EventName = "PublishFailed", Level = LogLevel.Debug, Message = "Publishing on {Channel} failed ({Error}); other nodes miss this message")]
    public static partial void PublishFailed(ILogger logger, string channel, string error);

    [LoggerMessage(EventId = 403, EventName = "BadMessage", Level = LogLevel.Warning, Message = "A message on {Channel} did not parse ({Error}); dropped")]
    public static partial void BadMessage(ILogger logger, string channel, string error);

    [LoggerMessage(EventId = 404, EventName = "ConnectionFailed", Level = LogLevel.Warning, Message = "The connection to Redis {Endpoint} failed ({FailureType}); local clients go on, the multiplexer reconnects")]
    public static partial void ConnectionFailed(ILogger logger, string endpoint, string failureType, Exception? exception);

    [LoggerMessage(EventId = 405, EventName = "ConnectionRestored", Level = LogLevel.Information, Message = "The connection to Redis {Endpoint} is back")]
    public static partial void ConnectionRestored(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 406, EventName = "RegisteredAgain", Level = LogLevel.Warning, Message = "Redis had lost node {NodeName} (restarted empty?): registered it again with its {Sets} sets")]
    public static partial void RegisteredAgain(ILogger logger, string nodeName, int sets);
}
