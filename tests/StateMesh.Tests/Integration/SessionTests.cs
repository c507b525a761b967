using System.Text;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>Handshake, login, limits and heartbeats over real TCP loopback.</summary>
public class SessionTests
{
    private static Message AuthRequest(string json) => new() { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = Encoding.UTF8.GetBytes(json) };

    private static Action<StateMeshOptions> WithUser(string name, string password, string? clientData = null) => o =>
        o.Users[name] = new StateMeshUserOptions { PasswordHash = Auth.PasswordHash.Create(password, 1000), ClientData = clientData };

    [Fact]
    public async Task Challenge_is_accepted_and_a_valid_login_returns_client_data()
    {
        await using var node = await TestNode.StartAsync(WithUser("ana", "secret", "{\"role\":\"admin\"}"));
        await using var client = await RawClient.ConnectTcpAsync(node);
        await client.HandshakeAsync();
        await client.SendAsync(AuthRequest("{\"username\":\"ana\",\"password\":\"secret\"}"));
        var reply = await client.ReceiveAsync();
        Assert.Equal((int)AuthAction.AuthSuccessful, reply.Action);
        Assert.Equal("{\"role\":\"admin\"}", Encoding.UTF8.GetString(reply.Data!.Value.Span));
    }

    [Fact]
    public async Task A_wrong_password_is_refused_and_the_connection_stays_open_for_a_retry()
    {
        await using var node = await TestNode.StartAsync(WithUser("ana", "secret"));
        await using var client = await RawClient.ConnectTcpAsync(node);
        await client.HandshakeAsync();
        await client.SendAsync(AuthRequest("{\"username\":\"ana\",\"password\":\"wrong\"}"));
        Assert.Equal((int)AuthAction.AuthUnsuccessful, (await client.ReceiveAsync()).Action);
        await client.SendAsync(AuthRequest("{\"username\":\"ana\",\"password\":\"secret\"}"));
        Assert.Equal((int)AuthAction.AuthSuccessful, (await client.ReceiveAsync()).Action);
    }

    [Fact]
    public async Task An_unknown_user_is_refused_when_anonymous_logins_are_off()
    {
        await using var node = await TestNode.StartAsync(WithUser("ana", "secret"));
        await using var client = await RawClient.ConnectTcpAsync(node);
        await client.HandshakeAsync();
        await client.SendAsync(AuthRequest("{\"username\":\"mallory\",\"password\":\"x\"}"));
        Assert.Equal((int)AuthAction.AuthUnsuccessful, (await client.ReceiveAsync()).Action);
    }

    [Fact]
    public async Task Too_many_failed_logins_are_answered_and_the_connection_closed()
    {
        await using var node = await TestNode.StartAsync(WithUser("ana", "secret"));
        await using var client = await RawClient.ConnectTcpAsync(node);
        await client.HandshakeAsync();
        for (var i = 0; i < 2; i++)
        {
            await client.SendAsync(AuthRequest("{\"username\":\"ana\",\"password\":\"wrong\"}"));
            Assert.Equal((int)AuthAction.AuthUnsuccessful, (await client.ReceiveAsync()).Action);
        }
        await client.SendAsync(AuthRequest("{\"username\":\"ana\",\"password\":\"wrong\"}"));
        Assert.Equal((int)AuthAction.TooManyAuthAttempts, (await client.ReceiveAsync()).Action);
        await client.Closed.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Login_data_that_is_not_a_json_object_is_refused_and_closed()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.ConnectTcpAsync(node);
        await client.HandshakeAsync();
        await client.SendAsync(AuthRequest("[1,2"));
        var reply = await client.ReceiveAsync();
        Assert.Equal((Topic.Auth, (int)AuthAction.InvalidMessageData), (reply.Topic, reply.Action));
        await client.Closed.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Anonymous_login_uses_the_username_as_id()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.LoginAsync(node, "{\"username\":\"bob\"}");
        var session = Assert.Single(node.Engine.Sessions);
        Assert.Equal("bob", session.UserId);
    }

