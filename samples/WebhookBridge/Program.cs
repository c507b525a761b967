// A bridge between the TodoMvc list and a chat service with webhooks (Slack's incoming and outgoing webhooks).
//   dotnet run --project samples/TodoMvc -- --urls http://127.0.0.1:5080                 (the todo list)
//   dotnet run --project samples/WebhookBridge -- --urls http://127.0.0.1:5090 \
//     --Bridge:ChatWebhookUrl=https://hooks.slack.com/services/... --Bridge:SigningSecret=<the app's signing secret>
// A todo added in a browser is posted to the chat; "todo: buy milk" said in the chat (an outgoing webhook or a slash
// command pointed at http://<bridge>/slack) is added to the list.
using StateMesh.Client;
using WebhookBridge;

var builder = WebApplication.CreateBuilder(args);
var options = builder.Configuration.GetSection("Bridge").Get<BridgeOptions>() ?? new BridgeOptions();
if (options.ChatWebhookUrl is null || (options.SigningSecret is not { Length: > 0 } && options.Token is not { Length: > 0 }))
{
    Console.Error.WriteLine("WebhookBridge: set --Bridge:ChatWebhookUrl and --Bridge:SigningSecret (or --Bridge:Token)");
    return 2;
}
builder.Services.AddSingleton(options);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<SlackInbound>();
var app = builder.Build();

await using var client = await StateMeshClient.ConnectAsync(options.StateMesh, new { username = "webhook-bridge" },
    new StateMeshClientOptions { MaxReconnectAttempts = int.MaxValue });
await using var todos = await TodoList.OpenAsync(client);
using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
var poster = new ChatPoster(todos, options, http, app.Services.GetRequiredService<ILogger<ChatPoster>>());

app.MapPost("/slack", async (HttpRequest request, SlackInbound slack, CancellationToken cancellationToken) =>
{
    request.EnableBuffering();
    string body;
    using (var reader = new StreamReader(request.Body, leaveOpen: true))
    {
        body = await reader.ReadToEndAsync(cancellationToken);
    }
    request.Body.Position = 0;
    var form = await request.ReadFormAsync(cancellationToken);
    if (slack.Refusal(request.Headers, body, form) is { } refusal)
    {
        return Results.Json(new { text = refusal }, statusCode: StatusCodes.Status401Unauthorized);
    }
    var title = SlackInbound.Title(form);
    if (title.Length == 0)
    {
        return Results.Json(new { text = "Say what to add, for example: todo: buy milk" });
    }
    // Slack waits 3 s for an answer: add within 2.5 s, or answer and let the add finish.
    // A todo from the chat is not posted back to it.
    var adding = todos.AddAsync(title, poster.MarkPosted, CancellationToken.None);
    var added = await Task.WhenAny(adding, Task.Delay(2500, cancellationToken)) == adding;
    if (added)
    {
        await adding;
    }
    return Results.Json(new { text = added ? $"Added \"{title}\" to the todo list" : $"Adding \"{title}\"…" });
});
app.MapGet("/health-check", () => "Healthy");

var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
var posting = Task.Run(() => poster.RunAsync(lifetime.ApplicationStopping));
await app.RunAsync();
try
{
    await posting;
}
catch (OperationCanceledException)
{
}
return 0;
