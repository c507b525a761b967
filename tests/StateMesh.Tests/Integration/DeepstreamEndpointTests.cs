using System.Buffers;
using System.Net.WebSockets;
using StateMesh.Deepstream;
using StateMesh.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>Bad input on /deepstream gets what deepstream answers; other connections go on.</summary>
public sealed class DeepstreamEndpointTests(DeepstreamEndpointTests.Fixture fixture) : IClassFixture<DeepstreamEndpointTests.Fixture>
{
    public sealed class Fixture : IAsyncLifetime
    {
        internal ServerProcess Server { get; private set; } = null!;

        private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("statemesh-ws-");

        public async Task InitializeAsync() =>
            Server = await ServerProcess.StartAsync($"--StateMesh:DataDirectory={_data.FullName}", "--StateMesh:MaxMessageSize=65536");

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            _data.Delete(recursive: true);
        }
    }

    private async Task<ClientWebSocket> ConnectAsync()
    {
        var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{fixture.Server.HttpPort}/deepstream"), CancellationToken.None);
        return socket;
    }

    private static byte[] Frame(Message message) => DeepstreamCodec.Instance.EncodeFrame(message);

    private static Task SendAsync(ClientWebSocket socket, byte[] bytes) =>
        socket.SendAsync(bytes, WebSocketMessageType.Binary, true, CancellationToken.None);

    /// <summary>The next message, or null when the node closed the socket.</summary>
    private static async Task<Message?> ReceiveAsync(ClientWebSocket socket)
    {
        var buffer = new byte[1 << 20];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var count = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(count), timeout.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return null;
            }
            count += result.Count;
        }
        while (!result.EndOfMessage);
        var messages = new List<Message>();
        Assert.Null(DeepstreamCodec.Instance.ParseFrame(new ReadOnlySequence<byte>(buffer, 0, count), messages));
        return Assert.Single(messages);
    }

    private static async Task HandshakeAsync(ClientWebSocket socket)
    {
        await SendAsync(socket, Frame(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Challenge, Url = "ws://test", ProtocolVersion = "0.1a" }));
        var accept = await ReceiveAsync(socket);
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Accept), (accept!.Topic, accept.Action));
    }

    [Fact]
    public async Task An_unknown_topic_gets_unknown_topic_and_the_connection_stays()
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket, Convert.FromHexString("021063"));
        var error = await ReceiveAsync(socket);
        Assert.Equal((Topic.Parser, (int)ParserAction.UnknownTopic), (error!.Topic, error.Action));
        await HandshakeAsync(socket);
    }

    [Fact]
    public async Task Garbage_and_truncated_varints_get_a_parser_error_and_a_close()
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket, [0xff, 0xff, 0xff]);
        var error = await ReceiveAsync(socket);
        Assert.Equal((Topic.Parser, (int)ParserAction.MessageParseError), (error!.Topic, error.Action));
        Assert.Null(await ReceiveAsync(socket));
    }

    [Fact]
    public async Task A_text_frame_closes_the_socket()
    {
        using var socket = await ConnectAsync();
        await socket.SendAsync("hello"u8.ToArray(), WebSocketMessageType.Text, true, CancellationToken.None);
        Assert.Null(await ReceiveAsync(socket));
        Assert.Equal(WebSocketCloseStatus.InvalidMessageType, socket.CloseStatus);
    }

    [Fact]
    public async Task An_oversized_frame_closes_the_socket_while_another_connection_goes_on()
    {
        using var good = await ConnectAsync();
        using var socket = await ConnectAsync();
        await SendAsync(socket, new byte[100_000]);
        Assert.Null(await ReceiveAsync(socket));
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, socket.CloseStatus);
        await HandshakeAsync(good);
    }

    [Fact]
    public async Task The_native_protocol_is_served_over_websocket_too_and_the_health_check_answers()
    {
        using var http = new HttpClient();
        var health = await http.GetAsync(new Uri($"http://127.0.0.1:{fixture.Server.HttpPort}/health-check"));
        Assert.Equal(System.Net.HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(("Healthy", "text/plain"), (await health.Content.ReadAsStringAsync(), health.Content.Headers.ContentType?.MediaType));
        var plain = await http.GetAsync(new Uri($"http://127.0.0.1:{fixture.Server.HttpPort}/statemesh"));
        Assert.Equal(System.Net.HttpStatusCode.UpgradeRequired, plain.StatusCode);
    }

    [Fact]
    public async Task A_web_app_with_map_state_mesh_answers_the_health_check_as_the_server_does()
    {
        var port = Client.ClientEventsTests.FreePort();
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Services.AddStateMesh(o => o.Configure(options => options.NodeName = $"web-{Guid.NewGuid():N}"));
        await using var app = builder.Build();
        app.MapStateMesh();
        await app.StartAsync();
        using var http = new HttpClient();
        var health = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/health-check"));
        Assert.Equal(System.Net.HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(("Healthy", "text/plain"), (await health.Content.ReadAsStringAsync(), health.Content.Headers.ContentType?.MediaType));
        await app.StopAsync();
    }

    [Fact]
    public async Task Stopping_a_web_app_tells_websocket_clients_closing_and_closes_them_cleanly()
    {
        var port = Client.ClientEventsTests.FreePort();
        var logs = new CapturingLoggerProvider();
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Logging.AddProvider(logs);
        builder.Services.AddStateMesh(o => o.Configure(options => options.NodeName = $"web-{Guid.NewGuid():N}"));
        await using var app = builder.Build();
        app.MapStateMesh();
        await app.StartAsync();
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/deepstream"), CancellationToken.None);
        await HandshakeAsync(socket);
        await SendAsync(socket, Frame(new Message { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = "{}"u8.ToArray() }));
        Assert.Equal((int)AuthAction.AuthSuccessful, (await ReceiveAsync(socket))!.Action);
        var stopping = app.StopAsync();
        var closing = await ReceiveAsync(socket);
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Closing), (closing!.Topic, closing.Action));
        Assert.Null(await ReceiveAsync(socket)); // then the close frame
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
        await stopping;
        // The node still held the WebSocket when it stopped (before the fix, Kestrel had aborted it: "closing 0").
        var closed = logs.Lines.Select(l => System.Text.RegularExpressions.Regex.Match(l, "closing ([0-9]+) connections")).Single(m => m.Success);
        Assert.True(int.Parse(closed.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 1, closed.Value);
    }

    [Theory]
    [InlineData("deepstream")]
    [InlineData("statemesh")]
    public async Task The_statemesh_client_works_over_both_websocket_protocols(string path)
    {
        StateMesh.Client.StateMeshClientOptions Options()
        {
            var options = new StateMesh.Client.StateMeshClientOptions();
            return path == "deepstream" ? StateMesh.Client.DeepstreamClientOptionsExtensions.UseDeepstreamProtocol(options) : options;
        }
        var url = $"ws://127.0.0.1:{fixture.Server.HttpPort}/{path}";
        await using var ana = await StateMesh.Client.StateMeshClient.ConnectAsync(url, new { username = "ana-" + path }, Options());
        await using var bob = await StateMesh.Client.StateMeshClient.ConnectAsync(url, new { username = "bob-" + path }, Options());

        var received = new TaskCompletionSource<string>();
        using var sub = await bob.Events.SubscribeAsync<string>("ws/" + path, v => received.TrySetResult(v));
        await ana.Events.PublishAsync("ws/" + path, "hello");
        Assert.Equal("hello", await received.Task.WaitAsync(TimeSpan.FromSeconds(10)));

        await using var record = await ana.Records.GetAsync<System.Text.Json.Nodes.JsonObject>("ws-record/" + path);
        Assert.True((await record.SetWithAckAsync("n", 1)).Succeeded);
        Assert.Equal(1, (await bob.Records.SnapshotAsync<System.Text.Json.Nodes.JsonObject>("ws-record/" + path))!.Value["n"]!.GetValue<int>());
        Assert.Equal(1, await bob.Records.HeadAsync("ws-record/" + path));

        await using var provided = await bob.Rpc.ProvideAsync<int, int>("ws-double/" + path, (x, ct) => Task.FromResult(2 * x));
        Assert.Equal(42, await ana.Rpc.MakeAsync<int, int>("ws-double/" + path, 21));
        Assert.Contains("bob-" + path, await ana.Presence.QueryAllAsync());
    }

    [Fact]
    public async Task A_deepstream_address_without_the_deepstream_codec_is_refused_with_advice()
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => StateMesh.Client.StateMeshClient.ConnectAsync($"ws://127.0.0.1:{fixture.Server.HttpPort}/deepstream"));
        Assert.Contains("UseDeepstreamProtocol", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_http_batch_api_answers_each_operation_and_the_batch()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{fixture.Server.HttpPort}") };
        var auth = await http.PostAsync(new Uri("/api/auth", UriKind.Relative), new StringContent("{\"username\":\"http-user\"}"));
        Assert.Equal(System.Net.HttpStatusCode.OK, auth.StatusCode);
        var token = System.Text.Json.Nodes.JsonNode.Parse(await auth.Content.ReadAsStringAsync())!["token"]!.GetValue<string>();

        var name = "http/" + Guid.NewGuid().ToString("N");
        var batch = $$$"""
            {"token":"{{{token}}}","body":[
              {"topic":"record","action":"write","recordName":"{{{name}}}","data":{"a":1}},
              {"topic":"record","action":"write","recordName":"{{{name}}}","path":"b","data":2},
              {"topic":"record","action":"read","recordName":"{{{name}}}"},
              {"topic":"record","action":"head","recordName":"{{{name}}}"},
              {"topic":"event","action":"emit","eventName":"http/event","data":{"x":1}},
              {"topic":"rpc","action":"make","rpcName":"nobody/provides","data":1},
              {"topic":"list","action":"write","listName":"{{{name}}}-list","data":["a",1]},
              {"topic":"presence","action":"query","names":["nobody"]},
              {"topic":"bogus","action":"nothing"}
            ]}
            """;
        var response = await http.PostAsync(new Uri("/api", UriKind.Relative), new StringContent(batch));
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        var json = System.Text.Json.Nodes.JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal("PARTIAL_SUCCESS", json["result"]!.GetValue<string>());
        var body = json["body"]!.AsArray();
        Assert.Equal([true, true, true, true, true, false, false, true, false], body.Select(r => r!["success"]!.GetValue<bool>()));
        Assert.Equal("{\"a\":1,\"b\":2}", body[2]!["data"]!.ToJsonString());
        Assert.Equal(2, body[2]!["version"]!.GetValue<int>());
        Assert.Equal(2, body[3]!["version"]!.GetValue<int>());
        Assert.Equal(("rpc", "NO_RPC_PROVIDER"), (body[5]!["errorTopic"]!.GetValue<string>(), body[5]!["errorEvent"]!.GetValue<string>()));
        Assert.Equal("{\"nobody\":false}", body[7]!["users"]!.ToJsonString());

        var bad = await http.PostAsync(new Uri("/api", UriKind.Relative), new StringContent("{not json"));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, bad.StatusCode);
        var stranger = await http.PostAsync(new Uri("/api", UriKind.Relative), new StringContent("{\"token\":\"made-up\",\"body\":[]}"));
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, stranger.StatusCode);
    }
}
