using System.Diagnostics;

namespace StateMesh.Tests.Support;

/// <summary>The real StateMesh.Server, started as its own process on a free loopback port.</summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _output = [];
    private readonly TaskCompletionSource _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _tcpListening;
    private volatile bool _httpListening;

    private readonly bool _ignoringSigint;
    private readonly string[] _args;

    private ServerProcess(Process process, int port, bool ignoringSigint, string[] args)
    {
        _process = process;
        Port = port;
        _ignoringSigint = ignoringSigint;
        _args = args;
    }

    public int Port { get; }

    /// <summary>The HTTP port: WebSockets (/deepstream, /statemesh) and /health-check.</summary>
    public int HttpPort { get; init; }

    /// <summary>The process id, known still once the process has ended and been disposed.</summary>
    public int Pid { get; private set; }

    /// <summary>Whether the process has ended (stopped, killed, or failed).</summary>
    public bool HasExited => _process.HasExited;

    public string Output
    {
        get { lock (_output) { return string.Join('\n', _output); } }
    }

    public static string ServerDll
    {
        get
        {
            // tests/StateMesh.Tests/bin/<Configuration>/net10.0 → src/StateMesh.Server/bin/<Configuration>/net10.0
            var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/'));
            var configuration = testBin.Parent!.Name;
            var root = testBin.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
            var dll = Path.Combine(root, "src", "StateMesh.Server", "bin", configuration, "net10.0", "StateMesh.Server.dll");
            Assert.True(File.Exists(dll), $"the server was not built: {dll}");
            return dll;
        }
    }

    public static Task<ServerProcess> StartAsync(params string[] args) => StartAsync(ignoringSigint: false, args);

    /// <summary>
    /// Starts the server as a script's background job would: with SIGINT ignored, inherited (bash sets it so, then
    /// execs the server in the same process, so <see cref="Signal"/> still reaches it).
    /// </summary>
    public static Task<ServerProcess> StartIgnoringSigintAsync(params string[] args) => StartAsync(ignoringSigint: true, args);

    /// <summary>
    /// On two ports free a moment ago and different from each other. A port taken in that moment (by a connection going
    /// out from its range of ports, or another test's server) ends the server at once: it starts again on two others.
    /// </summary>
    private static async Task<ServerProcess> StartAsync(bool ignoringSigint, string[] args)
    {
        for (var attempt = 1; ; attempt++)
        {
            var (port, httpPort) = Client.ClientEventsTests.TwoFreePorts();
            try
            {
                return await StartAsync(ignoringSigint, args, port, httpPort);
            }
            catch (InvalidOperationException ex) when (attempt < 3 && ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                // taken meanwhile: try two others
            }
        }
    }

    /// <summary>
    /// Starts the server again, as before and on the same ports (clients reconnect to the URL they had), once this
    /// process has ended (<see cref="Signal"/> TERM or KILL, then <see cref="WaitForExitAsync"/>).
    /// </summary>
    public Task<ServerProcess> StartAgainAsync()
    {
        if (!_process.HasExited)
        {
            throw new InvalidOperationException($"the server (pid {Pid}) still runs: stop it before starting it again");
        }
        return StartAsync(_ignoringSigint, _args, Port, HttpPort);
    }

    private static async Task<ServerProcess> StartAsync(bool ignoringSigint, string[] args, int port, int httpPort)
    {
        var start = new ProcessStartInfo(ignoringSigint ? "bash" : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (ignoringSigint)
        {
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add("trap '' INT; exec dotnet \"$@\"");
            start.ArgumentList.Add("server");
        }
        start.ArgumentList.Add(ServerDll);
        start.ArgumentList.Add($"--StateMesh:Tcp:Port={port}");
        start.ArgumentList.Add($"--StateMesh:Http:Port={httpPort}");
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var server = new ServerProcess(process, port, ignoringSigint, args) { HttpPort = httpPort };
        process.OutputDataReceived += (_, e) => server.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => server.OnLine(e.Data);
        // A server that cannot start (a port still taken, say) ends at once: say so then, not after the timeout.
        process.Exited += (_, _) => server._listening.TrySetException(new InvalidOperationException("exited"));
        process.Start();
        server.Pid = process.Id;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await server._listening.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (TimeoutException)
        {
            await server.DisposeAsync();
            throw new TimeoutException("the server did not log that it listens:\n" + server.Output);
        }
        catch (InvalidOperationException ex)
        {
            // Then its output is read to the end.
            await process.WaitForExitAsync();
            var code = process.ExitCode;
            await server.DisposeAsync();
            throw new InvalidOperationException($"the server exited with {code} before it listened:\n{server.Output}", ex);
        }
        return server;
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            _output.Add(line);
        }
        if (line.Contains($"Listening for native TCP connections on tcp://127.0.0.1:{Port}", StringComparison.Ordinal))
        {
            _tcpListening = true;
        }
        if (line.Contains($"Now listening on: http://127.0.0.1:{HttpPort}", StringComparison.Ordinal))
        {
            _httpListening = true;
        }
        if (_tcpListening && _httpListening)
        {
            _listening.TrySetResult();
        }
    }

    /// <summary>Sends a signal as a terminal or an operator would (INT for Ctrl+C, KILL for kill -9).</summary>
    public void Signal(string signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        await _process.WaitForExitAsync().WaitAsync(timeout);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
