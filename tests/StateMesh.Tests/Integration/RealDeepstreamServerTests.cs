using System.Diagnostics;
using System.Text.Json.Nodes;
using StateMesh.Client;

namespace StateMesh.Tests.Integration;

/// <summary>The StateMesh client against the real @deepstream/server 7.0.2 (tests/deepstream-server), on loopback.</summary>
public sealed class RealDeepstreamServerTests(RealDeepstreamServerTests.Fixture fixture) : IClassFixture<RealDeepstreamServerTests.Fixture>
{
    public sealed class Fixture : IAsyncLifetime
    {
        private Process? _server;
        private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly List<string> _output = [];

        public int Port { get; } = Client.ClientEventsTests.FreePort();

        private static string Directory => Path.Combine(Support.Repository.Root, "tests", "deepstream-server");

        public async Task InitializeAsync()
        {
            await Support.Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "deepstream-server"));
            _server = new Process { StartInfo = new ProcessStartInfo("node", ["start.cjs", Port.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { WorkingDirectory = Directory, RedirectStandardOutput = true, RedirectStandardError = true } };
            _server.OutputDataReceived += (_, e) => OnLine(e.Data);
            _server.ErrorDataReceived += (_, e) => OnLine(e.Data);
            _server.Start();
            _server.BeginOutputReadLine();
            _server.BeginErrorReadLine();
            try
            {
                await _ready.Task.WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (TimeoutException)
            {
                lock (_output)
                {
                    throw new TimeoutException("deepstream did not start:\n" + string.Join('\n', _output));
                }
            }
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
            if (line.StartsWith("READY", StringComparison.Ordinal))
            {
                _ready.TrySetResult();
            }
        }

        public async Task DisposeAsync()
        {
            if (_server is { HasExited: false })
            {
                _server.Kill(entireProcessTree: true);
                await _server.WaitForExitAsync();
            }
            _server?.Dispose();
        }
    }

    private Task<StateMeshClient> LoginAsync(string user, string password) =>
        StateMeshClient.ConnectAsync($"ws://127.0.0.1:{fixture.Port}/deepstream", new { username = user, password }, new StateMeshClientOptions().UseDeepstreamProtocol());

    [Fact]
    public async Task Login_returns_client_data_and_a_wrong_password_is_refused()
    {
        await using var ana = await LoginAsync("ana", "anapw");
        Assert.Equal("tester", ana.ClientData!.Value.GetProperty("role").GetString());
        await Assert.ThrowsAsync<StateMeshAuthenticationException>(() => LoginAsync("ana", "wrong"));
    }

    [Fact]
    public async Task Events_flow_through_deepstream()
    {
        await using var ana = await LoginAsync("ana", "anapw");
        await using var bob = await LoginAsync("bob", "bobpw");
        var received = new TaskCompletionSource<JsonObject>();
        using var sub = await bob.Events.SubscribeAsync<JsonObject>("ds/news", v => received.TrySetResult(v));
        await ana.Events.PublishAsync("ds/news", new JsonObject { ["headline"] = "hi" });
        Assert.Equal("hi", (await received.Task.WaitAsync(TimeSpan.FromSeconds(10)))["headline"]!.GetValue<string>());
    }

    [Fact]
    public async Task Records_are_read_written_and_observed_through_deepstream()
    {
        await using var ana = await LoginAsync("ana", "anapw");
        await using var bob = await LoginAsync("bob", "bobpw");
        var name = "ds/record-" + Guid.NewGuid().ToString("N");
        await using var a = await ana.Records.GetAsync<JsonObject>(name);
        await using var b = await bob.Records.GetAsync<JsonObject>(name);
        Assert.Equal(0, a.Version);
        Assert.True((await a.SetWithAckAsync(new JsonObject { ["title"] = "milk" })).Succeeded);
        await Client.ClientEventsTests.WaitUntilAsync(() => b.Version == 1);
        await a.SetAsync("done", true);
        await Client.ClientEventsTests.WaitUntilAsync(() => b.Data?["done"]?.GetValue<bool>() == true);
        Assert.Equal(2, await bob.Records.HeadAsync(name));
        Assert.Equal("milk", (await bob.Records.SnapshotAsync<JsonObject>(name))!.Value["title"]!.GetValue<string>());
        Assert.False(await bob.Records.HasAsync(name + "-missing"));
    }

    [Fact]
    public async Task Rpc_and_presence_work_against_deepstream()
    {
        await using var ana = await LoginAsync("ana", "anapw");
        await using var bob = await LoginAsync("bob", "bobpw");
        await using var provided = await bob.Rpc.ProvideAsync<int, int>("ds/double", (x, ct) => Task.FromResult(2 * x));
        Assert.Equal(42, await ana.Rpc.MakeAsync<int, int>("ds/double", 21));
        var none = await Assert.ThrowsAsync<RpcException>(() => ana.Rpc.MakeAsync<int, int>("ds/nobody", 1));
        Assert.Equal(RpcErrorCode.NoProvider, none.Code);
        Assert.Contains("bob", await ana.Presence.QueryAllAsync());
        Assert.True((await ana.Presence.QueryAsync(["bob"]))["bob"]);
    }
}
