using Microsoft.Extensions.Logging;

namespace StateMesh.Postgres;

/// <summary>The PostgreSQL storage's logs. Event ids and names never change once shipped.</summary>
internal static partial class PostgresLog
{
    [LoggerMessage(EventId = 300, EventName = "PostgresTableCreated", Level = LogLevel.Information, Message = "Created the records table {Table}")]
    public static partial void TableCreated(ILogger logger, string table);

    [LoggerMessage(EventId = 301, EventName = "PostgresWriterConnectionLost", Level = LogLevel.Warning, Message = "The PostgreSQL writer's connection was lost before its commit; {Writes} writes are tried again on a new connection")]
    public static partial void WriterConnectionLost(ILogger logger, int writes, Exception exception);

    [LoggerMessage(EventId = 302, EventName = "PostgresBatchFailed", Level = LogLevel.Error, Message = "Committing {Writes} writes to PostgreSQL failed; each is reported as failed")]
    public static partial void BatchFailed(ILogger logger, int writes, Exception exception);

    [LoggerMessage(EventId = 303, EventName = "PostgresBatchRefused", Level = LogLevel.Warning, Message = "PostgreSQL refused a batch of {Writes} writes ({SqlState}); they are committed one by one so that only the refused ones fail")]
    public static partial void BatchRefused(ILogger logger, int writes, string sqlState, Exception exception);

    [LoggerMessage(EventId = 304, EventName = "PostgresStoredWithoutJsonb", Level = LogLevel.Warning, Message = "Record '{Name}' is kept byte for byte but without its jsonb copy: PostgreSQL's jsonb cannot hold it ({Reason})")]
    public static partial void StoredWithoutJsonb(ILogger logger, string name, string reason);
}
