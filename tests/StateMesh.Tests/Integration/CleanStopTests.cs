using System.Diagnostics;
using Microsoft.Extensions.Logging;
using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>
/// The node stopped by its operator (SIGTERM, or SIGINT as Ctrl+C sends it) with clients on every transport: the
/// official deepstream client on /deepstream and the .NET client over TCP, /statemesh and /deepstream. Each is told
/// CLOSING and its connection ends cleanly before the process exits with 0.
/// </summary>
public sealed class CleanStopTests
{
    [Theory]
    [InlineData("TERM")]
    [InlineData("INT")]
    public async Task Every_client_on_every_transport_is_told_closing_and_closed_cleanly_before_the_node_exits(string signal)
    {
        await Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "conformance"));
        await using var server = await ServerProcess.StartAsync();
        var transports = new (string Name, string Address, bool Deepstream)[]
        {
            ("tcp", $"tcp://127.0.0.1:{server.Port}", false),
            ("statemesh", $"ws://127.0.0.1:{server.HttpPort}/statemesh", false),
            ("deepstream", $"ws://127.0.0.1:{server.HttpPort}/deepstream", true),
        };
        var clients = new List<(string Name, StateMeshClient Client, CapturingLoggerProvider Logs, TaskCompletionSource Reconnecting)>();
        using var official = StartOfficialClient($"ws://127.0.0.1:{server.HttpPort}/deepstream");
        try
        {
            foreach (var (name, address, deepstream) in transports)
            {
                var logs = new CapturingLoggerProvider();
                var options = new StateMeshClientOptions { LoggerFactory = LoggerFactory.Create(b => b.AddProvider(logs)), MaxReconnectAttempts = 1 };
                var client = await StateMeshClient.ConnectAsync(address, new { username = "stop-" + name }, deepstream ? options.UseDeepstreamProtocol() : options);
                var reconnecting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                client.ConnectionStates.Subscribe(state => { if (state == ConnectionState.Reconnecting) { reconnecting.TrySetResult(); } });
                clients.Add((name, client, logs, reconnecting));
            }
            await official.Ready.WaitAsync(TimeSpan.FromSeconds(30));

            server.Signal(signal);

            var officialSaw = await official.Ended.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(officialSaw.Contains("CLOSING\nCLOSE 1000", StringComparison.Ordinal), "the official client saw:\n" + officialSaw);
            foreach (var (name, _, logs, reconnecting) in clients)
            {
                await reconnecting.Task.WaitAsync(TimeSpan.FromSeconds(30));
                var lines = string.Join('\n', logs.Lines);
                Assert.True(lines.Contains("is stopping (it said CLOSING)", StringComparison.Ordinal), $"the .NET client over {name} was not told CLOSING:\n{lines}");
                Assert.True(lines.Contains("closed because the node stopped", StringComparison.Ordinal), $"the .NET client over {name}:\n{lines}");
                Assert.False(lines.Contains("lost; reconnecting", StringComparison.Ordinal), $"the .NET client over {name} lost its connection instead:\n{lines}");
            }
            Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains("closing 4 connections", server.Output, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var (_, client, _, _) in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    private static OfficialClient StartOfficialClient(string url) => new(url);

    /// <summary>tests/conformance/clean-stop.mjs: the official client, reporting CLOSING and the WebSocket close code.</summary>
    private sealed class OfficialClient : IDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];
        private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource<string> _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public OfficialClient(string url)
        {
            var start = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Path.Combine(Repository.Root, "tests", "conformance") };
            start.ArgumentList.Add("clean-stop.mjs");
            start.ArgumentList.Add(url);
            _process = new Process { StartInfo = start, EnableRaisingEvents = true };
            _process.OutputDataReceived += (_, e) => Add(e.Data);
            _process.ErrorDataReceived += (_, e) => Add(e.Data);
            _process.Exited += (_, _) => _ended.TrySetResult(Text);
            _process.Start();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        private string Text { get { lock (_lines) { return string.Join('\n', _lines); } } }

        private void Add(string? line)
        {
            if (line is null)
            {
                return;
            }
            lock (_lines)
            {
                _lines.Add(line);
            }
            if (line == "READY")
            {
                _ready.TrySetResult();
            }
        }

        public Task Ready => _ready.Task;

        /// <summary>Everything the script printed, once it exited (after the close, or on its own timeout).</summary>
        public Task<string> Ended => EndedAsync();

        private async Task<string> EndedAsync()
        {
            await _ended.Task.ConfigureAwait(false);
            await _process.WaitForExitAsync().ConfigureAwait(false); // the last lines are read
            return Text;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }
            _process.Dispose();
        }
    }
}
