using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Authentication;

/// <summary>
/// deepstream's login strategies on a real node: the http webhook against a local web server the test starts, JWT
/// bearer tokens signed here (valid, expired, not yet valid, wrong issuer, audience or signature), and users kept as
/// records. Each decides what the client sees (clientData) and what permissions see (serverData as user.data).
/// </summary>
public sealed class AuthStrategyTests
{
    private const string RoleRules = """
        presence: { "*": { allow: true } }
        record: { "*": { create: true, read: true, write: true, delete: true, listen: true, notify: true }, "users/*": { create: false, read: false, write: false, delete: false, listen: false, notify: false } }
        event: { "*": { publish: true, subscribe: true, listen: true }, "admin/*": { publish: "user.data.role === 'admin'" } }
        rpc: { "*": { provide: true, request: true } }
        """;

    private static StateMeshClientOptions Options => new() { MaxReconnectAttempts = 0, AckTimeout = TimeSpan.FromSeconds(10) };

    private static async Task<StateMeshNode> StartAsync(Action<StateMeshOptions> configure, IEnumerable<StateMesh.Auth.IAuthenticationHandler>? handlers = null)
    {
        var options = new StateMeshOptions { NodeName = $"auth-{Guid.NewGuid():N}" };
        options.Tcp.Enabled = true;
        options.Tcp.Port = 0;
        options.Permissions.Rules = RoleRules;
        configure(options);
        var node = new StateMeshNode(Microsoft.Extensions.Options.Options.Create(options), handlers);
        await node.StartAsync();
        return node;
    }

