using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace StateMesh.Redis.Tests.Support;

/// <summary>
/// A real Redis server of the tests' own: <c>redis-server</c> on a free port of 127.0.0.1, its working directory in a
/// fresh temporary folder, no persistence unless <see cref="AppendOnly"/>; stopped and deleted on dispose.
/// </summary>
/// <remarks>
/// Self-contained (xunit, the BCL and StackExchange.Redis only), so that other test projects can link this file. The
/// server is looked for at <c>$STATEMESH_REDIS_BIN</c> (the program or its folder), then <c>/usr/bin/redis-server</c>,
/// then PATH. Without it every test that asks for <see cref="Configuration"/> fails with the reason and the fix
/// (xunit 2 has no skip decided at run time). As a fixture it is created by xunit; a test that wants one of its own
/// (say with <see cref="AppendOnly"/>) writes <c>await using var server = new RedisServer { AppendOnly = true };</c>
/// and calls <see cref="InitializeAsync"/>.
/// </remarks>
public sealed class RedisServer : IAsyncLifetime, IAsyncDisposable
{
    private readonly Func<string?> _findServer;
    private DirectoryInfo? _root;
    private RedisProcess? _process;
    private string? _unavailable;

    /// <summary>Creates the fixture; <see cref="InitializeAsync"/> starts the server.</summary>
    public RedisServer()
        : this(() => RedisProcess.FindServer())
    {
    }

    /// <summary>With another way to find <c>redis-server</c> (null: there is none), for the fixture's own tests.</summary>
    internal RedisServer(Func<string?> findServer) => _findServer = findServer;

    /// <summary>Whether the server keeps an append-only file (<c>--appendonly yes</c>), so that a restart with
    /// <c>keepData</c> finds what was written; off by default.</summary>
    public bool AppendOnly { get; init; }

    /// <summary>The port the server listens on, on 127.0.0.1 only; the same after <see cref="StartAgainAsync"/>.</summary>
    public int Port { get; private set; }

    /// <summary>Why there is no server (null when there is one).</summary>
    public string? UnavailableReason => _unavailable;

    /// <summary>A StackExchange.Redis configuration string for the server: <c>127.0.0.1:port</c>.</summary>
    public string Configuration
    {
        get
        {
            ThrowIfUnavailable();
            return $"127.0.0.1:{Port}";
        }
    }

    /// <summary>Whether the server process is running.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Starts the server on a free port and waits until it answers PING.</summary>
    public async Task InitializeAsync()
    {
        var server = _findServer();
        if (server is null)
        {
            _unavailable = RedisProcess.UnavailableMessage("redis-server", RedisProcess.ServicesRequired);
            return;
        }
        _root = Directory.CreateTempSubdirectory("statemesh-redis-");
        try
        {
            _process = await RedisProcess.StartOnFreePortAsync(server, _root.FullName, AppendOnly, [], RedisProcess.FreePort);
            Port = _process.Port;
        }
        catch
        {
            _root.Delete(recursive: true);
            _root = null;
            throw;
        }
    }

    /// <summary>Stops the server (<c>SHUTDOWN NOSAVE</c>; killed if it does not end in time), as an outage would.</summary>
    public async Task StopAsync()
    {
        ThrowIfUnavailable();
        if (_process is not null)
        {
            await _process.StopAsync();
        }
    }

    /// <summary>Kills the server with SIGKILL (<c>kill -9</c>): no shutdown, no last write.</summary>
    public async Task KillAsync()
    {
        ThrowIfUnavailable();
        if (_process is not null)
        {
            await _process.KillAsync();
        }
    }

    /// <summary>
    /// Starts the server again on the same port (stopping it first if it runs) and waits until it answers PING. It
    /// starts empty, as a Redis that restarted and lost its data; with <paramref name="keepData"/> (and
    /// <see cref="AppendOnly"/>) it loads what it had written instead.
    /// </summary>
    public async Task StartAgainAsync(bool keepData = false)
    {
        ThrowIfUnavailable();
        var process = _process ?? throw new InvalidOperationException("The server was never started.");
        if (!process.HasExited)
        {
            await process.StopAsync();
        }
        if (!keepData)
        {
            process.DeleteData();
        }
        _process = await RedisProcess.StartAsync(process.Server, process.Root, Port, AppendOnly, process.ExtraArguments);
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
            if (_process is not null)
            {
                await _process.StopAsync();
            }
        }
        finally
        {
            _root.Delete(recursive: true);
            _root = null;
        }
    }

    /// <inheritdoc />
    async ValueTask IAsyncDisposable.DisposeAsync() => await DisposeAsync();

    private void ThrowIfUnavailable()
    {
        if (_unavailable is not null)
        {
            throw new InvalidOperationException(_unavailable);
        }
    }
}

/// <summary>The tests that share one <see cref="RedisServer"/>; they run one after another.</summary>
[CollectionDefinition(Name)]
public sealed class RedisCollection : ICollectionFixture<RedisServer>
{
    /// <summary>The collection's name, for <c>[Collection(RedisCollection.Name)]</c>.</summary>
    public const string Name = "Redis";
}

