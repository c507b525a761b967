using System.Reactive.Linq;
using System.Reactive.Threading.Tasks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using StateMesh.Client;
using StateMesh.Tests.Client;

namespace StateMesh.Tests.Hosting;

public class HostingTests
{
    private static int s_counter;

    private static string UniqueName() => $"host-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}";

    [Fact]
    public async Task AddStateMesh_runs_a_node_and_an_in_process_client_that_talks_to_tcp_clients()
    {
        var builder = Host.CreateApplicationBuilder();
        var name = UniqueName();
        builder.Services.AddStateMesh(mesh => mesh.AddTcpEndpoint(0).Configure(o => o.NodeName = name));
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var node = host.Services.GetRequiredService<StateMeshNode>();
            var local = host.Services.GetRequiredService<IStateMeshClient>();
            Assert.Equal(ConnectionState.Open, local.ConnectionState);
            await using var remote = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = "remote" });
            var atRemote = remote.Events.Observe<string>("greetings").FirstAsync().ToTask();
            using var remoteSub = await remote.Events.SubscribeAsync<string>("greetings", _ => { });
            var atLocal = local.Events.Observe<string>("replies").FirstAsync().ToTask();
            using var localSub = await local.Events.SubscribeAsync<string>("replies", _ => { });

            await local.Events.PublishAsync("greetings", "from the host");
            Assert.Equal("from the host", await atRemote.WaitAsync(TimeSpan.FromSeconds(10)));
            await remote.Events.PublishAsync("replies", "from tcp");
            Assert.Equal("from tcp", await atLocal.WaitAsync(TimeSpan.FromSeconds(10)));
            // The host's own client is not a user: presence sees only the remote one.
            Assert.Equal(["remote"], await local.Presence.QueryAllAsync());
            Assert.Equal(1, await remote.Presence.CountAsync());
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task Invalid_options_stop_the_host_at_start_with_a_clear_message()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddStateMesh(mesh => mesh.Configure(o =>
        {
            o.NodeName = UniqueName();
            o.HeartbeatInterval = TimeSpan.Zero;
            o.Users["ana"] = new StateMeshUserOptions { PasswordHash = "not-a-hash", ClientData = "{broken" };
        }));
        using var host = builder.Build();
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("StateMesh:HeartbeatInterval must be positive", ex.Message, StringComparison.Ordinal);
        Assert.Contains("StateMesh:Users:ana:PasswordHash", ex.Message, StringComparison.Ordinal);
        Assert.Contains("StateMesh:Users:ana:ClientData is not valid JSON", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Configuration_binds_users_with_client_data_given_as_an_object()
    {
        var hash = Auth.PasswordHash.Create("pw", 1000);
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["StateMesh:NodeName"] = UniqueName(),
            ["StateMesh:Tcp:Enabled"] = "true",
            ["StateMesh:Tcp:Port"] = "0",
            ["StateMesh:MaxAuthAttempts"] = "5",
            ["StateMesh:HeartbeatInterval"] = "00:00:10",
            ["StateMesh:Users:ana:PasswordHash"] = hash,
            ["StateMesh:Users:ana:ClientData:role"] = "admin",
            ["StateMesh:Users:ana:ClientData:teams:0"] = "red",
            ["StateMesh:Users:ana:ServerData"] = "{\"level\":3}",
        }).Build();
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddStateMesh(mesh => mesh.BindConfiguration(config.GetSection("StateMesh")));
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var node = host.Services.GetRequiredService<StateMeshNode>();
            Assert.Equal(5, node.Options.MaxAuthAttempts);
            Assert.Equal(TimeSpan.FromSeconds(10), node.Options.HeartbeatInterval);
            Assert.Equal("{\"role\":\"admin\",\"teams\":[\"red\"]}", node.Options.Users["ana"].ClientData);
            Assert.Equal(hash, node.Options.Users["ana"].PasswordHash);
            await using var client = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = "ana", password = "pw" });
            Assert.Equal("{\"role\":\"admin\",\"teams\":[\"red\"]}", client.ClientData!.Value.GetRawText());
            // The host's own in-process client needs no password: it is logged in as the node.
            Assert.Contains(node.Engine.Sessions, s => s.UserId == node.Options.NodeName);
            var session = Assert.Single(node.Engine.Sessions, s => s.UserId == "ana");
            Assert.Equal(3, (int)session.ServerData!["level"]!);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task AddStateMeshClient_connects_to_a_remote_node_with_the_host()
    {
        await using var node = await Support.TestNode.StartAsync();
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddStateMeshClient(o =>
        {
            o.Address = node.TcpAddress!.ToString();
            o.AuthData = new System.Text.Json.Nodes.JsonObject { ["username"] = "svc" };
        });
        using var host = builder.Build();
        await host.StartAsync();
        var client = host.Services.GetRequiredService<IStateMeshClient>();
        Assert.Equal(ConnectionState.Open, client.ConnectionState);
        Assert.Contains(node.Engine.Sessions, s => s.UserId == "svc");
        await host.StopAsync();
        Assert.Equal(ConnectionState.Closed, client.ConnectionState);
        await ClientEventsTests.WaitUntilAsync(() => node.ConnectionCount == 0);
    }

    [Fact]
    public async Task Stopping_the_host_tells_clients_closing()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddStateMesh(mesh => mesh.AddTcpEndpoint(0).Configure(o => o.NodeName = UniqueName()));
        using var host = builder.Build();
        await host.StartAsync();
        var node = host.Services.GetRequiredService<StateMeshNode>();
        await using var raw = await Support.RawClient.LoginAsync(node);
        await host.StopAsync();
        var closing = await raw.ReceiveAsync();
        Assert.Equal((StateMesh.Protocol.Topic.Connection, (int)StateMesh.Protocol.ConnectionAction.Closing), (closing.Topic, closing.Action));
        await raw.Closed.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
