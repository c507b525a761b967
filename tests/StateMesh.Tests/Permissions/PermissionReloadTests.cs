using Microsoft.Extensions.Logging;
using System.Text.Json.Nodes;
using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Permissions;

/// <summary>The permissions file is read again when it changes; a bad file is refused and the rules in force stay.</summary>
public sealed class PermissionReloadTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("statemesh-permissions-");

    private string FilePath => Path.Combine(_directory.FullName, "permissions.yml");

    private static string Rules(string write) => $$"""
        presence: { "*": { allow: true } }
        event: { "*": { publish: true, subscribe: true, listen: true } }
        rpc: { "*": { provide: true, request: true } }
        record: { "*": { create: true, read: true, write: {{write}}, delete: true, listen: true, notify: true } }
        """;

    [Fact]
    public async Task A_changed_file_applies_to_the_next_action_and_a_broken_one_leaves_the_old_rules()
    {
        await File.WriteAllTextAsync(FilePath, Rules("true"));
        var logs = new CapturingLoggerProvider();
        var options = new StateMeshOptions { NodeName = $"reload-{Guid.NewGuid():N}" };
        options.Tcp.Enabled = true;
        options.Tcp.Port = 0;
        options.Permissions.Path = FilePath;
        await using var node = new StateMeshNode(Microsoft.Extensions.Options.Options.Create(options), loggerFactory: LoggerFactory.Create(b => b.AddProvider(logs)));
        await node.StartAsync();
        await using var client = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = "ana" });
        Assert.True((await client.Records.SetDataWithAckAsync("r", new JsonObject { ["n"] = 1 })).Succeeded);

        await File.WriteAllTextAsync(FilePath, Rules("\"data.n > 5\""));
        await Client.ClientEventsTests.WaitUntilAsync(() => node.Engine.Permissions.Reloads == 1, TimeSpan.FromSeconds(15));
        Assert.Contains("MessageDenied", (await client.Records.SetDataWithAckAsync("r", new JsonObject { ["n"] = 2 })).Error, StringComparison.Ordinal);
        Assert.True((await client.Records.SetDataWithAckAsync("r", new JsonObject { ["n"] = 6 })).Succeeded);

        await File.WriteAllTextAsync(FilePath, Rules("\"data.n >\""));
        await Client.ClientEventsTests.WaitUntilAsync(() => logs.Lines.Any(l => l.Contains("Permissions not reloaded", StringComparison.Ordinal)));
        Assert.Contains(logs.Lines, l => l.Contains("Permissions not reloaded", StringComparison.Ordinal) && l.Contains("record \"*\" write", StringComparison.Ordinal) && l.Contains("ends too early", StringComparison.Ordinal));
        Assert.Equal(1, node.Engine.Permissions.Reloads);
        Assert.Contains("MessageDenied", (await client.Records.SetDataWithAckAsync("r", new JsonObject { ["n"] = 3 })).Error, StringComparison.Ordinal);
        Assert.Equal(2, await client.Records.HeadAsync("r"));
    }

    [Fact]
    public async Task A_node_does_not_start_with_a_bad_file_and_says_where_and_why()
    {
        await File.WriteAllTextAsync(FilePath, Rules("\"new Date()\""));
        var (code, output) = await Repository.RunAsync("dotnet", [ServerProcess.ServerDll, $"--StateMesh:Permissions:Path={FilePath}", $"--StateMesh:DataDirectory={_directory.FullName}"], _directory.FullName, TimeSpan.FromSeconds(30));
        Assert.Equal(2, code);
        var line = Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.StartsWith("StateMesh.Server: bad configuration:", line, StringComparison.Ordinal);
        Assert.Contains("record \"*\" write: a rule can't contain the new keyword", line, StringComparison.Ordinal);
    }

    public void Dispose() => _directory.Delete(recursive: true);
}
