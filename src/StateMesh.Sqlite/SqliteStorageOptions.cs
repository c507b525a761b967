namespace StateMesh.Sqlite;

/// <summary>Where and how SQLite keeps records.</summary>
public sealed class SqliteStorageOptions
{
    /// <summary>The database file. Relative paths are under <see cref="StateMeshOptions.DataDirectory"/> when registered through the builder.</summary>
    public string Path { get; set; } = "statemesh.db";

    /// <summary>
    /// True (the default): every commit is fsynced (SQLite synchronous=FULL), so acknowledged writes survive a power cut.
    /// False: synchronous=NORMAL, which survives a crash of the process but not of the machine.
    /// </summary>
    public bool SyncEveryCommit { get; set; } = true;

    /// <summary>Most writes committed together in one transaction (one fsync).</summary>
    public int MaxBatchSize { get; set; } = 1024;
}