    [Fact]
    public async Task Messages_before_login_are_refused_without_effect()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.ConnectTcpAsync(node);
        await client.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = ["e"], CorrelationId = "1" });
        var early = await client.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.InvalidMessage), (early.Topic, early.Action));
        await client.HandshakeAsync();
        await client.SendAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = ["e"], CorrelationId = "1" });
        var beforeAuth = await client.ReceiveAsync();
        Assert.Equal((Topic.Auth, (int)AuthAction.InvalidMessage), (beforeAuth.Topic, beforeAuth.Action));
        Assert.Empty(node.Engine.Events.Registry.Get("e"));
    }

    [Fact]
    public async Task Ping_gets_pong_only_after_login()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.ConnectTcpAsync(node);
        await client.HandshakeAsync();
        await client.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        await client.SendAsync(AuthRequest("{}"));
        // The first reply is the login: the PING before it got nothing.
        Assert.Equal((int)AuthAction.AuthSuccessful, (await client.ReceiveAsync()).Action);
        await client.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        var pong = await client.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Pong), (pong.Topic, pong.Action));
    }

    [Fact]
    public async Task An_oversized_frame_gets_a_parser_error_and_a_close_while_others_go_on()
    {
        await using var node = await TestNode.StartAsync(o => o.MaxMessageSize = 4096);
        await using var other = await RawClient.LoginAsync(node);
        await using var client = await RawClient.LoginAsync(node);
        var header = new byte[] { 0, 0, 0x20, 0 }; // 8 KiB announced; the body never needs to arrive
        await client.SendRawAsync(header);
        var error = await client.ReceiveAsync();
        Assert.Equal((Topic.Parser, (int)ParserAction.MaximumMessageSizeExceeded), (error.Topic, error.Action));
        await client.Closed.WaitAsync(TimeSpan.FromSeconds(10));
        await other.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        Assert.Equal((int)ConnectionAction.Pong, (await other.ReceiveAsync()).Action);
    }

    [Fact]
    public async Task A_malformed_frame_gets_a_parser_error_and_the_connection_keeps_working()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.LoginAsync(node);
        await client.SendFrameAsync([0x91, 0xC1, 0xFF, 0x00]);
        var error = await client.ReceiveAsync();
        Assert.Equal(Topic.Parser, error.Topic);
        Assert.True(error.IsError);
        await client.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        Assert.Equal((int)ConnectionAction.Pong, (await client.ReceiveAsync()).Action);
    }

    [Fact]
    public async Task Unknown_topics_and_actions_get_parser_errors()
    {
        await using var node = await TestNode.StartAsync();
        await using var client = await RawClient.LoginAsync(node);
        await client.SendAsync(new Message { Topic = (Topic)99, Action = 1 });
        var unknownTopic = await client.ReceiveAsync();
        Assert.Equal((Topic.Parser, (int)ParserAction.UnknownTopic, (Topic?)(Topic)99), (unknownTopic.Topic, unknownTopic.Action, unknownTopic.OriginalTopic));
        await client.SendAsync(new Message { Topic = Topic.Event, Action = 77, Name = "e" });
        var unknownAction = await client.ReceiveAsync();
        Assert.Equal((Topic.Parser, (int)ParserAction.UnknownAction, (int?)77), (unknownAction.Topic, unknownAction.Action, unknownAction.OriginalAction));
    }

    [Fact]
    public async Task Garbage_bytes_before_the_handshake_do_not_disturb_other_clients()
    {
        await using var node = await TestNode.StartAsync(o => o.MaxMessageSize = 1 << 20);
        await using var good = await RawClient.LoginAsync(node);
        await using var bad = await RawClient.ConnectTcpAsync(node);
        var random = new Random(7);
        for (var i = 0; i < 50; i++)
        {
            var frame = new byte[random.Next(1, 200)];
            random.NextBytes(frame);
            await bad.SendFrameAsync(frame);
        }
        await good.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        Assert.Equal((int)ConnectionAction.Pong, (await good.ReceiveAsync()).Action);
        // The bad client got an error for each frame (PARSER for garbage, CONNECTION INVALID_MESSAGE for a stray message).
        for (var i = 0; i < 50; i++)
        {
            var reply = await bad.ReceiveAsync();
            Assert.True(reply.IsError, reply.ToString());
            Assert.Contains(reply.Topic, new[] { Topic.Parser, Topic.Connection });
        }
        // And once it goes, its session finishes cleanly, even though replies were still on their way.
        var badSession = Assert.Single(node.Engine.Sessions, s => s.State == StateMesh.Server.SessionState.AwaitingChallenge);
        await bad.DisposeAsync();
        await badSession.Completion.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_client_that_never_logs_in_is_timed_out()
    {
        await using var node = await TestNode.StartAsync(o => o.UnauthenticatedTimeout = TimeSpan.FromMilliseconds(300));
        await using var client = await RawClient.ConnectTcpAsync(node);
        await client.HandshakeAsync();
        var timeout = await client.ReceiveAsync();
        Assert.Equal((Topic.Connection, (int)ConnectionAction.AuthenticationTimeout), (timeout.Topic, timeout.Action));
        await client.Closed.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_silent_client_is_closed_after_twice_the_heartbeat_interval_while_a_pinging_one_stays()
    {
        await using var node = await TestNode.StartAsync(o => o.HeartbeatInterval = TimeSpan.FromSeconds(1));
        await using var silent = await RawClient.LoginAsync(node);
        await using var pinging = await RawClient.LoginAsync(node);
        while (!silent.Closed.IsCompleted)
        {
            await pinging.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
            Assert.Equal((int)ConnectionAction.Pong, (await pinging.ReceiveAsync()).Action);
            await Task.WhenAny(silent.Closed, Task.Delay(100));
        }
        await pinging.SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping });
        Assert.Equal((int)ConnectionAction.Pong, (await pinging.ReceiveAsync()).Action);
        Assert.Equal(1, node.ConnectionCount);
    }
}
