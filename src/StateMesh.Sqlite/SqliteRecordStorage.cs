using System.Threading.Channels;
using Microsoft.Data.Sqlite;
using StateMesh.Storage;

namespace StateMesh.Sqlite;

/// <summary>
/// Records in a SQLite file (WAL). One writer loop commits whatever writes are waiting in one transaction, so that
/// concurrent writers share one fsync (group commit); each write completes when its transaction has committed.
/// Writes apply in call order. Reads use their own pooled connections and never wait for the writer.
/// </summary>
public sealed class SqliteRecordStorage : IRecordStorage, IAsyncDisposable
{
    private readonly string _readConnectionString;
    private readonly SqliteConnection _writer;
    private readonly SqliteCommand _upsert;
    private readonly SqliteCommand _delete;
    private readonly Channel<PendingWrite> _writes = Channel.CreateUnbounded<PendingWrite>(new UnboundedChannelOptions { SingleReader = true });
    private readonly int _maxBatch;
    private readonly Task _loop;
    private long _commits;

    /// <summary>Opens (and if needed creates) the database.</summary>
    public SqliteRecordStorage(SqliteStorageOptions options)
    {
        var path = System.IO.Path.GetFullPath(options.Path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        _maxBatch = Math.Max(1, options.MaxBatchSize);
        var writeConnectionString = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false }.ToString();
        _readConnectionString = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = true }.ToString();
        _writer = new SqliteConnection(writeConnectionString);
        _writer.Open();
        Execute("PRAGMA journal_mode=WAL;");
        Execute(options.SyncEveryCommit ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;");
        Execute("PRAGMA busy_timeout=5000;");
        Execute("CREATE TABLE IF NOT EXISTS records (name TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;");
        _upsert = _writer.CreateCommand();
        _upsert.CommandText = "INSERT INTO records (name, version, data) VALUES ($name, $version, $data) ON CONFLICT(name) DO UPDATE SET version = excluded.version, data = excluded.data;";
        _upsert.Parameters.Add("$name", SqliteType.Text);
        _upsert.Parameters.Add("$version", SqliteType.Integer);
        _upsert.Parameters.Add("$data", SqliteType.Blob);
        _upsert.Prepare();
        _delete = _writer.CreateCommand();
        _delete.CommandText = "DELETE FROM records WHERE name = $name;";
        _delete.Parameters.Add("$name", SqliteType.Text);
        _delete.Prepare();
        _loop = Task.Run(WriteLoopAsync);
    }

    /// <summary>Transactions committed so far (each may carry many writes).</summary>
    public long Commits => Interlocked.Read(ref _commits);

    private void Execute(string sql)
    {
        using var command = _writer.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <inheritdoc />
    /// <remarks>
    /// Microsoft.Data.Sqlite reads synchronously, so the read runs on the thread pool: the caller's await (and the node's
    /// STORAGE_RETRIEVAL_TIMEOUT) can end while SQLite is still busy, for example behind another process's lock.
    /// </remarks>
    public ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken) => new(ReadOnPoolAsync(name, cancellationToken));

    // A stuck database must not take every thread of the pool: reads beyond these wait their turn without a thread.
    private readonly SemaphoreSlim _readers = new(4 * Environment.ProcessorCount, 4 * Environment.ProcessorCount);

    private async Task<RecordState?> ReadOnPoolAsync(string name, CancellationToken cancellationToken)
    {
        await _readers.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await Task.Run(() => Read(name), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _readers.Release();
        }
    }

    private RecordState? Read(string name)
    {
        using var connection = new SqliteConnection(_readConnectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT version, data FROM records WHERE name = $name;";
        command.Parameters.AddWithValue("$name", name);
        using var reader = command.ExecuteReader();
        if (!reader.Read())
        {
            return null;
        }
        var version = reader.GetInt32(0);
        // Programs other than StateMesh may have written the JSON as TEXT.
        var data = reader.GetValue(1) switch
        {
            byte[] bytes => bytes,
            string text => System.Text.Encoding.UTF8.GetBytes(text),
            var other => throw new InvalidDataException($"record '{name}' holds {other.GetType().Name}, not JSON"),
        };
        return new RecordState(version, data);
    }

    /// <inheritdoc />
    public ValueTask SetAsync(string name, RecordState state, CancellationToken cancellationToken) => Enqueue(new PendingWrite(name, state, false));

    /// <inheritdoc />
    public ValueTask DeleteAsync(string name, CancellationToken cancellationToken) => Enqueue(new PendingWrite(name, default, true));

    private ValueTask Enqueue(PendingWrite write)
    {
        if (!_writes.Writer.TryWrite(write))
        {
            return ValueTask.FromException(new ObjectDisposedException(nameof(SqliteRecordStorage), "The SQLite storage is closed."));
        }
        return new ValueTask(write.Done.Task);
    }

    private async Task WriteLoopAsync()
    {
        var batch = new List<PendingWrite>(_maxBatch);
        var reader = _writes.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < _maxBatch && reader.TryRead(out var write))
            {
                batch.Add(write);
            }
            try
            {
                using (var transaction = _writer.BeginTransaction())
                {
                    _upsert.Transaction = transaction;
                    _delete.Transaction = transaction;
                    foreach (var write in batch)
                    {
                        if (write.IsDelete)
                        {
                            _delete.Parameters[0].Value = write.Name;
                            _delete.ExecuteNonQuery();
                        }
                        else
                        {
                            _upsert.Parameters[0].Value = write.Name;
                            _upsert.Parameters[1].Value = write.State.Version;
                            _upsert.Parameters[2].Value = write.State.Data.ToArray();
                            _upsert.ExecuteNonQuery();
                        }
                    }
                    transaction.Commit();
                }
                Interlocked.Increment(ref _commits);
                foreach (var write in batch)
                {
                    write.Done.TrySetResult();
                }
            }
            catch (Exception ex)
            {
                foreach (var write in batch)
                {
                    write.Done.TrySetException(ex);
                }
            }
        }
    }

    /// <summary>Commits what is queued, then closes the database.</summary>
    public async ValueTask DisposeAsync()
    {
        _writes.Writer.TryComplete();
        await _loop.ConfigureAwait(false);
        _upsert.Dispose();
        _delete.Dispose();
        await _writer.DisposeAsync().ConfigureAwait(false);
        SqliteConnection.ClearPool(new SqliteConnection(_readConnectionString));
    }

    private sealed record PendingWrite(string Name, RecordState State, bool IsDelete)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
