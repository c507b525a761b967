namespace StateMesh.Redis.Tests;

/// <summary>
/// deepstream's own multi-server end-to-end scenarios (the deepstream.io-e2e features), restated for the official
/// client in tests/conformance/cluster-scenarios.mjs, against three StateMesh.Server nodes on one redis-server; and
/// nodes that go down while clients are connected (stopped, or killed with kill -9) and come back on their ports.
/// </summary>
/// <remarks>The class has a cluster of its own, so that its restarts never disturb the conformance tests.</remarks>
[Collection(ClusterConformanceCollection.Name)]
public sealed class ClusterE2eTests(ClusterE2eTests.Fixture cluster) : IClassFixture<ClusterE2eTests.Fixture>
{
    private const string Script = "cluster-scenarios.mjs";
    private static readonly TimeSpan ScenarioTimeout = TimeSpan.FromSeconds(30);
    // A node that goes down is started again, a dotnet process's start on a busy machine.
    private static readonly TimeSpan RestartScenarioTimeout = TimeSpan.FromSeconds(90);

    public sealed class Fixture : ClusterOverRedisFixture
    {
        // deepstream's e2e servers give up on a provider that never responds quickly; so do these (RESPONSE_TIMEOUT).
        protected override IEnumerable<string> NodeSettings => ["--StateMesh:Rpc:ResponseTimeout=00:00:01"];
    }

    [Theory]
    // events/events.feature
    [InlineData("events-all-receive")]
    [InlineData("events-unsubscribe")]
    [InlineData("events-every-publisher")]
    // records/record.feature
    [InlineData("records-local-copy")]
    [InlineData("records-set-path")]
    [InlineData("records-subscribe-full")]
    [InlineData("records-subscribe-path")]
    [InlineData("records-unsubscribe")]
    [InlineData("records-delete")]
    [InlineData("records-delete-recreate")]
    // records/record-head.feature, record-has.feature, record-snapshot.feature
    [InlineData("records-remote-head")]
    [InlineData("records-remote-has")]
    [InlineData("records-remote-snapshot")]
    // records/record-setData.feature, record-writeAcknowledgement.feature, list.feature
    [InlineData("records-set-data-unsubscribed")]
    [InlineData("records-set-data-creates")]
    [InlineData("records-write-ack")]
    [InlineData("lists-entries")]
    // Ours: writes from every node at one version; exactly one wins.
    [InlineData("records-concurrent-writes")]
    // rpcs/rpcs.feature
    [InlineData("rpc-call-from-every-server")]
    [InlineData("rpc-reroute-after-reject")]
    [InlineData("rpc-only-provider-rejects")]
    [InlineData("rpc-all-providers-reject")]
    [InlineData("rpc-never-responds")]
    [InlineData("rpc-local-provider-first")]
    [InlineData("rpc-local-rejects-remote-answers")]
    [InlineData("rpc-provider-unprovides")]
    // presence/presence-global.feature, presence-individual.feature, presence-query*.feature
    [InlineData("presence-login-seen-on-every-server")]
    [InlineData("presence-logins-from-other-servers")]
    [InlineData("presence-logout-seen-on-every-server")]
    [InlineData("presence-logouts-from-other-servers")]
    [InlineData("presence-user-login-seen-on-every-server")]
    [InlineData("presence-user-logins-from-other-servers")]
    [InlineData("presence-user-logout-seen-on-every-server")]
    [InlineData("presence-query-all")]
    [InlineData("presence-query-users")]
    public Task Deepstreams_multi_server_scenarios_pass_across_three_nodes(string scenario) =>
        cluster.RunScenarioAsync(Script, scenario, ScenarioTimeout);

    [Theory]
    // Ours: events, records, RPC and presence around one node going down and coming back.
    [InlineData("node-goes-down-and-comes-back", NodeDown.Stopped)]
    [InlineData("node-goes-down-and-comes-back", NodeDown.Killed)]
    // events/events-connection.feature
    [InlineData("events-server-restarts", NodeDown.Stopped)]
    [InlineData("events-all-servers-restart", NodeDown.Killed)]
    // records/record-connection.feature
    [InlineData("records-local-copy-across-restart", NodeDown.Stopped)]
    [InlineData("records-remote-wins", NodeDown.Killed)]
    // rpcs/rpc-reconnectivity.feature (its first two scenarios share one restart)
    [InlineData("rpc-provides-across-restart", NodeDown.Stopped)]
    [InlineData("rpc-provide-before-cluster-back", NodeDown.Killed)]
    // presence/presence-reconnectivity.feature (its six scenarios share one restart)
    [InlineData("presence-subscriptions-across-restart", NodeDown.Killed)]
    // login/login-reconnectivity.feature
    [InlineData("login-reconnect-unchanged-client-data", NodeDown.Killed)]
    public Task Clients_carry_on_while_a_node_is_down_and_reconnect_when_it_comes_back(string scenario, NodeDown down) =>
        cluster.RunScenarioAsync(Script, scenario, RestartScenarioTimeout, down);

    // events/events-listen.feature: one active provider per name across the cluster, whichever nodes the listeners and
    // the subscribers are on.
    [Theory]
    [InlineData("listen-accepts-two-names", null)]
    [InlineData("listen-unlisten-and-listen-again", null)]
    [InlineData("listen-first-rejects-second-accepts", null)]
    [InlineData("listen-one-provider-of-two", null)]
    [InlineData("listen-publisher-on-other-server", null)]
    [InlineData("listen-three-publishers-two-reject", null)]
    [InlineData("listen-four-publishers-three-reject", null)]
    [InlineData("listen-provider-unlistens-other-takes-over", null)]
    [InlineData("listen-removed-when-last-subscriber-anywhere-leaves", null)]
    [InlineData("listen-reject-passes-to-other-server", null)]
    [InlineData("listen-record-provider-across-servers", null)]
    [InlineData("listen-provider-server-restarts", NodeDown.Stopped)]
    public Task Listening_works_across_nodes_as_in_deepstream(string scenario, NodeDown? down) =>
        cluster.RunScenarioAsync(Script, scenario, down is null ? ScenarioTimeout : RestartScenarioTimeout, down);
}
