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

    private ServerProcess(Process process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The HTTP port: WebSockets (/deepstream, /statemesh) and /health-check.</summary>
    public int HttpPort { get; init; }

    public int Pid => _process.Id;

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

    private static async Task<ServerProcess> StartAsync(bool ignoringSigint, string[] args)
    {
        var port = Client.ClientEventsTests.FreePort();
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
        var httpPort = Client.ClientEventsTests.FreePort();
        start.ArgumentList.Add($"--StateMesh:Http:Port={httpPort}");
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        var process = new Process { StartInfo = start };
        var server = new ServerProcess(process, port) { HttpPort = httpPort };
        process.OutputDataReceived += (_, e) => server.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => server.OnLine(e.Data);
        process.Start();
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
        using var kill = Process.Start("kill", ["-" + signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
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
