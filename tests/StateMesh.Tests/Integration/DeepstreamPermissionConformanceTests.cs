using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>
/// The official deepstream client against the real StateMesh.Server with the conformance rule set in force
/// (tests/conformance/permission-scenarios.mjs, tests/conformance/permissions/complex.yml): allowed and denied publish,
/// subscribe, provide, request, read, write and delete, owner rules, data against oldData, a _() lookup, a role from
/// serverData, a rule cut off at its limits.
/// </summary>
public sealed class DeepstreamPermissionConformanceTests(DeepstreamPermissionConformanceTests.ServerFixture server) : IClassFixture<DeepstreamPermissionConformanceTests.ServerFixture>
{
    public sealed class ServerFixture : IAsyncLifetime
    {
        private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("statemesh-permissions-");

        internal ServerProcess Server { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            await Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "conformance"));
            var args = new List<string>
            {
                $"--StateMesh:DataDirectory={_data.FullName}",
                $"--StateMesh:Permissions:Path={Path.Combine(Repository.Root, "tests", "conformance", "permissions", "complex.yml")}",
            };
            foreach (var (user, role) in new[] { ("ana", "admin"), ("bob", "user"), ("cy", "user") })
            {
                args.Add($"--StateMesh:Users:{user}:PasswordHash={Auth.PasswordHash.Create(user + "-pw", 1000)}");
                args.Add($"--StateMesh:Users:{user}:ServerData={{\"role\":\"{role}\"}}");
            }
            Server = await ServerProcess.StartAsync([.. args]);
        }

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            _data.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData("owner-writes")]
    [InlineData("data-and-old-data")]
    [InlineData("cross-reference")]
    [InlineData("read-create-delete")]
    [InlineData("events")]
    [InlineData("rpc")]
    [InlineData("presence")]
    [InlineData("rule-error")]
    public async Task The_official_client_is_allowed_and_denied_as_the_rules_say(string scenario)
    {
        var url = $"ws://127.0.0.1:{server.Server.HttpPort}/deepstream";
        var (code, output) = await Repository.RunAsync("node", ["permission-scenarios.mjs", url, scenario], Path.Combine(Repository.Root, "tests", "conformance"), TimeSpan.FromSeconds(60));
        Assert.True(code == 0, output);
        Assert.Contains("OK " + scenario, output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_http_api_checks_every_operation_with_the_tokens_user_and_serverData()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{server.Server.HttpPort}") };
        async Task<string> TokenAsync(string user)
        {
            var auth = await http.PostAsync(new Uri("/api/auth", UriKind.Relative), new StringContent($$"""{"username":"{{user}}","password":"{{user}}-pw"}"""));
            Assert.Equal(System.Net.HttpStatusCode.OK, auth.StatusCode);
            return System.Text.Json.Nodes.JsonNode.Parse(await auth.Content.ReadAsStringAsync())!["token"]!.GetValue<string>();
        }
        async Task<System.Text.Json.Nodes.JsonNode> BatchAsync(string token, string operations)
        {
            var response = await http.PostAsync(new Uri("/api", UriKind.Relative), new StringContent($$"""{"token":"{{token}}","body":[{{operations}}]}"""));
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            return System.Text.Json.Nodes.JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        }
        var bob = await TokenAsync("bob");
        var ana = await TokenAsync("ana");
        var asBob = await BatchAsync(bob, """
            {"topic":"record","action":"write","recordName":"profile/bob","data":{"a":1}},
            {"topic":"record","action":"write","recordName":"profile/ana","data":{"a":1}},
            {"topic":"record","action":"read","recordName":"ana-only"},
            {"topic":"event","action":"emit","eventName":"admin-only","data":1},
            {"topic":"rpc","action":"make","rpcName":"closed","data":1}
            """);
        Assert.Equal("PARTIAL_SUCCESS", asBob["result"]!.GetValue<string>());
        var body = asBob["body"]!.AsArray();
        Assert.Equal([true, false, false], body.Take(3).Select(r => r!["success"]!.GetValue<bool>()));
        Assert.Equal("MESSAGE_DENIED", body[1]!["errorEvent"]!.GetValue<string>());
        Assert.Equal("MESSAGE_DENIED", body[4]!["errorEvent"]!.GetValue<string>());
        // Ana's token carries her serverData (role admin): she may publish admin-only; her own profile is hers to write.
        var asAna = await BatchAsync(ana, """
            {"topic":"event","action":"emit","eventName":"admin-only","data":1},
            {"topic":"record","action":"write","recordName":"profile/ana","data":{"http":2}},
            {"topic":"record","action":"read","recordName":"profile/ana"}
            """);
        Assert.Equal("SUCCESS", asAna["result"]!.GetValue<string>());
        Assert.Equal("{\"http\":2}", asAna["body"]!.AsArray()[2]!["data"]!.ToJsonString());
        Assert.Equal("MESSAGE_DENIED", body[3]!["errorEvent"]!.GetValue<string>());
    }
}
