// A chat between terminals through a StateMesh node.
//   terminal 1: dotnet run --project src/StateMesh.Server
//   terminal 2: dotnet run --project samples/Chat -- ana
//   terminal 3: dotnet run --project samples/Chat -- bob
// Type a line and press Enter; the others see it. Ctrl+D (end of input) leaves.
using StateMesh.Client;

var name = args.Length > 0 ? args[0] : Environment.UserName;
var address = args.Length > 1 ? args[1] : "tcp://127.0.0.1:6021";
const string Room = "chat/lobby";

await using var client = await StateMeshClient.ConnectAsync(address, new { username = name });
using var states = client.ConnectionStates.Subscribe(state => Console.WriteLine($"[{state}]"));
using var messages = await client.Events.SubscribeAsync<ChatLine>(Room, line => Console.WriteLine($"{line.From}: {line.Text}"));
await client.Events.PublishAsync(Room, new ChatLine(name, "joined"));
Console.WriteLine($"Connected to {address} as {name}. Type a message and press Enter.");

while (Console.ReadLine() is { } text)
{
    if (text.Length == 0)
    {
        continue;
    }
    try
    {
        await client.Events.PublishAsync(Room, new ChatLine(name, text));
    }
    catch (StateMeshOfflineException ex)
    {
        Console.WriteLine($"[not sent: {ex.Message}]");
    }
}
if (client.ConnectionState == ConnectionState.Open)
{
    await client.Events.PublishAsync(Room, new ChatLine(name, "left"));
}

internal sealed record ChatLine(string From, string Text);
