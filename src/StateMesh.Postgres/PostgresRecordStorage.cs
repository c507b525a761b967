using System.Data;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using StateMesh.Storage;

namespace StateMesh.Postgres;

/// <summary>
/// Records in a PostgreSQL table: <c>name text primary key, version integer, data jsonb, raw bytea</c>. One writer loop
/// commits whatever writes are waiting in one transaction (one multi-row upsert), so concurrent writers share one
/// commit and its WAL flush (group commit); each write completes only once its transaction has committed. Writes apply
/// in call order; when one batch writes a record twice, the later write wins. Reads use the pooled data source.
/// </summary>
/// <remarks>
/// <para>
/// <b>What a read returns.</b> jsonb normalises JSON (it reorders keys, drops whitespace and duplicate keys), so
/// <c>data</c> alone cannot give back the bytes a client wrote. Each row therefore also keeps <c>raw</c>, the exact UTF-8
/// bytes, and <see cref="GetAsync"/> returns them. <c>data</c> is there for SQL queries and indexes
/// (<c>data-&gt;&gt;'title'</c>, GIN). When a program other than StateMesh changes <c>data</c> so that it no longer equals
/// <c>raw</c> as JSON, or sets <c>raw</c> to NULL, reads return <c>data</c> as jsonb prints it.
/// </para>
/// <para>
/// <b>Records jsonb cannot hold.</b> jsonb refuses some JSON that StateMesh accepts: a <c>\u0000</c> escape in a string,
/// and numbers beyond PostgreSQL's numeric range. Such a record is stored with <c>data</c> NULL: kept byte for byte in
/// <c>raw</c>, but invisible to jsonb queries.
/// </para>
/// <para>
/// <b>Durability.</b> A write completes once PostgreSQL has committed it. The writer's session raises
/// <c>synchronous_commit</c> to <c>on</c> when the server has it <c>off</c>, so that commit means the WAL is flushed.
/// </para>
/// <para>
/// <b>Failures.</b> When the writer's connection breaks before a batch's COMMIT was sent, the batch cannot have been
/// committed and is tried once more on a new connection. When it breaks during the COMMIT, or the database cannot be
/// reached, the batch's writes fail with the exception (the node reports them), and the next batch opens a new
/// connection. When PostgreSQL refuses a batch (a constraint, a value it cannot store), its writes are committed one
/// by one so that only the refused ones fail.
/// </para>
/// </remarks>
public sealed class PostgresRecordStorage : IRecordStorage, IAsyncDisposable
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly ILogger _logger;
    private readonly string _qualifiedTable;
    private readonly string _schema;
    private readonly string _table;
    private readonly string _readSql;
    private readonly string _writeSql;
    private readonly Channel<PendingWrite> _writes;
    private readonly int _maxBatch;
    private readonly int _maxBatchBytes;
    private readonly Task _loop;
    private readonly Lock _createLock = new();
    private Task? _created;
    private NpgsqlConnection? _writer;
    private NpgsqlCommand? _write;
    private long _commits;
    private int _disposed;

    /// <summary>Opens a data source on <see cref="PostgresStorageOptions.ConnectionString"/>; the table is created on first use if missing.</summary>
    /// <exception cref="ArgumentException">The options are not valid (the message names each problem).</exception>
    public PostgresRecordStorage(PostgresStorageOptions options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        }
        _logger = (ILogger?)loggerFactory?.CreateLogger("StateMesh.Postgres") ?? NullLogger.Instance;
        _dataSource = NpgsqlDataSource.Create(options.ConnectionString);
        _schema = options.Schema;
        _table = options.Table;
        // Validated as plain lowercase identifiers, so quoting changes nothing and cannot be escaped from.
        _qualifiedTable = $"\"{_schema}\".\"{_table}\"";
        _readSql = $"""
            SELECT version, CASE
                WHEN raw IS NULL THEN convert_to(data::text, 'UTF8')
                WHEN data IS NULL OR data = convert_from(raw, 'UTF8')::jsonb THEN raw
                ELSE convert_to(data::text, 'UTF8') END
            FROM {_qualifiedTable} WHERE name = $1
            """;
        // One statement for a whole batch: the deletions, then one multi-row upsert. A batch names each record at most
        // once (the last write of each wins), so the two parts never touch the same row.
        _writeSql = $"""
            WITH deleted AS (DELETE FROM {_qualifiedTable} WHERE name = ANY($5))
            INSERT INTO {_qualifiedTable} (name, version, data, raw)
            SELECT w.name, w.version, CASE WHEN w.queryable THEN convert_from(w.raw, 'UTF8')::jsonb END, w.raw
            FROM unnest($1::text[], $2::integer[], $3::bytea[], $4::boolean[]) AS w(name, version, raw, queryable)
            ON CONFLICT (name) DO UPDATE SET version = excluded.version, data = excluded.data, raw = excluded.raw
            """;
        _maxBatch = options.MaxBatchSize;
        _maxBatchBytes = options.MaxBatchBytes;
        _writes = Channel.CreateBounded<PendingWrite>(new BoundedChannelOptions(options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _loop = Task.Run(WriteLoopAsync);
    }

    /// <summary>Transactions committed so far (each may carry many writes).</summary>
    internal long Commits => Interlocked.Read(ref _commits);

    /// <summary>The PostgreSQL backend process of the writer's connection, or null while it has none.</summary>
    internal int? WriterProcessId => _writer is { State: ConnectionState.Open } writer ? writer.ProcessID : null;

    /// <summary>The table, quoted and qualified by its schema.</summary>
    internal string QualifiedTable => _qualifiedTable;

    /// <inheritdoc />
    /// <remarks>
    /// Returns the bytes StateMesh stored (see the class remarks). The read is asynchronous all the way down and
    /// <paramref name="cancellationToken"/> cancels it on the server. A read on a pooled connection that turns out to be
    /// broken is tried once more.
    /// </remarks>
    public async ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await EnsureCreatedAsync(cancellationToken).ConfigureAwait(false);
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await using var command = _dataSource.CreateCommand(_readSql);
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
                await using var reader = await command.ExecuteReaderAsync(CommandBehavior.SingleRow, cancellationToken).ConfigureAwait(false);
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    return null;
                }
                var version = reader.GetInt32(0);
                var data = await reader.GetFieldValueAsync<byte[]>(1, cancellationToken).ConfigureAwait(false);
                return new RecordState(version, data);
            }
            catch (Exception ex) when (attempt == 0 && !cancellationToken.IsCancellationRequested && IsConnectionLost(ex))
            {
                // An idle pooled connection the server has closed meanwhile; a new one is opened.
            }
        }
    }

    /// <inheritdoc />
    /// <remarks>Waits for room in the writer's queue first (only then does <paramref name="cancellationToken"/> count).</remarks>
    public ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Enqueue(new PendingWrite(name, state, IsDelete: false), cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask DeleteAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Enqueue(new PendingWrite(name, default, IsDelete: true), cancellationToken);
    }

    private ValueTask Enqueue(PendingWrite write, CancellationToken cancellationToken)
    {
        // WriteAsync takes its place in the queue before it returns, even when it has to wait for room: call order holds.
        var queued = _writes.Writer.WriteAsync(write, cancellationToken);
        return queued.IsCompletedSuccessfully ? new ValueTask(write.Done.Task) : EnqueueSlowAsync(queued, write);
    }

    private static async ValueTask EnqueueSlowAsync(ValueTask queued, PendingWrite write)
    {
        try
        {
            await queued.ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            throw Closed();
        }
        await write.Done.Task.ConfigureAwait(false);
    }

    private static ObjectDisposedException Closed() => new(nameof(PostgresRecordStorage), "The PostgreSQL storage is closed.");

    private Task EnsureCreatedAsync(CancellationToken cancellationToken)
    {
        var created = Volatile.Read(ref _created);
        if (created is { IsCompletedSuccessfully: true })
        {
            return Task.CompletedTask;
        }
        lock (_createLock)
        {
            // A failed attempt (the database was down) is made again by the next caller.
            if (_created is null || _created.IsFaulted || _created.IsCanceled)
            {
                _created = CreateTableAsync();
            }
            return _created.WaitAsync(cancellationToken);
        }
    }

    private async Task CreateTableAsync()
    {
        await using var connection = await _dataSource.OpenConnectionAsync().ConfigureAwait(false);
        bool schemaExists, tableExists;
        await using (var check = new NpgsqlCommand("SELECT current_setting('server_encoding'), to_regnamespace($1) IS NOT NULL, to_regclass($2) IS NOT NULL", connection))
        {
            check.Parameters.Add(new NpgsqlParameter<string> { TypedValue = _schema });
            check.Parameters.Add(new NpgsqlParameter<string> { TypedValue = _qualifiedTable });
            await using var reader = await check.ExecuteReaderAsync().ConfigureAwait(false);
            await reader.ReadAsync().ConfigureAwait(false);
            var encoding = reader.GetString(0);
            if (encoding != "UTF8")
            {
                throw new InvalidOperationException(
                    $"The database's encoding is {encoding}; StateMesh keeps records as UTF-8 JSON and needs a UTF8 database (CREATE DATABASE … ENCODING 'UTF8').");
            }
            schemaExists = reader.GetBoolean(1);
            tableExists = reader.GetBoolean(2);
        }
        if (tableExists)
        {
            // Nothing to create, so a role with no DDL rights works.
            return;
        }
        await using var transaction = await connection.BeginTransactionAsync().ConfigureAwait(false);
        // Nodes starting together would race in CREATE … IF NOT EXISTS (a unique violation in pg_type); one at a time.
        await using (var create = new NpgsqlBatch(connection, transaction))
        {
            create.BatchCommands.Add(new NpgsqlBatchCommand("SELECT pg_advisory_xact_lock(hashtext('statemesh:' || $1))")
            {
                Parameters = { new NpgsqlParameter<string> { TypedValue = _qualifiedTable } },
            });
            if (!schemaExists)
            {
                create.BatchCommands.Add(new NpgsqlBatchCommand($"CREATE SCHEMA IF NOT EXISTS \"{_schema}\""));
            }
            create.BatchCommands.Add(new NpgsqlBatchCommand($"""
                CREATE TABLE IF NOT EXISTS {_qualifiedTable} (
                    name text COLLATE "C" PRIMARY KEY,
                    version integer NOT NULL,
                    data jsonb,
                    raw bytea,
                    CHECK (data IS NOT NULL OR raw IS NOT NULL))
                """));
            create.BatchCommands.Add(new NpgsqlBatchCommand(
                $"COMMENT ON TABLE {_qualifiedTable} IS 'StateMesh records: the durable copy of each record''s version and data'"));
            create.BatchCommands.Add(new NpgsqlBatchCommand(
                $"COMMENT ON COLUMN {_qualifiedTable}.data IS 'the record as jsonb, for queries; NULL when jsonb cannot hold it'"));
            create.BatchCommands.Add(new NpgsqlBatchCommand(
                $"COMMENT ON COLUMN {_qualifiedTable}.raw IS 'the record''s JSON exactly as written (UTF-8), which StateMesh reads back; set it to NULL when changing data from outside'"));
            // One round trip for all of it.
            await create.ExecuteNonQueryAsync().ConfigureAwait(false);
        }
        await transaction.CommitAsync().ConfigureAwait(false);
        PostgresLog.TableCreated(_logger, _qualifiedTable);
    }

    private async Task WriteLoopAsync()
    {
        var batch = new List<PendingWrite>(_maxBatch);
        var reader = _writes.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            long bytes = 0;
            while (batch.Count < _maxBatch && bytes < _maxBatchBytes && reader.TryRead(out var write))
            {
                batch.Add(write);
                bytes += write.State.Data.Length + write.Name.Length;
            }
            try
            {
                await CommitAsync(batch).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                // CommitAsync settles every write itself; this is a last guard so the loop never dies.
                foreach (var write in batch)
                {
                    write.Done.TrySetException(ex);
                }
            }
        }
        await DropWriterAsync().ConfigureAwait(false);
    }

    private async Task CommitAsync(List<PendingWrite> batch)
    {
        for (var attempt = 0; ; attempt++)
        {
            NpgsqlConnection connection;
            NpgsqlCommand write;
            try
            {
                (connection, write) = await WriterAsync().ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                PostgresLog.BatchFailed(_logger, batch.Count, ex);
                Fail(batch, ex);
                return;
            }

            NpgsqlTransaction transaction;
            try
            {
                transaction = await connection.BeginTransactionAsync().ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                await DropWriterAsync().ConfigureAwait(false);
                PostgresLog.BatchFailed(_logger, batch.Count, ex);
                Fail(batch, ex);
                return;
            }
            await using (transaction.ConfigureAwait(false))
            {
                try
                {
                    Bind(write, Coalesce(batch));
                    await write.ExecuteNonQueryAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (IsBroken(connection) || IsRetryable(ex))
                {
                    // COMMIT was never sent, so nothing of this batch is committed: safe to try again.
                    await DropWriterAsync().ConfigureAwait(false);
                    if (attempt == 0)
                    {
                        PostgresLog.WriterConnectionLost(_logger, batch.Count, ex);
                        continue;
                    }
                    PostgresLog.BatchFailed(_logger, batch.Count, ex);
                    Fail(batch, ex);
                    return;
                }
                catch (Exception ex) when (IsRefusal(ex))
                {
                    await transaction.RollbackAsync().ConfigureAwait(false);
                    PostgresLog.BatchRefused(_logger, batch.Count, (ex as PostgresException)?.SqlState ?? ex.GetType().Name, ex);
                    await CommitOneByOneAsync(batch).ConfigureAwait(false);
                    return;
                }
                catch (Exception ex)
                {
                    await DropWriterAsync().ConfigureAwait(false);
                    PostgresLog.BatchFailed(_logger, batch.Count, ex);
                    Fail(batch, ex);
                    return;
                }

                try
                {
                    await transaction.CommitAsync().ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    // The commit may or may not have happened; the writes fail and their callers know as much as we do.
                    await DropWriterAsync().ConfigureAwait(false);
                    PostgresLog.BatchFailed(_logger, batch.Count, ex);
                    Fail(batch, ex);
                    return;
                }
            }
            Interlocked.Increment(ref _commits);
            foreach (var pending in batch)
            {
                pending.Done.TrySetResult();
            }
            return;
        }
    }

    /// <summary>PostgreSQL refused the batch: each write on its own, in order, so that only the refused ones fail.</summary>
    private async Task CommitOneByOneAsync(List<PendingWrite> batch)
    {
        var one = new List<PendingWrite>(1);
        for (var i = 0; i < batch.Count; i++)
        {
            var pending = batch[i];
            NpgsqlCommand write;
            try
            {
                (_, write) = await WriterAsync().ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Fail(batch.Skip(i), ex);
                return;
            }
            one.Clear();
            one.Add(pending);
            var writes = Coalesce(one);
            try
            {
                try
                {
                    Bind(write, writes);
                    await write.ExecuteNonQueryAsync().ConfigureAwait(false);
                }
                catch (PostgresException ex) when (!pending.IsDelete && writes.Queryable[0] && ex.SqlState[..2] is "22" or "54")
                {
                    // jsonb cannot hold this JSON (or it is not JSON): keep the bytes, without the queryable copy.
                    PostgresLog.StoredWithoutJsonb(_logger, pending.Name, ex.MessageText);
                    writes.Queryable[0] = false;
                    Bind(write, writes);
                    await write.ExecuteNonQueryAsync().ConfigureAwait(false);
                }
                Interlocked.Increment(ref _commits);
                pending.Done.TrySetResult();
            }
            catch (Exception ex)
            {
                if (_writer is { } writer && IsBroken(writer))
                {
                    await DropWriterAsync().ConfigureAwait(false);
                }
                pending.Done.TrySetException(ex);
            }
        }
    }

    private async ValueTask<(NpgsqlConnection, NpgsqlCommand)> WriterAsync()
    {
        if (_writer is { State: ConnectionState.Open } open && _write is { } prepared)
        {
            return (open, prepared);
        }
        await DropWriterAsync().ConfigureAwait(false);
        await EnsureCreatedAsync(CancellationToken.None).ConfigureAwait(false);
        var connection = await _dataSource.OpenConnectionAsync().ConfigureAwait(false);
        try
        {
            await using (var session = new NpgsqlCommand("SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'", connection))
            {
                await session.ExecuteNonQueryAsync().ConfigureAwait(false);
            }
            var write = new NpgsqlCommand(_writeSql, connection)
            {
                Parameters =
                {
                    new NpgsqlParameter<string[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, TypedValue = [] },
                    new NpgsqlParameter<int[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Integer, TypedValue = [] },
                    new NpgsqlParameter<byte[][]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea, TypedValue = [] },
                    new NpgsqlParameter<bool[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Boolean, TypedValue = [] },
                    new NpgsqlParameter<string[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, TypedValue = [] },
                },
            };
            await write.PrepareAsync().ConfigureAwait(false);
            _writer = connection;
            _write = write;
            return (connection, write);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async ValueTask DropWriterAsync()
    {
        if (_write is { } write)
        {
            _write = null;
            await write.DisposeAsync().ConfigureAwait(false);
        }
        if (_writer is { } writer)
        {
            _writer = null;
            try
            {
                await writer.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception)
            {
                // A broken connection may fail to close; it is gone either way.
            }
            // Idle pooled connections to the same server are likely gone as well.
            _dataSource.Clear();
        }
    }

    /// <summary>The batch's final state per record, as the arrays the statement takes.</summary>
    private static Writes Coalesce(List<PendingWrite> batch)
    {
        var last = new Dictionary<string, int>(batch.Count, StringComparer.Ordinal);
        for (var i = 0; i < batch.Count; i++)
        {
            last[batch[i].Name] = i;
        }
        var upserts = 0;
        foreach (var (_, i) in last)
        {
            if (!batch[i].IsDelete)
            {
                upserts++;
            }
        }
        var writes = new Writes(new string[upserts], new int[upserts], new byte[upserts][], new bool[upserts], new string[last.Count - upserts]);
        int u = 0, d = 0;
        foreach (var (name, i) in last)
        {
            var pending = batch[i];
            if (pending.IsDelete)
            {
                writes.Deletes[d++] = name;
                continue;
            }
            writes.Names[u] = name;
            writes.Versions[u] = pending.State.Version;
            writes.Raw[u] = ArrayOf(pending.State.Data);
            // jsonb refuses \u0000 (it cannot be text); such records skip the jsonb copy instead of failing the batch.
            writes.Queryable[u] = pending.State.Data.Span.IndexOf("\\u0000"u8) < 0;
            u++;
        }
        return writes;
    }

    private static byte[] ArrayOf(ReadOnlyMemory<byte> data) =>
        MemoryMarshal.TryGetArray(data, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
            ? segment.Array
            : data.ToArray();

    private static void Bind(NpgsqlCommand command, Writes writes)
    {
        ((NpgsqlParameter<string[]>)command.Parameters[0]).TypedValue = writes.Names;
        ((NpgsqlParameter<int[]>)command.Parameters[1]).TypedValue = writes.Versions;
        ((NpgsqlParameter<byte[][]>)command.Parameters[2]).TypedValue = writes.Raw;
        ((NpgsqlParameter<bool[]>)command.Parameters[3]).TypedValue = writes.Queryable;
        ((NpgsqlParameter<string[]>)command.Parameters[4]).TypedValue = writes.Deletes;
    }

    private static void Fail(IEnumerable<PendingWrite> writes, Exception ex)
    {
        foreach (var write in writes)
        {
            write.Done.TrySetException(ex);
        }
    }

    private static bool IsBroken(NpgsqlConnection connection) => connection.FullState.HasFlag(ConnectionState.Broken) || connection.State != ConnectionState.Open;

    /// <summary>The server rolled the transaction back for reasons of its own (a deadlock, a serialization failure).</summary>
    private static bool IsRetryable(Exception ex) => ex is PostgresException { SqlState: PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure };

    /// <summary>PostgreSQL (or Npgsql, binding a value) refused the batch's data; the connection is fine.</summary>
    private static bool IsRefusal(Exception ex) => ex switch
    {
        PostgresException pg => pg.SqlState[..2] is "22" or "23" or "42" or "54",
        NpgsqlException => false,
        _ => ex is ArgumentException or InvalidCastException or System.Text.EncoderFallbackException,
    };

    private static bool IsConnectionLost(Exception ex) => ex switch
    {
        PostgresException pg => pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.SqlState is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown,
        NpgsqlException npgsql => npgsql.InnerException is IOException or SocketException or EndOfStreamException,
        _ => false,
    };

    /// <summary>Commits what is queued, then closes the connections. Writes after this fail with <see cref="ObjectDisposedException"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            await _loop.ConfigureAwait(false);
            return;
        }
        _writes.Writer.TryComplete();
        await _loop.ConfigureAwait(false);
        await _dataSource.DisposeAsync().ConfigureAwait(false);
    }

    private sealed record PendingWrite(string Name, RecordState State, bool IsDelete)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private readonly record struct Writes(string[] Names, int[] Versions, byte[][] Raw, bool[] Queryable, string[] Deletes);
}
