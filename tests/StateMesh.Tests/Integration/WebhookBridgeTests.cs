using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>
/// samples/WebhookBridge between the TodoMvc sample (run as a process, its page in headless Chromium) and a fake chat
/// service the test runs: todos added in the page are posted once each, through a 429 with Retry-After and a restart of
/// the bridge; signed posts from the chat become todos the page shows; bad signatures, stale ones and replays are
/// refused.
/// </summary>
public sealed class WebhookBridgeTests : IDisposable
{
    private const string Secret = "8f742231b10e8888abcd99yyyzzz85a5";
    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("statemesh-bridge-");

    /// <summary>The chat's incoming webhook: records what it was sent; answers 429 with Retry-After: 1 to the first post.</summary>
    private sealed class FakeChat : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _answered;

        private FakeChat(WebApplication app, Uri url)
        {
            _app = app;
            Url = url;
        }

        public Uri Url { get; }

        public List<string> Accepted { get; } = [];

        public int Refused;

        public static async Task<FakeChat> StartAsync()
        {
            var port = Client.ClientEventsTests.FreePort();
            var builder = WebApplication.CreateBuilder();
            builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
            builder.Logging.ClearProviders();
            var app = builder.Build();
            var chat = new FakeChat(app, new Uri($"http://127.0.0.1:{port}/hook"));
            app.MapPost("/hook", async (HttpContext context) =>
            {
                using var reader = new StreamReader(context.Request.Body);
                var text = JsonNode.Parse(await reader.ReadToEndAsync())!["text"]!.GetValue<string>();
                if (Interlocked.Increment(ref chat._answered) == 1)
                {
                    Interlocked.Increment(ref chat.Refused);
                    context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
                    context.Response.Headers.RetryAfter = "1";
                    return;
                }
                lock (chat.Accepted)
                {
                    chat.Accepted.Add(text);
                }
                await context.Response.WriteAsync("ok");
            });
            await app.StartAsync();
            return chat;
        }

        public string[] Posts
        {
            get { lock (Accepted) { return [.. Accepted]; } }
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }

    private SampleProcess Bridge(int port, int todoPort, Uri chat) => new("WebhookBridge",
        "--urls", $"http://127.0.0.1:{port}",
        $"--Bridge:StateMesh=ws://127.0.0.1:{todoPort}/statemesh",
        $"--Bridge:ChatWebhookUrl={chat}",
        $"--Bridge:SigningSecret={Secret}",
        $"--Bridge:StateFile={Path.Combine(_work.FullName, "posted.json")}");

    private static async Task PageAsync(int todoPort, string phase, string title)
    {
        var (code, output) = await Repository.RunAsync("node", ["todomvc.mjs", $"http://127.0.0.1:{todoPort}/", phase, title], Path.Combine(Repository.Root, "tests", "e2e"), TimeSpan.FromSeconds(60));
        Assert.True(code == 0 && output.Contains("OK " + phase, StringComparison.Ordinal), output);
    }

    private static HttpRequestMessage SlackPost(int bridgePort, string text, long? timestamp = null, string secret = Secret)
    {
        var body = $"token=ignored&team_domain=example&channel_name=general&user_name=ana&trigger_word=todo&text={Uri.EscapeDataString("todo: " + text)}";
        var ts = (timestamp ?? DateTimeOffset.UtcNow.ToUnixTimeSeconds()).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var signature = "v0=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"v0:{ts}:{body}")));
        var request = new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{bridgePort}/slack") { Content = new StringContent(body, Encoding.UTF8, "application/x-www-form-urlencoded") };
        request.Headers.Add("X-Slack-Request-Timestamp", ts);
        request.Headers.Add("X-Slack-Signature", signature);
        return request;
    }

    private static async Task<HttpRequestMessage> CopyAsync(HttpRequestMessage request)
    {
        var copy = new HttpRequestMessage(request.Method, request.RequestUri) { Content = new StringContent(await request.Content!.ReadAsStringAsync(), Encoding.UTF8, "application/x-www-form-urlencoded") };
        foreach (var (name, values) in request.Headers)
        {
            copy.Headers.Add(name, values);
        }
        return copy;
    }

    [Fact]
    public async Task Todos_reach_the_chat_once_each_and_signed_chat_posts_become_todos_the_page_shows()
    {
        await TodoMvcTests.PreparePageAsync();
        await using var chat = await FakeChat.StartAsync();
        var todoPort = Client.ClientEventsTests.FreePort();
        var bridgePort = Client.ClientEventsTests.FreePort();
        await using var todoMvc = TodoMvcTests.StartTodoMvc(todoPort, Path.Combine(_work.FullName, "todos"));
        await todoMvc.ListeningAsync();
        using var http = new HttpClient();

        await using (var bridge = Bridge(bridgePort, todoPort, chat.Url))
        {
            await bridge.ListeningAsync();
            // A todo added in the page reaches the chat, after the chat's 429 and the second it asked to wait.
            await PageAsync(todoPort, "add", "buy bread");
            await Client.ClientEventsTests.WaitUntilAsync(() => chat.Posts.Length == 1, TimeSpan.FromSeconds(20));
            Assert.Equal(["New todo: buy bread"], chat.Posts);
            Assert.Equal(1, chat.Refused);

            // A signed post from the chat becomes a todo that a fresh page shows, and is not posted back.
            var post = SlackPost(bridgePort, "water the plants");
            var replay = await CopyAsync(post);
            var answer = await http.SendAsync(post);
            Assert.Equal(System.Net.HttpStatusCode.OK, answer.StatusCode);
            Assert.Contains("Added \\\"water the plants\\\"", await answer.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            await PageAsync(todoPort, "expect", "water the plants");

            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await http.SendAsync(replay)).StatusCode);
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await http.SendAsync(SlackPost(bridgePort, "forged", secret: "not-the-secret-at-all-0000000000"))).StatusCode);
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await http.SendAsync(SlackPost(bridgePort, "stale", timestamp: DateTimeOffset.UtcNow.AddMinutes(-6).ToUnixTimeSeconds()))).StatusCode);
            using var unsigned = new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{bridgePort}/slack") { Content = new StringContent("text=todo%3A+x", Encoding.UTF8, "application/x-www-form-urlencoded") };
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await http.SendAsync(unsigned)).StatusCode);
        }

        // Restarted, the bridge posts what is new, and nothing it posted before.
        await using (var again = Bridge(bridgePort, todoPort, chat.Url))
        {
            await again.ListeningAsync();
            await PageAsync(todoPort, "add", "call the plumber");
            await Client.ClientEventsTests.WaitUntilAsync(() => chat.Posts.Length == 2, TimeSpan.FromSeconds(20));
            await Task.Delay(500); // time for a wrong second post of an old todo to arrive
            Assert.Equal(["New todo: buy bread", "New todo: call the plumber"], chat.Posts);
        }
    }

    public void Dispose() => _work.Delete(recursive: true);
}
