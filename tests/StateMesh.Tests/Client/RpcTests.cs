using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using StateMesh.Client;
using StateMesh.Protocol;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Client;

public sealed record AddRequest(int A, int B);

public class RpcTests
{
    private static Task<StateMeshClient> ConnectAsync(StateMeshNode node, string? user = null) =>
        StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), user is null ? null : new { username = user },
            new StateMeshClientOptions { ReconnectIntervalIncrement = TimeSpan.FromMilliseconds(200), MaxReconnectAttempts = 50 });

    private static Message Rpc(RpcAction action, string? name = null, string? cid = null, string? data = null, string[]? names = null) => new()
    {
        Topic = Topic.Rpc, Action = (int)action, Name = name, CorrelationId = cid, Names = names, Data = data is null ? null : Encoding.UTF8.GetBytes(data),
    };

    [Fact]
    public async Task A_call_reaches_a_provider_and_returns_its_response()
    {
        await using var node = await TestNode.StartAsync();
        await using var provider = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        await using var _ = await provider.Rpc.ProvideAsync<AddRequest, int>("add", (r, ct) => Task.FromResult(r.A + r.B));
        Assert.Equal(5, await caller.Rpc.MakeAsync<AddRequest, int>("add", new AddRequest(2, 3)));
        // Many calls in flight at once: each gets its own answer (the node gives each forwarded request its own id;
        // the protocol test below checks that the provider never sees the caller's id).
        var results = await Task.WhenAll(Enumerable.Range(0, 50).Select(i => caller.Rpc.MakeAsync<AddRequest, int>("add", new AddRequest(i, i))));
        Assert.Equal(Enumerable.Range(0, 50).Select(i => 2 * i), results);
        Assert.Equal(0, node.Engine.Rpc.PendingCount);
    }

    [Fact]
    public async Task Any_other_provider_exception_stays_in_the_providers_log_and_the_caller_gets_a_fixed_text()
    {
        await using var node = await TestNode.StartAsync();
        using var log = new CapturingLoggerProvider();
        using var factory = LoggerFactory.Create(b => b.AddProvider(log));
        await using var provider = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), null, new StateMeshClientOptions { LoggerFactory = factory });
        await using var caller = await ConnectAsync(node);
        await using var _ = await provider.Rpc.ProvideAsync<string, string>("leaky", (r, ct) => throw new InvalidOperationException("connection string Password=hunter2"));
        var error = await Assert.ThrowsAsync<RpcException>(() => caller.Rpc.MakeAsync<string, string>("leaky", "x"));
        Assert.Equal((RpcErrorCode.ProviderError, "The provider failed."), (error.Code, error.Message));
        Assert.Contains(log.Lines, l => l.Contains("The provider of 'leaky' threw", StringComparison.Ordinal) && l.Contains("hunter2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_provider_error_reaches_the_caller_with_its_message_and_no_provider_fails_at_once()
    {
        await using var node = await TestNode.StartAsync();
        await using var provider = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        await using var _ = await provider.Rpc.ProvideAsync<string, string>("fail", (r, ct) => throw new RpcErrorException("nope: " + r));
        var error = await Assert.ThrowsAsync<RpcException>(() => caller.Rpc.MakeAsync<string, string>("fail", "x"));
        Assert.Equal((RpcErrorCode.ProviderError, "nope: x"), (error.Code, error.Message));
        var none = await Assert.ThrowsAsync<RpcException>(() => caller.Rpc.MakeAsync<string, string>("nobody", "x"));
        Assert.Equal(RpcErrorCode.NoProvider, none.Code);
    }

    [Fact]
    public async Task A_reject_chain_tries_each_of_three_providers_once_then_answers_no_provider()
    {
        await using var node = await TestNode.StartAsync();
        var seen = new int[3];
        var providers = new List<StateMeshClient>();
        for (var i = 0; i < 3; i++)
        {
            var index = i;
            var p = await ConnectAsync(node);
            await p.Rpc.ProvideWithContextAsync<string, string>("picky", (RpcRequest<string> r, CancellationToken ct) =>
            {
                Interlocked.Increment(ref seen[index]);
                throw r.Reject();
            });
            providers.Add(p);
        }
        await using var caller = await ConnectAsync(node);
        var error = await Assert.ThrowsAsync<RpcException>(() => caller.Rpc.MakeAsync<string, string>("picky", "x"));
        Assert.Equal(RpcErrorCode.NoProvider, error.Code);
        Assert.Equal([1, 1, 1], seen);
        foreach (var p in providers)
        {
            await p.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_reject_reroutes_to_a_provider_that_accepts()
    {
        await using var node = await TestNode.StartAsync();
        await using var rejecter = await ConnectAsync(node);
        await using var worker = await ConnectAsync(node);
        await using var caller = await ConnectAsync(node);
        await using var a = await rejecter.Rpc.ProvideWithContextAsync<int, string>("job", (RpcRequest<int> r, CancellationToken ct) => throw r.Reject());
        await using var b = await worker.Rpc.ProvideAsync<int, string>("job", (r, ct) => Task.FromResult("done " + r));
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("done " + i, await caller.Rpc.MakeAsync<int, string>("job", i));
        }
    }

    [Fact]
    public async Task A_provider_that_disconnects_before_accepting_is_skipped_and_one_that_disconnects_after_fails_the_call_at_once()
    {
        // Long timeouts: here only a disconnect may end or move a call, even on a busy machine.
        await using var node = await TestNode.StartAsync(o =>
        {
            o.Rpc.ResponseTimeout = TimeSpan.FromMinutes(5);
            o.Rpc.AckTimeout = TimeSpan.FromMinutes(1);
        });
        await using var caller = await ConnectAsync(node);

        // Accepted, then gone: the caller hears at once, not after five minutes.
        var crasher = await RawClient.LoginAsync(node);
        await crasher.SendAsync(Rpc(RpcAction.Provide, names: ["fragile"], cid: "p"));
        await crasher.ReceiveAsync();
        var call = caller.Rpc.MakeAsync<string, string>("fragile", "x");
        var request = await crasher.ReceiveAsync();
        await crasher.SendAsync(Rpc(RpcAction.Accept, "fragile", request.CorrelationId));
        await crasher.DisposeAsync();
        var error = await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(RpcErrorCode.ProviderError, error.Code);
        Assert.Contains("disconnected", error.Message, StringComparison.Ordinal);

        // Not yet accepted, then gone: rerouted to the other provider.
        await using var steady = await ConnectAsync(node);
        await using var _ = await steady.Rpc.ProvideAsync<string, string>("fragile", (r, ct) => Task.FromResult("steady " + r));
        var silent = await RawClient.LoginAsync(node);
        await silent.SendAsync(Rpc(RpcAction.Provide, names: ["fragile"], cid: "p"));
        await silent.ReceiveAsync();
        for (var i = 0; i < 20; i++)
        {
            var next = caller.Rpc.MakeAsync<string, string>("fragile", "y" + i);
            // Either the steady provider answers, or the silent one got it: then it disconnects and the call moves on.
            var first = await Task.WhenAny(next, silent.ReceiveAsync(TimeSpan.FromSeconds(2)));
            if (first != next)
            {
                await silent.DisposeAsync();
                Assert.Equal("steady y" + i, await next.WaitAsync(TimeSpan.FromSeconds(10)));
                return;
            }
            Assert.Equal("steady y" + i, await next);
        }
        Assert.Fail("the random choice never picked the silent provider in 20 calls");
    }

    [Fact]
    public async Task Protocol_errors_multiple_accept_unknown_correlation_and_provide_twice()
    {
        await using var node = await TestNode.StartAsync();
        await using var provider = await RawClient.LoginAsync(node);
        await using var caller = await RawClient.LoginAsync(node);
        await provider.SendAsync(Rpc(RpcAction.Provide, names: ["p"], cid: "1"));
        Assert.True((await provider.ReceiveAsync()).IsAck);
        await provider.SendAsync(Rpc(RpcAction.Provide, names: ["p"], cid: "2"));
        var twice = await provider.ReceiveAsync();
        Assert.Equal(((int)RpcAction.MultipleProviders, "p"), (twice.Action, twice.Name));
        await provider.ReceiveAsync();
        await provider.SendAsync(Rpc(RpcAction.Unprovide, names: ["q"], cid: "3"));
        Assert.Equal((int)RpcAction.NotProvided, (await provider.ReceiveAsync()).Action);
        await provider.ReceiveAsync();

        await caller.SendAsync(Rpc(RpcAction.Request, "p", "1", "\"hi\""));
        var request = await provider.ReceiveAsync();
        Assert.Equal(((int)RpcAction.Request, "p", "\"hi\""), (request.Action, request.Name, Encoding.UTF8.GetString(request.Data!.Value.Span)));
        Assert.NotEqual("1", request.CorrelationId); // the node's own id, so that callers' ids never collide
        await provider.SendAsync(Rpc(RpcAction.Accept, "p", request.CorrelationId));
        var accepted = await caller.ReceiveAsync();
        Assert.Equal(((int)RpcAction.Accept, "1"), (accepted.Action, accepted.CorrelationId));
        await provider.SendAsync(Rpc(RpcAction.Accept, "p", request.CorrelationId));
        Assert.Equal((int)RpcAction.MultipleAccept, (await provider.ReceiveAsync()).Action);
        await provider.SendAsync(Rpc(RpcAction.Response, "p", "nonsense", "1"));
        Assert.Equal((int)RpcAction.InvalidRpcCorrelationId, (await provider.ReceiveAsync()).Action);
        await provider.SendAsync(Rpc(RpcAction.Response, "p", request.CorrelationId, "42"));
        var response = await caller.ReceiveAsync();
        Assert.Equal(((int)RpcAction.Response, "1", "42"), (response.Action, response.CorrelationId, Encoding.UTF8.GetString(response.Data!.Value.Span)));
    }

    [Fact]
    public async Task The_requestor_name_and_data_reach_the_provider_when_configured()
    {
        await using var node = await TestNode.StartAsync(o =>
        {
            o.Rpc.ProvideRequestorName = true;
            o.Rpc.ProvideRequestorData = true;
            o.Users["ana"] = new StateMeshUserOptions { Password = "pw", ClientData = "{\"team\":\"red\"}" };
            o.AllowAnonymous = true;
        });
        await using var provider = await ConnectAsync(node);
        await using var caller = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = "ana", password = "pw" });
        await using var _ = await provider.Rpc.ProvideWithContextAsync<int, string>("who", (RpcRequest<int> r, CancellationToken ct) =>
            Task.FromResult($"{r.RequestorName}/{r.RequestorData!.Value.GetProperty("team").GetString()}"));
        Assert.Equal("ana/red", await caller.Rpc.MakeAsync<int, string>("who", 1));
    }

    [Fact]
    public async Task Providers_provide_again_after_the_node_restarts()
    {
        var first = await TestNode.StartAsync();
        var port = first.TcpEndPoint!.Port;
        await using var provider = await ConnectAsync(first);
        await using var _ = await provider.Rpc.ProvideAsync<int, int>("double", (r, ct) => Task.FromResult(2 * r));
        await first.DisposeAsync();
        await ClientEventsTests.WaitUntilAsync(() => provider.ConnectionState != ConnectionState.Open);
        await using var second = await TestNode.StartAsync(o => o.Tcp.Port = port);
        await ClientEventsTests.WaitUntilAsync(() => second.Engine.Rpc.Providers.Get("double").Length == 1, TimeSpan.FromSeconds(30));
        await using var caller = await ConnectAsync(second);
        Assert.Equal(42, await caller.Rpc.MakeAsync<int, int>("double", 21));
    }

    private static async Task<(StateMeshNode Node, FakeTimeProvider Time, RawClient Provider, RawClient Caller)> FakeTimeNodeAsync()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var node = await TestNode.StartAsync(o =>
        {
            o.Tcp.Enabled = false;
            o.HeartbeatInterval = TimeSpan.FromHours(1);
            o.UnauthenticatedTimeout = TimeSpan.FromHours(1);
        }, time);
        var provider = await RawClient.LoginInProcessAsync(node);
        await provider.SendAsync(Rpc(RpcAction.Provide, names: ["slow"], cid: "1"));
        await provider.ReceiveAsync();
        return (node, time, provider, await RawClient.LoginInProcessAsync(node));
    }

    [Fact]
    public async Task No_accept_within_the_accept_timeout_is_accept_timeout()
    {
        var (node, time, provider, caller) = await FakeTimeNodeAsync();
        await using var _n = node;
        await using var _p = provider;
        await using var _c = caller;
        await caller.SendAsync(Rpc(RpcAction.Request, "slow", "c1", "1"));
        await provider.ReceiveAsync();
        time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal(1, node.Engine.Rpc.PendingCount);
        time.Advance(TimeSpan.FromMilliseconds(1));
        var timeout = await caller.ReceiveAsync();
        Assert.Equal(((int)RpcAction.AcceptTimeout, "c1", "slow"), (timeout.Action, timeout.CorrelationId, timeout.Name));
    }

    [Fact]
    public async Task No_response_within_the_response_timeout_is_response_timeout_and_a_caller_may_ask_for_less()
    {
        var (node, time, provider, caller) = await FakeTimeNodeAsync();
        await using var _n = node;
        await using var _p = provider;
        await using var _c = caller;
        await caller.SendAsync(Rpc(RpcAction.Request, "slow", "c1", "1"));
        var request = await provider.ReceiveAsync();
        await provider.SendAsync(Rpc(RpcAction.Accept, "slow", request.CorrelationId));
        Assert.Equal((int)RpcAction.Accept, (await caller.ReceiveAsync()).Action);
        time.Advance(TimeSpan.FromMilliseconds(9_999));
        Assert.Equal(1, node.Engine.Rpc.PendingCount);
        time.Advance(TimeSpan.FromMilliseconds(1));
        var timedOut = await caller.ReceiveAsync();
        Assert.Equal(((int)RpcAction.ResponseTimeout, "c1"), (timedOut.Action, timedOut.CorrelationId));

        await caller.SendAsync(Rpc(RpcAction.Request, "slow", "c2", "1") with { RequestTimeout = 250 });
        var second = await provider.ReceiveAsync();
        await provider.SendAsync(Rpc(RpcAction.Accept, "slow", second.CorrelationId));
        await caller.ReceiveAsync();
        time.Advance(TimeSpan.FromMilliseconds(250));
        var shorter = await caller.ReceiveAsync();
        Assert.Equal(((int)RpcAction.ResponseTimeout, "c2"), (shorter.Action, shorter.CorrelationId));
        // The late response finds no call.
        await provider.SendAsync(Rpc(RpcAction.Response, "slow", second.CorrelationId, "1"));
        Assert.Equal((int)RpcAction.InvalidRpcCorrelationId, (await provider.ReceiveAsync()).Action);
    }
}
