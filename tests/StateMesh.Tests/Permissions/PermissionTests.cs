using System.Reactive.Linq;
using System.Reactive.Threading.Tasks;
using System.Text.Json.Nodes;
using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Permissions;

/// <summary>
/// A node with the conformance rule set (tests/conformance/permissions/complex.yml) and the .NET client over TCP:
/// allowed actions go through, denied ones are told MESSAGE_DENIED, change nothing and reach nobody; a rule that fails
/// is MESSAGE_PERMISSION_ERROR; the connection and everyone else go on.
/// </summary>
public sealed class PermissionTests : IAsyncLifetime
{
    private static readonly string RulesFile = Path.Combine(Repository.Root, "tests", "conformance", "permissions", "complex.yml");
    private StateMeshNode _node = null!;
    private StateMeshClient _ana = null!;
    private StateMeshClient _bob = null!;

    private static StateMeshClientOptions Options => new() { AckTimeout = TimeSpan.FromSeconds(10), MaxReconnectAttempts = 0 };

    public async Task InitializeAsync()
    {
        _node = await TestNode.StartAsync(o =>
        {
            o.Permissions.Path = RulesFile;
            o.Permissions.Reload = false;
            o.Users["ana"] = new StateMeshUserOptions { Password = "ana-pw", ServerData = """{"role":"admin"}""" };
            o.Users["bob"] = new StateMeshUserOptions { Password = "bob-pw", ServerData = """{"role":"user"}""" };
        });
        _ana = await StateMeshClient.ConnectAsync(_node.TcpAddress!.ToString(), new { username = "ana", password = "ana-pw" }, Options);
        _bob = await StateMeshClient.ConnectAsync(_node.TcpAddress!.ToString(), new { username = "bob", password = "bob-pw" }, Options);
    }

    public async Task DisposeAsync()
    {
        await _ana.DisposeAsync();
        await _bob.DisposeAsync();
        await _node.DisposeAsync();
    }

    private static JsonObject Json(string text) => JsonNode.Parse(text)!.AsObject();