    private static Task<StateMeshClient> LoginAsync(StateMeshNode node, object authData) =>
        StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), authData, Options);

    /// <summary>
    /// Publishes on admin/news from <paramref name="user"/> and then <paramref name="admin"/>: the listener hears only the
    /// admin's, since the rule reads the role from the login's serverData.
    /// </summary>
    private static async Task OnlyTheAdminIsHeardAsync(StateMeshClient listener, StateMeshClient user, StateMeshClient admin)
    {
        var heard = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = await listener.Events.SubscribeAsync<string>("admin/news", v => heard.TrySetResult(v));
        await user.Events.PublishAsync("admin/news", "from the user");
        await admin.Events.PublishAsync("admin/news", "from the admin");
        Assert.Equal("from the admin", await heard.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    // ---- http ----

    private sealed class Webhook : IAsyncDisposable
    {
        private readonly WebApplication _app;

        public List<(string Body, string? Token, string? ApiKey)> Requests { get; } = [];

        public Func<JsonNode, int, (int Status, string Body, TimeSpan Delay)> Answer { get; set; } = (_, _) => (200, "\"ana\"", TimeSpan.Zero);

        private Webhook(WebApplication app) => _app = app;

        public Uri Url { get; private set; } = null!;

        public static async Task<Webhook> StartAsync()
        {
            var port = Client.ClientEventsTests.FreePort();
            var builder = WebApplication.CreateBuilder();
            builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
            builder.Logging.ClearProviders();
            var app = builder.Build();
            var hook = new Webhook(app) { Url = new Uri($"http://127.0.0.1:{port}/login") };
            app.MapPost("/login", async (HttpContext context) =>
            {
                using var reader = new StreamReader(context.Request.Body);
                var body = await reader.ReadToEndAsync();
                int attempt;
                lock (hook.Requests)
                {
                    hook.Requests.Add((body, context.Request.Headers["token"].FirstOrDefault(), context.Request.Headers["x-api-key"].FirstOrDefault()));
                    attempt = hook.Requests.Count;
                }
                var (status, answer, delay) = hook.Answer(JsonNode.Parse(body)!, attempt);
                if (delay > TimeSpan.Zero)
                {
                    await Task.Delay(delay);
                }
                context.Response.StatusCode = status;
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync(answer);
            });
            await app.StartAsync();
            return hook;
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }

    [Fact]
    public async Task The_webhook_says_who_logs_in_with_client_and_server_data_and_its_refusal_is_the_reason()
    {
        await using var hook = await Webhook.StartAsync();
        hook.Answer = (request, _) => (request["authData"]!["username"]!.GetValue<string>(), request["authData"]!["password"]!.GetValue<string>()) switch
        {
            ("ana", "right") => (200, """{"id":"ana-id","clientData":{"greeting":"hi"},"serverData":{"role":"admin"}}""", TimeSpan.Zero),
            (var name, "right") => (200, $$$"""{"id":"{{{name}}}-id","serverData":{"role":"user"}}""", TimeSpan.Zero),
            _ => (401, """{"reason":"wrong password"}""", TimeSpan.Zero),
        };
        await using var node = await StartAsync(o =>
        {
            o.Auth.Http.EndpointUrl = hook.Url;
            o.Auth.Http.PromoteToHeader = ["token"];
            o.Auth.Http.Headers["x-api-key"] = "k1";
        });
        await using (var ana = await LoginAsync(node, new { username = "ana", password = "right", token = "t-123" }))
        await using (var bob = await LoginAsync(node, new { username = "bob", password = "right" }))
        {
            Assert.Equal("hi", ana.ClientData!.Value.GetProperty("greeting").GetString());
            Assert.Equal(["ana-id"], await bob.Presence.QueryAllAsync());
            await OnlyTheAdminIsHeardAsync(bob, bob, ana);
        }
        var refused = await Assert.ThrowsAsync<StateMeshAuthenticationException>(() => LoginAsync(node, new { username = "ana", password = "wrong" }));
        Assert.Contains("wrong password", refused.Reason, StringComparison.Ordinal);
        var first = hook.Requests[0];
        var sent = JsonNode.Parse(first.Body)!;
        Assert.Equal(("ana", "t-123", "k1"), (sent["authData"]!["username"]!.GetValue<string>(), first.Token, first.ApiKey));
        Assert.StartsWith("127.0.0.1", sent["connectionData"]!["remoteAddress"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_string_answer_is_the_user_id_and_retry_statuses_and_timeouts_are_tried_again()
    {
        await using var hook = await Webhook.StartAsync();
        hook.Answer = (request, attempt) => attempt switch
        {
            1 => (504, "busy", TimeSpan.Zero),
            2 => (200, "\"late\"", TimeSpan.FromSeconds(2)), // past the request timeout: tried again
            _ => (200, $"\"{request["authData"]!["username"]}-id\"", TimeSpan.Zero),
        };
        await using var node = await StartAsync(o =>
        {
            o.Auth.Http.EndpointUrl = hook.Url;
            o.Auth.Http.RequestTimeout = TimeSpan.FromMilliseconds(300);
        });
        await using (var first = await LoginAsync(node, new { username = "first" }))
        await using (var second = await LoginAsync(node, new { username = "second" }))
        {
            Assert.Equal(["first-id"], await second.Presence.QueryAllAsync());
        }
        Assert.True(hook.Requests.Count >= 3);

        hook.Answer = (_, _) => (504, "busy", TimeSpan.Zero);
        var gaveUp = await Assert.ThrowsAsync<StateMeshAuthenticationException>(() => LoginAsync(node, new { username = "whoever" }));
        Assert.Contains("AUTH_RETRY_ATTEMPTS_EXCEEDED", gaveUp.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_webhook_that_does_not_decide_passes_the_login_to_the_next_strategy()
    {
        await using var hook = await Webhook.StartAsync();
        hook.Answer = (_, _) => (403, "no", TimeSpan.Zero);
        await using var node = await StartAsync(o =>
        {
            o.Auth.Http.EndpointUrl = hook.Url;
            o.Auth.Http.ReportInvalidParameters = false;
            o.Auth.Order = ["http", "users"];
            o.Users["carl"] = new StateMeshUserOptions { Password = "carl-pw" };
        });
        await using var carl = await LoginAsync(node, new { username = "carl", password = "carl-pw" });
        Assert.Single(hook.Requests);
    }

    // ---- JWT ----

    private const string Secret = "a-shared-secret-of-at-least-32-bytes!!";

    private static string Token(string secret = Secret, string issuer = "https://issuer.test", string audience = "statemesh", DateTime? expires = null, DateTime? notBefore = null, string sub = "jwt-user", string role = "admin")
    {
        var handler = new JsonWebTokenHandler();
        return handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            Expires = expires ?? DateTime.UtcNow.AddMinutes(5),
            NotBefore = notBefore ?? DateTime.UtcNow.AddMinutes(-1),
            IssuedAt = DateTime.UtcNow.AddMinutes(-1),
            Claims = new Dictionary<string, object> { ["sub"] = sub, ["role"] = role, ["clientData"] = new Dictionary<string, object> { ["name"] = "Jay" } },
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(System.Text.Encoding.UTF8.GetBytes(secret)), SecurityAlgorithms.HmacSha256),
        });
    }

    private static StateMesh.Auth.IAuthenticationHandler Jwt(Action<StateMesh.Jwt.JwtAuthenticationOptions>? configure = null)
    {
        var services = new ServiceCollection();
        var mesh = services.AddStateMesh();
        mesh.AddJwtAuthentication(o =>
        {
            o.Issuers = ["https://issuer.test"];
            o.Audiences = ["statemesh"];
            o.SigningKeys = [new StateMesh.Jwt.JwtSigningKey { Secret = Secret }];
            o.ClockSkew = TimeSpan.FromSeconds(5);
            configure?.Invoke(o);
        });
        return services.BuildServiceProvider().GetServices<StateMesh.Auth.IAuthenticationHandler>().Single();
    }

    [Fact]
    public async Task A_valid_token_logs_in_as_its_subject_with_its_claims_as_server_data()
    {
        await using var node = await StartAsync(_ => { }, [Jwt()]);
        await using var jay = await LoginAsync(node, new { token = Token() });
        await using var kim = await LoginAsync(node, new { token = Token(sub: "kim", role: "user") });
        Assert.Equal("Jay", jay.ClientData!.Value.GetProperty("name").GetString());
        Assert.Equal(["jwt-user"], await kim.Presence.QueryAllAsync());
        await OnlyTheAdminIsHeardAsync(kim, kim, jay); // the role comes from the token's claims
    }

    [Theory]
    [InlineData("expired")]
    [InlineData("not valid yet")]
    [InlineData("wrong issuer")]
    [InlineData("wrong audience")]
    [InlineData("bad signature")]
    [InlineData("malformed")]
    public async Task A_bad_token_is_refused_with_what_is_wrong(string reason)
    {
        var token = reason switch
        {
            "expired" => Token(expires: DateTime.UtcNow.AddMinutes(-2), notBefore: DateTime.UtcNow.AddMinutes(-10)),
            "not valid yet" => Token(notBefore: DateTime.UtcNow.AddMinutes(2), expires: DateTime.UtcNow.AddMinutes(10)),
            "wrong issuer" => Token(issuer: "https://elsewhere.test"),
            "wrong audience" => Token(audience: "someone-else"),
            "bad signature" => Token(secret: "another-secret-that-is-32-bytes-long!!"),
            _ => "not.a.token",
        };
        await using var node = await StartAsync(_ => { }, [Jwt()]);
        var refused = await Assert.ThrowsAsync<StateMeshAuthenticationException>(() => LoginAsync(node, new { token }));
        Assert.Contains("INVALID_TOKEN", refused.Reason, StringComparison.Ordinal);
        Assert.Contains($"\"{reason}\"", refused.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_token_signed_with_an_rsa_key_in_pem_verifies_and_a_login_without_a_token_passes_on()
    {
        using var rsa = RSA.Create(2048);
        var pem = rsa.ExportSubjectPublicKeyInfoPem();
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = "https://issuer.test", Audience = "statemesh", Expires = DateTime.UtcNow.AddMinutes(5),
            Claims = new Dictionary<string, object> { ["sub"] = "rsa-user" },
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(rsa), SecurityAlgorithms.RsaSha256),
        });
        await using var node = await StartAsync(o => o.Users["ana"] = new StateMeshUserOptions { Password = "ana-pw" }, [Jwt(o => o.SigningKeys = [new StateMesh.Jwt.JwtSigningKey { PublicKeyPem = pem }])]);
        await using var signed = await LoginAsync(node, new { token });
        await using var ana = await LoginAsync(node, new { username = "ana", password = "ana-pw" });
        Assert.Contains("rsa-user", await ana.Presence.QueryAllAsync());
    }

    [Fact]
    public async Task A_token_signed_with_an_ecdsa_key_verifies()
    {
        using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = "https://issuer.test", Audience = "statemesh", Expires = DateTime.UtcNow.AddMinutes(5),
            Claims = new Dictionary<string, object> { ["sub"] = "ec-user" },
            SigningCredentials = new SigningCredentials(new ECDsaSecurityKey(ecdsa), SecurityAlgorithms.EcdsaSha256),
        });
        await using var node = await StartAsync(o => o.Users["ana"] = new StateMeshUserOptions { Password = "ana-pw" }, [Jwt(o => o.SigningKeys = [new StateMesh.Jwt.JwtSigningKey { PublicKeyPem = ecdsa.ExportSubjectPublicKeyInfoPem() }])]);
        await using var signed = await LoginAsync(node, new { token });
        await using var ana = await LoginAsync(node, new { username = "ana", password = "ana-pw" });
        Assert.Contains("ec-user", await ana.Presence.QueryAllAsync());
    }

    [Fact]
    public void Storage_users_without_permissions_that_close_their_table_are_refused_at_start()
    {
        var services = new ServiceCollection();
        services.AddStateMesh(mesh => mesh.Configure(o => o.Auth.Storage.Enabled = true));
        var open = Assert.Throws<OptionsValidationException>(() => services.BuildServiceProvider().GetRequiredService<IOptions<StateMeshOptions>>().Value);
        Assert.Contains("users kept as records need permissions", open.Message, StringComparison.Ordinal);

        var leaky = new ServiceCollection();
        leaky.AddStateMesh(mesh => mesh.Configure(o => o.Auth.Storage.Enabled = true).AddPermissions(RoleRules.Replace("read: false, write: false", "read: true, write: false", StringComparison.Ordinal)));
        var ex = Assert.Throws<OptionsValidationException>(() => leaky.BuildServiceProvider().GetRequiredService<IOptions<StateMeshOptions>>().Value);
        Assert.Contains("let clients read the user records", ex.Message, StringComparison.Ordinal);

        var closed = new ServiceCollection();
        closed.AddStateMesh(mesh => mesh.Configure(o => o.Auth.Storage.Enabled = true).AddPermissions(RoleRules));
        Assert.True(closed.BuildServiceProvider().GetRequiredService<IOptions<StateMeshOptions>>().Value.Auth.Storage.Enabled);
    }

    [Fact]
    public void Jwt_options_without_keys_are_refused_at_start()
    {
        var services = new ServiceCollection();
        services.AddStateMesh().AddJwtAuthentication(o => o.Issuers = ["x"]);
        var provider = services.BuildServiceProvider();
        var ex = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<StateMesh.Jwt.JwtAuthenticationOptions>>().Value);
        Assert.Contains("SigningKeys", ex.Message, StringComparison.Ordinal);
    }

    // ---- storage ----

    [Fact]
    public async Task Storage_users_are_records_with_hashes_made_on_first_login_and_checked_after()
    {
        await using var node = await StartAsync(o =>
        {
            o.Auth.Storage.Enabled = true;
            o.Auth.Storage.CreateUser = true;
        });
        await using (var first = await LoginAsync(node, new { username = "dora", password = "dora-pw" }))
        {
        }
        await using var again = await LoginAsync(node, new { username = "dora", password = "dora-pw" });
        await using var other = await LoginAsync(node, new { username = "eli", password = "eli-pw" });
        var online = await other.Presence.QueryAllAsync();
        Assert.Single(online);
        Assert.True(Guid.TryParse(online[0], out _), online[0]); // a new id, not the username
        var refused = await Assert.ThrowsAsync<StateMeshAuthenticationException>(() => LoginAsync(node, new { username = "dora", password = "wrong" }));
        Assert.False(refused.TooManyAttempts);
        // The stored record holds a PBKDF2 hash, never the password, and clients cannot read it (users/* read: false).
        var stored = await node.Engine.Records.ReadForRuleAsync("users/dora");
        var record = JsonNode.Parse(stored!.Value.Data.Span)!;
        Assert.True(StateMesh.Auth.PasswordHash.Verify("dora-pw", record["password"]!.GetValue<string>()));
        Assert.DoesNotContain("dora-pw", System.Text.Encoding.UTF8.GetString(stored.Value.Data.Span), StringComparison.Ordinal);
        await Assert.ThrowsAsync<StateMeshProtocolException>(() => other.Records.SnapshotAsync<JsonObject>("users/dora"));
    }

    [Fact]
    public async Task Without_create_user_an_unknown_user_is_not_let_in()
    {
        await using var node = await StartAsync(o => o.Auth.Storage.Enabled = true);
        await Assert.ThrowsAsync<StateMeshAuthenticationException>(() => LoginAsync(node, new { username = "nobody", password = "x" }));
        Assert.Null(await node.Engine.Records.ReadForRuleAsync("users/nobody"));
    }
}
