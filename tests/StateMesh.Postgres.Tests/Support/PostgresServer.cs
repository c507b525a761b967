using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace StateMesh.Postgres.Tests.Support;

/// <summary>
/// A real PostgreSQL server of the tests' own: initdb into a temporary folder, pg_ctl start on a free loopback port
/// (its unix socket in that folder, so it meets no other server), a database <c>statemesh</c>; stopped and deleted on
/// dispose. As root it runs as the <c>postgres</c> OS user (PostgreSQL refuses to run as root).
/// </summary>
/// <remarks>
/// Self-contained (xunit and Npgsql only), so that other test projects can link this file. The server binaries are
/// looked for in <c>$STATEMESH_POSTGRES_BIN</c>, then <c>/usr/lib/postgresql/15/bin</c> and other versions there, then
/// PATH. Without them every test that asks for <see cref="ConnectionString"/> fails with the reason and the fix
/// (xunit 2 has no skip decided at run time).
/// </remarks>
public sealed class PostgresServer : IAsyncLifetime
{
    /// <summary>The database the tests use.</summary>
    public const string Database = "statemesh";

    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(2);
    private DirectoryInfo? _root;
    private string? _bin;
    private string? _unavailable;
    private bool _running;

    /// <summary>The port the server listens on, on 127.0.0.1 only.</summary>
    public int Port { get; private set; }

    /// <summary>Why there is no server (null when there is one).</summary>
    public string? UnavailableReason => _unavailable;

    /// <summary>The <see cref="Database"/> database, as the superuser <c>postgres</c> (trust authentication on loopback).</summary>
    public string ConnectionString => ConnectionStringFor(Database);

    /// <summary>A connection string for another database of this server.</summary>
    public string ConnectionStringFor(string database)
    {
        if (_unavailable is not null)
        {
            throw new InvalidOperationException(_unavailable);
        }
        return new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = Port,
            Username = "postgres",
            Database = database,
            // A test that stops the server must not leave a pool of dead connections to the next test.
            Pooling = true,
            Timeout = 10,
        }.ConnectionString;
    }

    /// <summary>Creates a database (UTF8 unless told otherwise) and returns a connection string for it.</summary>
    public async Task<string> CreateDatabaseAsync(string name, string encoding = "UTF8")
    {
        await using var connection = new NpgsqlConnection(ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        // Identifiers and encodings here come from the tests themselves.
        await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C'", connection);
        await create.ExecuteNonQueryAsync();
        return ConnectionStringFor(name);
    }

    /// <summary>Stops the server (fast shutdown: sessions are ended), keeping its data, as an outage would.</summary>
    public async Task StopAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await PgCtlAsync("stop", "-m", "fast");
        _running = false;
    }

    /// <summary>Starts the server again on the same port with the same data.</summary>
    public async Task StartAsync()
    {
        var log = Path.Combine(_root!.FullName, "postgres.log");
        try
        {
            await PgCtlAsync("start", "-l", log, "-t", "60", "-o", ServerOptions());
        }
        catch (InvalidOperationException ex) when (File.Exists(log))
        {
            var lines = await File.ReadAllLinesAsync(log);
            throw new InvalidOperationException($"{ex.Message}\nThe server's log ends with:\n{string.Join('\n', lines.TakeLast(20))}", ex);
        }
        _running = true;
    }

    /// <summary>Creates and starts the server and the test database.</summary>
    public async Task InitializeAsync()
    {
        _bin = FindBinaries();
        if (_bin is null)
        {
            _unavailable = "PostgreSQL's server binaries (initdb, pg_ctl) were not found in $STATEMESH_POSTGRES_BIN, /usr/lib/postgresql/*/bin or on PATH. " +
                "Install them (Debian: apt-get install -y postgresql-15, which .ci/run does) or point STATEMESH_POSTGRES_BIN at their folder." +
                (Environment.GetEnvironmentVariable("STATEMESH_REQUIRE_SERVICES") == "1" ? " STATEMESH_REQUIRE_SERVICES=1: these tests need them." : "");
            return;
        }
        _root = Directory.CreateTempSubdirectory("statemesh-pg-");
        if (Environment.IsPrivilegedProcess)
        {
            await RunAsync("chown", ["postgres:postgres", _root.FullName], asPostgres: false);
        }
        await RunAsync(Path.Combine(_bin, "initdb"),
            ["-D", DataDirectory, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"], asPostgres: true);
        // A free port can be taken by someone else between asking and binding; then another.
        for (var attempt = 1; ; attempt++)
        {
            Port = FreePort();
            try
            {
                await StartAsync();
                break;
            }
            catch (InvalidOperationException) when (attempt < 5)
            {
            }
        }
        await using (var connection = new NpgsqlConnection(ConnectionStringFor("postgres")))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {Database} ENCODING 'UTF8'", connection);
            await create.ExecuteNonQueryAsync();
        }
    }

    /// <summary>Stops the server and deletes its folder.</summary>
    public async Task DisposeAsync()
    {
        if (_root is null)
        {
            return;
        }
        try
        {
            if (_running)
            {
                await StopAsync();
            }
        }
        finally
        {
            _root.Delete(recursive: true);
        }
    }

    private string DataDirectory => Path.Combine(_root!.FullName, "data");

    private string ServerOptions() =>
        $"-c listen_addresses=127.0.0.1 -c port={Port} -c unix_socket_directories={_root!.FullName} -c shared_buffers=32MB -c max_connections=100";

    private Task PgCtlAsync(params string[] args) =>
        RunAsync(Path.Combine(_bin!, "pg_ctl"), ["-D", DataDirectory, "-w", .. args], asPostgres: true);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string? FindBinaries()
    {
        static bool Has(string? dir) => dir is not null && File.Exists(Path.Combine(dir, "initdb")) && File.Exists(Path.Combine(dir, "pg_ctl"));
        var configured = Environment.GetEnvironmentVariable("STATEMESH_POSTGRES_BIN");
        if (Has(configured))
        {
            return configured;
        }
        if (Has("/usr/lib/postgresql/15/bin"))
        {
            return "/usr/lib/postgresql/15/bin";
        }
        if (Directory.Exists("/usr/lib/postgresql"))
        {
            var newest = Directory.GetDirectories("/usr/lib/postgresql")
                .Select(d => Path.Combine(d, "bin"))
                .Where(Has)
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0)
                .FirstOrDefault();
            if (newest is not null)
            {
                return newest;
            }
        }
        return (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault(Has);
    }

    /// <summary>Runs a command to its end (as the postgres OS user when this process is root); fails with its output.</summary>
    private static async Task RunAsync(string file, string[] args, bool asPostgres)
    {
        var asOther = asPostgres && Environment.IsPrivilegedProcess;
        var start = new ProcessStartInfo(asOther ? "runuser" : file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            // The server's working directory must be readable by the postgres user.
            WorkingDirectory = "/",
        };
        if (asOther)
        {
            foreach (var a in new[] { "-u", "postgres", "--", file })
            {
                start.ArgumentList.Add(a);
            }
        }
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(CommandTimeout);
        var output = await stdout + await stderr;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', args)} exited with {process.ExitCode}: {output}");
        }
    }
}

/// <summary>The tests that share one <see cref="PostgresServer"/>; they run one after another.</summary>
[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresServer>
{
    /// <summary>The collection's name, for <c>[Collection(PostgresCollection.Name)]</c>.</summary>
    public const string Name = "PostgreSQL";
}