    [Fact]
    public async Task Only_the_owner_writes_a_profile_a_denied_write_changes_nothing_and_tells_no_subscriber()
    {
        Assert.True((await _ana.Records.SetDataWithAckAsync("profile/ana", Json("""{"name":"Ana"}"""))).Succeeded);
        await using var watched = await _ana.Records.GetAsync<JsonObject>("profile/ana");
        var changes = new List<string>();
        using var subscription = watched.Changes.Subscribe(v => { lock (changes) { changes.Add(v?.ToJsonString() ?? "null"); } });

        var denied = await _bob.Records.SetDataWithAckAsync("profile/ana", Json("""{"name":"Mallory"}"""));
        Assert.False(denied.Succeeded);
        Assert.Contains("MessageDenied", denied.Error, StringComparison.Ordinal);
        var patch = await _bob.Records.SetDataWithAckAsync("profile/ana", "name", "Mallory");
        Assert.Contains("MessageDenied", patch.Error, StringComparison.Ordinal);

        // Bob may read it (read: true), and sees Ana's data at its first version.
        var seen = await _bob.Records.SnapshotAsync<JsonObject>("profile/ana");
        Assert.Equal(("Ana", 1), (seen!.Value["name"]!.GetValue<string>(), seen.Version));
        Assert.True((await _ana.Records.SetDataWithAckAsync("profile/ana", "name", "Ana B.")).Succeeded);
        await Client.ClientEventsTests.WaitUntilAsync(() => { lock (changes) { return changes.Any(c => c.Contains("Ana B.", StringComparison.Ordinal)); } });
        lock (changes)
        {
            Assert.DoesNotContain(changes, c => c.Contains("Mallory", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task A_write_rule_sees_the_merged_data_and_the_old_data()
    {
        // Made empty first (create on read): for a record that does not exist, oldData is null and oldData.count an error.
        await using (var created = await _bob.Records.GetAsync<JsonObject>("counter/up"))
        {
            Assert.True((await created.SetWithAckAsync(Json("""{"count":1,"label":"x"}"""))).Succeeded);
        }
        Assert.Contains("MessagePermissionError", (await _bob.Records.SetDataWithAckAsync("counter/down", Json("""{"count":1}"""))).Error, StringComparison.Ordinal);
        Assert.True((await _bob.Records.SetDataWithAckAsync("counter/up", "count", 2)).Succeeded); // data: the merged record
        var down = await _bob.Records.SetDataWithAckAsync("counter/up", "count", 1);
        Assert.Contains("MessageDenied", down.Error, StringComparison.Ordinal);
        var now = await _bob.Records.SnapshotAsync<JsonObject>("counter/up");
        Assert.Equal(("""{"count":2,"label":"x"}""", 2), (now!.Value.ToJsonString(), now.Version));
    }

    [Fact]
    public async Task A_cross_reference_reads_the_current_record_and_the_rule_runs_again_once_it_changes()
    {
        Assert.True((await _ana.Records.SetDataWithAckAsync("stock/apple", Json("""{"count":0}"""))).Succeeded);
        var none = await _bob.Records.SetDataWithAckAsync("order/1", Json("""{"item":"apple"}"""));
        Assert.Contains("MessageDenied", none.Error, StringComparison.Ordinal);
        Assert.Equal(-1, await _bob.Records.HeadAsync("order/1"));
        Assert.True((await _ana.Records.SetDataWithAckAsync("stock/apple", "count", 3)).Succeeded);
        Assert.True((await _bob.Records.SetDataWithAckAsync("order/1", Json("""{"item":"apple"}"""))).Succeeded);
        // An item with no stock record: _() is null, null.count is a rule error, not a denial.
        var failed = await _bob.Records.SetDataWithAckAsync("order/2", Json("""{"item":"pear"}"""));
        Assert.Contains("MessagePermissionError", failed.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reads_creates_and_deletes_follow_their_rules()
    {
        var read = await Assert.ThrowsAsync<StateMeshProtocolException>(() => _bob.Records.SnapshotAsync<JsonObject>("ana-only"));
        Assert.Contains("MessageDenied", read.Message, StringComparison.Ordinal);
        var create = await Assert.ThrowsAsync<StateMeshProtocolException>(() => _bob.Records.GetAsync<JsonObject>("ana-only"));
        Assert.Contains("MessageDenied", create.Message, StringComparison.Ordinal);
        await using (var mine = await _ana.Records.GetAsync<JsonObject>("ana-only"))
        {
            Assert.True((await mine.SetWithAckAsync(Json("""{"secret":1}"""))).Succeeded);
        }
        Assert.Contains("MessageDenied", (await _ana.Records.SetDataWithAckAsync("readonly", Json("{}"))).Error, StringComparison.Ordinal);

        Assert.True((await _bob.Records.SetDataWithAckAsync("person/Ada/Lovelace", Json("{}"))).Succeeded);
        Assert.True((await _bob.Records.SetDataWithAckAsync("person/Alan/Turing", Json("{}"))).Succeeded);
        await using (var ada = await _bob.Records.GetAsync<JsonObject>("person/Ada/Lovelace"))
        {
            await ada.DeleteAsync();
        }
        await using (var alan = await _bob.Records.GetAsync<JsonObject>("person/Alan/Turing"))
        {
            var refused = await Assert.ThrowsAsync<StateMeshProtocolException>(() => alan.DeleteAsync());
            Assert.Contains("MessageDenied", refused.Message, StringComparison.Ordinal);
        }
        Assert.Equal(-1, await _bob.Records.HeadAsync("person/Ada/Lovelace"));
        Assert.Equal(1, await _bob.Records.HeadAsync("person/Alan/Turing"));
    }

    [Fact]
    public async Task Events_follow_the_publish_and_subscribe_rules_and_a_denied_event_reaches_nobody()
    {
        var received = new List<string>();
        using var admin = await _bob.Events.SubscribeAsync<string>("admin-only", v => { lock (received) { received.Add(v); } });
        await _bob.Events.PublishAsync("admin-only", "from bob");      // bob's role is user: denied
        await _ana.Events.PublishAsync("admin-only", "from ana");      // ana's serverData role is admin
        await Client.ClientEventsTests.WaitUntilAsync(() => { lock (received) { return received.Count > 0; } });
        await _ana.Events.PublishAsync("admin-only", "again");
        await Client.ClientEventsTests.WaitUntilAsync(() => { lock (received) { return received.Count > 1; } });
        lock (received)
        {
            Assert.Equal(["from ana", "again"], received);
        }

        var closed = await Assert.ThrowsAsync<StateMeshProtocolException>(() => _ana.Events.SubscribeAsync<string>("closed/x", _ => { }));
        Assert.Contains("MessageDenied", closed.Message, StringComparison.Ordinal);
        var toBob = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var bobHears = await _bob.Events.SubscribeAsync<string>("ana-to-bob/1", v => toBob.TrySetResult(v));
        await Assert.ThrowsAsync<StateMeshProtocolException>(() => _ana.Events.SubscribeAsync<string>("ana-to-bob/1", _ => { }));
        await _ana.Events.PublishAsync("ana-to-bob/1", "hi bob");
        Assert.Equal("hi bob", await toBob.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Rpc_follows_the_provide_and_request_rules()
    {
        await Assert.ThrowsAsync<StateMeshProtocolException>(() => _bob.Rpc.ProvideAsync<int, int>("ana-provides-bob-requests", (x, _) => Task.FromResult(x)));
        await using var provided = await _ana.Rpc.ProvideAsync<int, int>("ana-provides-bob-requests", (x, _) => Task.FromResult(2 * x));
        Assert.Equal(42, await _bob.Rpc.MakeAsync<int, int>("ana-provides-bob-requests", 21));
        var denied = await Assert.ThrowsAsync<RpcException>(() => _ana.Rpc.MakeAsync<int, int>("ana-provides-bob-requests", 21));
        Assert.Contains("MessageDenied", denied.Message, StringComparison.Ordinal);

        await using var names = await _ana.Rpc.ProvideAsync<JsonObject, string>("needs-full-name", (p, _) => Task.FromResult($"{p["first"]} {p["last"]}"));
        Assert.Equal("Ada Lovelace", await _bob.Rpc.MakeAsync<JsonObject, string>("needs-full-name", Json("""{"first":"Ada","last":"Lovelace"}""")));
        await Assert.ThrowsAsync<RpcException>(() => _bob.Rpc.MakeAsync<JsonObject, string>("needs-full-name", Json("""{"first":"Ada"}""")));
    }

    [Fact]
    public async Task Presence_follows_the_allow_rule()
    {
        Assert.Contains("ana", await _bob.Presence.QueryAllAsync());
        await Assert.ThrowsAsync<StateMeshProtocolException>(() => _ana.Presence.QueryAllAsync());
    }

    [Fact]
    public async Task A_rule_past_its_limits_is_a_permission_error_and_the_node_goes_on_serving_everyone()
    {
        for (var i = 0; i < 8; i++)
        {
            Assert.True((await _ana.Records.SetDataWithAckAsync(((char)('a' + i)).ToString(), Json("""{"x":"y"}"""))).Succeeded);
        }
        // Eight records are read by the rule, in runs of one more each: past three runs it is cut off.
        var error = await Assert.ThrowsAsync<StateMeshProtocolException>(() => _bob.Records.SnapshotAsync<JsonObject>("loops/1"));
        Assert.Contains("MessagePermissionError", error.Message, StringComparison.Ordinal);
        Assert.True((await _bob.Records.SetDataWithAckAsync("still/works", Json("{}"))).Succeeded);
        Assert.Equal(1, await _ana.Records.HeadAsync("still/works"));
    }

    [Fact]
    public async Task Listening_and_notify_follow_their_rules_and_a_bulk_subscription_is_refused_name_by_name()
    {
        var recordOffers = _bob.Records.Listen("locked");
        var refusedListen = await Assert.ThrowsAnyAsync<Exception>(() => recordOffers.FirstAsync().ToTask().WaitAsync(TimeSpan.FromSeconds(3)));
        Assert.IsNotType<TimeoutException>(refusedListen);

        await Assert.ThrowsAsync<StateMeshProtocolException>(() => _ana.Records.NotifyAsync(["counter/up"]));
        await _bob.Records.NotifyAsync(["counter/up"]);

        // Two names in one SUBSCRIBE: the refused one fails, the allowed one is served.
        var open = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var both = Task.WhenAll(
            _ana.Events.SubscribeAsync<string>("closed/a", _ => { }),
            _ana.Events.SubscribeAsync<string>("open/a", v => open.TrySetResult(v)));
        await Assert.ThrowsAsync<StateMeshProtocolException>(() => both);
        await _bob.Events.PublishAsync("open/a", "served");
        Assert.Equal("served", await open.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    private async Task<RawClient> RawBobAsync() =>
        await RawClient.LoginAsync(_node.TcpEndPoint!.Port, """{"username":"bob","password":"bob-pw"}""");

    [Fact]
    public async Task A_delete_naming_a_second_record_in_names_deletes_only_what_was_checked()
    {
        Assert.True((await _ana.Records.SetDataWithAckAsync("profile/ana", Json("""{"name":"Ana"}"""))).Succeeded);
        Assert.True((await _bob.Records.SetDataWithAckAsync("profile/bob", Json("""{"name":"Bob"}"""))).Succeeded);
        await using var raw = await RawBobAsync();
        await raw.SendAsync(new StateMesh.Protocol.Message { Topic = StateMesh.Protocol.Topic.Record, Action = (int)StateMesh.Protocol.RecordAction.Delete, Name = "profile/ana", Names = ["profile/bob"] });
        var refused = await raw.ReceiveUntilAsync(m => m.IsError);
        Assert.Equal(((int)StateMesh.Protocol.RecordAction.MessageDenied, "profile/ana"), (refused.Action, refused.Name));
        Assert.True(await _ana.Records.HasAsync("profile/ana"));
    }

    [Fact]
    public async Task A_refused_writer_learns_nothing_of_the_record_from_a_bad_path_or_a_conflict()
    {
        Assert.True((await _ana.Records.SetDataWithAckAsync("profile/ana", Json("""{"name":"Ana","tags":["a"]}"""))).Succeeded);
        await using var raw = await RawBobAsync();
        // A path that cannot apply (name is a string): MESSAGE_DENIED, not the error that would describe the data.
        await raw.SendAsync(new StateMesh.Protocol.Message { Topic = StateMesh.Protocol.Topic.Record, Action = (int)StateMesh.Protocol.RecordAction.Patch, Name = "profile/ana", Version = 2, Path = "name.first", Data = "\"x\""u8.ToArray() });
        var denied = await raw.ReceiveUntilAsync(m => m.IsError);
        Assert.Equal((int)StateMesh.Protocol.RecordAction.MessageDenied, denied.Action);
        Assert.Null(denied.Data);

        // A write-only record: a stale write gets VERSION_EXISTS without the data the writer may not read.
        Assert.True((await _ana.Records.SetDataWithAckAsync("dropbox/1", Json("""{"secret":"s3"}"""))).Succeeded);
        await raw.SendAsync(new StateMesh.Protocol.Message { Topic = StateMesh.Protocol.Topic.Record, Action = (int)StateMesh.Protocol.RecordAction.Update, Name = "dropbox/1", Version = 1, Data = """{"mine":1}"""u8.ToArray() });
        var conflict = await raw.ReceiveUntilAsync(m => m.IsError);
        Assert.Equal(((int)StateMesh.Protocol.RecordAction.VersionExists, 1), (conflict.Action, conflict.Version));
        Assert.Equal(0, conflict.Data?.Length ?? 0);
    }

    [Fact]
    public async Task Data_a_rule_cannot_read_is_a_permission_error_and_the_connection_goes_on()
    {
        // A lone surrogate in a string: valid JSON to store, not a string .NET can make (so sent as raw bytes).
        await using var raw = await RawBobAsync();
        await raw.SendAsync(new StateMesh.Protocol.Message { Topic = StateMesh.Protocol.Topic.Record, Action = (int)StateMesh.Protocol.RecordAction.CreateAndUpdate, Name = "stock/odd", Version = -1, Data = """{"count":1,"note":"\udc00"}"""u8.ToArray() });
        await Client.ClientEventsTests.WaitUntilAsync(() => _ana.Records.HeadAsync("stock/odd").Result == 1);
        var odd = await _bob.Records.SetDataWithAckAsync("order/odd", Json("""{"item":"odd"}"""));
        Assert.True(odd.Succeeded, odd.Error); // count is read, the odd note is not touched
        await raw.SendAsync(new StateMesh.Protocol.Message { Topic = StateMesh.Protocol.Topic.Event, Action = (int)StateMesh.Protocol.EventAction.Emit, Name = "city/x", Data = """{"address":{"city":"\udc00"}}"""u8.ToArray() });
        var failed = await raw.ReceiveUntilAsync(m => m.IsError);
        Assert.Equal((int)StateMesh.Protocol.EventAction.MessagePermissionError, failed.Action);
        Assert.Null(failed.Data); // the reason is in the node's log only
        Assert.True((await _bob.Records.SetDataWithAckAsync("still/fine", Json("{}"))).Succeeded);
    }
}