/// <summary>
/// One <c>redis-server</c> process: its folder (the data in <c>data</c>, the log beside it), its port, how it is
/// started, stopped and killed. Shared by <see cref="RedisServer"/> and the cluster fixture.
/// </summary>
internal sealed class RedisProcess
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    // A test run that ends without disposing its fixtures must still leave no server behind.
    private static readonly ConcurrentDictionary<RedisProcess, byte> Live = new();

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    private volatile bool _ended;

    static RedisProcess() => AppDomain.CurrentDomain.ProcessExit += (_, _) =>
    {
        foreach (var process in Live.Keys)
        {
            process.KillNow();
        }
    };

    private RedisProcess(Process process, string server, string root, int port, string[] extraArguments)
    {
        _process = process;
        Server = server;
        Root = root;
        Port = port;
        ExtraArguments = extraArguments;
    }

    /// <summary>The <c>redis-server</c> program.</summary>
    public string Server { get; }

    /// <summary>The server's folder: its working directory <c>data</c> and its log <c>redis.log</c>.</summary>
    public string Root { get; }

    /// <summary>The port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>Arguments after the fixture's own (the cluster's settings).</summary>
    public string[] ExtraArguments { get; }

    /// <summary>Whether the process has ended.</summary>
    public bool HasExited => _ended || _process.HasExited;

    /// <summary>Whether <c>STATEMESH_REQUIRE_SERVICES=1</c> (CI: a missing server is an error to fix, not to shrug at).</summary>
    public static bool ServicesRequired => Environment.GetEnvironmentVariable("STATEMESH_REQUIRE_SERVICES") == "1";

    /// <summary>Why the tests have no Redis, and the fix.</summary>
    public static string UnavailableMessage(string program, bool servicesRequired) =>
        $"Redis's {program} was not found at $STATEMESH_REDIS_BIN, /usr/bin or on PATH. " +
        "Install it (Debian: apt-get install -y redis-server, which .ci/run does; it brings redis-server and redis-cli) " +
        "or point STATEMESH_REDIS_BIN at redis-server or its folder." +
        (servicesRequired ? " STATEMESH_REQUIRE_SERVICES=1: these tests need it." : "");

    /// <summary>The <c>redis-server</c> program: <c>$STATEMESH_REDIS_BIN</c>, <c>/usr/bin/redis-server</c>, PATH.</summary>
    public static string? FindServer() => FindProgram("redis-server", null);

    /// <summary>A Redis program (<c>redis-cli</c>) beside <paramref name="server"/>, else as <see cref="FindServer"/> looks.</summary>
    public static string? FindProgram(string name, string? server)
    {
        var configured = Environment.GetEnvironmentVariable("STATEMESH_REDIS_BIN");
        var candidates = new List<string?>();
        if (server is not null)
        {
            candidates.Add(Path.Combine(Path.GetDirectoryName(server)!, name));
        }
        if (!string.IsNullOrEmpty(configured))
        {
            candidates.Add(Directory.Exists(configured) ? Path.Combine(configured, name)
                : name == "redis-server" ? configured : Path.Combine(Path.GetDirectoryName(configured) ?? "", name));
        }
        candidates.Add(Path.Combine("/usr/bin", name));
        candidates.AddRange((Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name)));
        return candidates.FirstOrDefault(File.Exists);
    }

    /// <summary>A port of 127.0.0.1 that was free when asked.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts a server on a port from <paramref name="choosePort"/>, another one if that fails (a free port can
    /// be taken by someone else between asking and binding).</summary>
    public static async Task<RedisProcess> StartOnFreePortAsync(
        string server, string root, bool appendOnly, string[] extraArguments, Func<int> choosePort)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await StartAsync(server, root, choosePort(), appendOnly, extraArguments);
            }
            catch (InvalidOperationException) when (attempt < 5)
            {
            }
        }
    }

    /// <summary>Starts a server on <paramref name="port"/> and waits until it answers PING.</summary>
    public static async Task<RedisProcess> StartAsync(string server, string root, int port, bool appendOnly, string[] extraArguments)
    {
        var data = Path.Combine(root, "data");
        Directory.CreateDirectory(data);
        var start = new ProcessStartInfo(server)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = data,
        };
        string[] arguments =
        [
            "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1",
            "--dir", data,
            "--logfile", Path.Combine(root, "redis.log"),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", appendOnly ? "yes" : "no",
            .. extraArguments,
        ];
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        var process = new Process { StartInfo = start };
        var redis = new RedisProcess(process, server, root, port, extraArguments);
        process.OutputDataReceived += (_, e) => redis.Collect(e.Data);
        process.ErrorDataReceived += (_, e) => redis.Collect(e.Data);
        if (!process.Start())
        {
            throw new InvalidOperationException($"{server} did not start");
        }
        Live.TryAdd(redis, 0);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await redis.WaitUntilReadyAsync();
        }
        catch
        {
            await redis.KillAsync();
            throw;
        }
        return redis;
    }

    /// <summary><c>SHUTDOWN NOSAVE</c>, then waits for the process to end; kills it if it does not.</summary>
    public async Task StopAsync()
    {
        if (HasExited)
        {
            Forget();
            return;
        }
        try
        {
            // The server closes the connection instead of answering.
            await SendAsync(Port, TimeSpan.FromSeconds(5), "SHUTDOWN", "NOSAVE");
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException)
        {
        }
        try
        {
            await _process.WaitForExitAsync().WaitAsync(StopTimeout);
        }
        catch (TimeoutException)
        {
            await KillAsync();
            return;
        }
        Forget();
    }

    /// <summary>SIGKILL, then waits for the process to end.</summary>
    public async Task KillAsync()
    {
        if (!_ended)
        {
            KillNow();
            await _process.WaitForExitAsync().WaitAsync(StopTimeout);
        }
        Forget();
    }

    /// <summary>Deletes what the server persisted (only when it is not running).</summary>
    public void DeleteData()
    {
        var data = Path.Combine(Root, "data");
        foreach (var entry in new DirectoryInfo(data).EnumerateFileSystemInfos())
        {
            // The cluster's node file (who the node is, which slots it has) is not data.
            if (entry.Name == "nodes.conf")
            {
                continue;
            }
            if (entry is DirectoryInfo dir)
            {
                dir.Delete(recursive: true);
            }
            else
            {
                entry.Delete();
            }
        }
    }

    /// <summary>Sends one command over a fresh connection and returns the reply as text (<c>+PONG</c>, <c>-ERR ...</c>,
    /// <c>:1</c>, a bulk string's content, or empty when the server closed the connection).</summary>
    public static async Task<string> SendAsync(int port, TimeSpan timeout, params string[] command)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, cts.Token);
        var stream = client.GetStream();
        var request = new StringBuilder().Append('*').Append(command.Length).Append("\r\n");
        foreach (var part in command)
        {
            request.Append('$').Append(Encoding.UTF8.GetByteCount(part)).Append("\r\n").Append(part).Append("\r\n");
        }
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()), cts.Token);
        var received = new List<byte>();
        var buffer = new byte[4096];
        while (true)
        {
            if (TryParseReply(received, out var reply))
            {
                return reply;
            }
            var read = await stream.ReadAsync(buffer, cts.Token);
            if (read == 0)
            {
                return received.Count == 0 ? ""
                    : throw new IOException($"The server closed the connection mid-reply: {Encoding.UTF8.GetString([.. received])}");
            }
            received.AddRange(buffer.AsSpan(0, read));
        }
    }

    /// <summary>The server's last lines of output and log, for an error message.</summary>
    public string Diagnostics()
    {
        var log = Path.Combine(Root, "redis.log");
        var lines = _output.ToList();
        if (File.Exists(log))
        {
            lines.AddRange(File.ReadLines(log).TakeLast(20));
        }
        return string.Join('\n', lines.TakeLast(30));
    }

    private static bool TryParseReply(List<byte> received, out string reply)
    {
        reply = "";
        var text = Encoding.UTF8.GetString([.. received]);
        var end = text.IndexOf("\r\n", StringComparison.Ordinal);
        if (end < 0)
        {
            return false;
        }
        var line = text[..end];
        if (line.Length == 0 || line[0] != '$')
        {
            reply = line;
            return true;
        }
        var length = int.Parse(line.AsSpan(1), System.Globalization.CultureInfo.InvariantCulture);
        if (length < 0)
        {
            return true;
        }
        // Lengths count bytes; the replies here are ASCII.
        if (text.Length < end + 2 + length + 2)
        {
            return false;
        }
        reply = text.Substring(end + 2, length);
        return true;
    }

    private async Task WaitUntilReadyAsync()
    {
        var deadline = Stopwatch.StartNew();
        var exited = _process.WaitForExitAsync();
        string last = "no answer";
        while (deadline.Elapsed < ReadyTimeout)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException(
                    $"redis-server on port {Port} exited with {_process.ExitCode} before answering PING. Its output and log end with:\n{Diagnostics()}");
            }
            try
            {
                last = await SendAsync(Port, TimeSpan.FromSeconds(2), "PING");
                if (last == "+PONG")
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException)
            {
                last = ex.Message;
            }
            // Polling an outside process: retry soon, at once if it exits.
            await Task.WhenAny(exited, Task.Delay(25));
        }
        throw new InvalidOperationException(
            $"redis-server on port {Port} did not answer PING within {ReadyTimeout.TotalSeconds}s (last: {last}). Its output and log end with:\n{Diagnostics()}");
    }

    private void Collect(string? line)
    {
        if (line is null)
        {
            return;
        }
        _output.Enqueue(line);
        while (_output.Count > 50 && _output.TryDequeue(out _))
        {
        }
    }

    private void KillNow()
    {
        try
        {
            if (!HasExited)
            {
                _process.Kill();
            }
        }
        catch (InvalidOperationException)
        {
            // It ended meanwhile.
        }
    }

    private void Forget()
    {
        _ended = true;
        Live.TryRemove(this, out _);
        _process.Dispose();
    }
}
