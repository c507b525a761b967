using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>The TodoMvc sample in headless Chromium pages (Debian's chromium, driven by playwright-core): every action seen
/// in the other page, two pages adding at once over many rounds, and a node restart.</summary>
public sealed class TodoMvcTests : IDisposable
{
    private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("statemesh-todomvc-");

    private static string Root => Repository.Root;

    private static async Task BuildPageAsync()
    {
        await Repository.EnsureNpmPackagesAsync(Path.Combine("samples", "TodoMvc", "client"));
        var (code, output) = await Repository.RunAsync("npm", ["run", "build"], Path.Combine(Root, "samples", "TodoMvc", "client"), TimeSpan.FromMinutes(2));
        Assert.True(code == 0, "npm run build of the TodoMvc page failed:\n" + output);
    }

    internal static SampleProcess StartTodoMvc(int port, string data) =>
        new("TodoMvc", "--urls", $"http://127.0.0.1:{port}", $"--DataDirectory={data}", "--webroot", Path.Combine(Root, "samples", "TodoMvc", "wwwroot"));

    private static readonly Lazy<Task> Prepared = new(PrepareOnceAsync);

    /// <summary>Builds the page (npm) and the e2e driver's packages, once per test run (tests of several classes use them).</summary>
    internal static Task PreparePageAsync() => Prepared.Value;

    private static async Task PrepareOnceAsync()
    {
        var chromium = Environment.GetEnvironmentVariable("CHROMIUM") ?? "/usr/bin/chromium";
        Assert.True(File.Exists(chromium), $"Chromium is required at {chromium} (Debian package chromium; .ci/run installs it).");
        await BuildPageAsync();
        await Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "e2e"));
    }

    [Fact]
    public async Task Todos_added_ticked_edited_filtered_and_cleared_in_one_browser_appear_in_the_other_concurrent_adds_are_never_lost_and_all_survive_a_node_restart()
    {
        await PreparePageAsync();
        var port = Client.ClientEventsTests.FreePort();
        var e2e = Path.Combine(Root, "tests", "e2e");
        await using (var first = StartTodoMvc(port, _data.FullName))
        {
            await first.ListeningAsync();
            var (code, output) = await Repository.RunAsync("node", ["todomvc.mjs", $"http://127.0.0.1:{port}/", "sync"], e2e, TimeSpan.FromSeconds(90));
            Assert.True(code == 0 && output.Contains("OK sync", StringComparison.Ordinal), output);
            // 30 rounds of both pages adding three todos each at the same moment: none lost, every page the same.
            (code, output) = await Repository.RunAsync("node", ["todomvc.mjs", $"http://127.0.0.1:{port}/", "concurrent", "30"], e2e, TimeSpan.FromSeconds(120));
            Assert.True(code == 0 && output.Contains("OK concurrent", StringComparison.Ordinal), output);
        }
        await using (var second = StartTodoMvc(port, _data.FullName))
        {
            await second.ListeningAsync();
            var (code, output) = await Repository.RunAsync("node", ["todomvc.mjs", $"http://127.0.0.1:{port}/", "restart"], e2e, TimeSpan.FromSeconds(90));
            Assert.True(code == 0 && output.Contains("OK restart", StringComparison.Ordinal), output);
        }
    }

    public void Dispose() => _data.Delete(recursive: true);
}
