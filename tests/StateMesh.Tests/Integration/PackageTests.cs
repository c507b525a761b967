namespace StateMesh.Tests.Integration;

/// <summary>The way users get StateMesh: a NuGet package, referenced by a fresh project.</summary>
public class PackageTests
{
    private static readonly string RepositoryRoot = Support.Repository.Root;

    private static readonly string[] Packages = Support.PackedPackages.Packages;

    private static readonly string[] Bundled = Support.PackedPackages.Bundled;

    [Fact]
    public void Every_library_under_src_is_in_the_packed_list()
    {
        var libraries = Directory.GetDirectories(Path.Combine(RepositoryRoot, "src")).Select(Path.GetFileName).Where(n => n != "StateMesh.Server" && !Bundled.Contains(n)).Order();
        Assert.Equal(libraries, Packages.Order());
    }

    private static async Task CheckPackageAsync(string feed, string version, string package)
    {
        var nupkg = Path.Combine(feed, $"{package}.{version}.nupkg");
        Assert.True(File.Exists(nupkg), $"{package} was not packed");
        // Symbols beside it, for debuggers (with Source Link).
        Assert.True(File.Exists(Path.Combine(feed, $"{package}.{version}.snupkg")), $"{package} has no symbol package");
        using var zip = System.IO.Compression.ZipFile.OpenRead(nupkg);
        var nuspec = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var reader = new StreamReader(nuspec.Open());
        var text = await reader.ReadToEndAsync();
        Assert.Contains("<license type=\"expression\">MIT</license>", text, StringComparison.Ordinal);
        Assert.Contains("<readme>README.md</readme>", text, StringComparison.Ordinal);
        Assert.Contains("<repository type=\"git\"", text, StringComparison.Ordinal);
        Assert.Contains("<description>", text, StringComparison.Ordinal);
        Assert.Contains("<icon>icon.png</icon>", text, StringComparison.Ordinal);
        Assert.Contains("<tags>", text, StringComparison.Ordinal);
        Assert.Contains(zip.Entries, e => e.FullName == "icon.png");
        Assert.Contains(zip.Entries, e => e.FullName == "README.md");
        // A package page shows the README away from the repository: every link in it must be absolute.
        using (var readme = new StreamReader(zip.GetEntry("README.md")!.Open()))
        {
            var links = System.Text.RegularExpressions.Regex.Matches(await readme.ReadToEndAsync(), @"\]\(([^)]+)\)").Select(m => m.Groups[1].Value).ToList();
            Assert.NotEmpty(links);
            Assert.All(links, link => Assert.StartsWith("https://", link, StringComparison.Ordinal));
        }
        Assert.Contains(zip.Entries, e => e.FullName == $"lib/net10.0/{package}.xml");
        // The bundled projects are inside a package, never dependencies of one.
        foreach (var bundled in Bundled)
        {
            Assert.DoesNotContain($"id=\"{bundled}\"", text, StringComparison.Ordinal);
        }
        if (package == "StateMesh")
        {
            // The RPC proxy generator ships as the package's analyzer.
            Assert.Contains(zip.Entries, e => e.FullName == "analyzers/dotnet/cs/StateMesh.Generators.dll");
        }
    }

    [Fact]
    public async Task A_fresh_project_references_the_package_and_exchanges_an_event()
    {
        var (feed, version) = await Support.PackedPackages.GetAsync();
        foreach (var package in Packages)
        {
            await CheckPackageAsync(feed, version, package);
        }
        var app = await Support.PackedPackages.NewProjectAsync("app", web: false,
            [("StateMesh", version), ("StateMesh.Sqlite", version), ("Microsoft.Extensions.Hosting", "10.0.15")], """
            using Microsoft.Extensions.DependencyInjection;
            using Microsoft.Extensions.Hosting;
            using StateMesh.Client;

            var builder = Host.CreateApplicationBuilder(args);
            var data = Path.Combine(AppContext.BaseDirectory, "data");
            builder.Services.AddStateMesh(mesh => mesh.AddTcpEndpoint(0).Configure(o => o.DataDirectory = data).AddSqliteStorage("app.db"));
            using var host = builder.Build();
            await host.StartAsync();
            var node = host.Services.GetRequiredService<StateMesh.StateMeshNode>();
            var local = host.Services.GetRequiredService<IStateMeshClient>();
            await using var remote = await StateMeshClient.ConnectAsync(node.TcpAddress!.ToString(), new { username = "remote" });
            var received = new TaskCompletionSource<string>();
            using var sub = await remote.Events.SubscribeAsync<string>("hello", v => received.TrySetResult(v));
            await local.Events.PublishAsync("hello", "from the package");
            Console.WriteLine("received: " + await received.Task.WaitAsync(TimeSpan.FromSeconds(10)));
            var write = await remote.Records.SetDataWithAckAsync("settings", new { theme = "dark" });
            Console.WriteLine("stored: " + write.Succeeded + " " + File.Exists(Path.Combine(data, "app.db")));
            // A typed RPC proxy: the package's source generator wrote it at compile time.
            await using (await local.Rpc.ProvideAsync<IGreeter>(new Greeter()))
            {
                var greeter = remote.Rpc.CreateProxy<IGreeter>();
                Console.WriteLine("greeted: " + await greeter.HelloAsync("package"));
            }
            await host.StopAsync();

            [StateMeshRpc]
            public interface IGreeter
            {
                Task<string> HelloAsync(string name);
            }

            sealed class Greeter : IGreeter
            {
                public Task<string> HelloAsync(string name) => Task.FromResult("hello, " + name);
            }
            """);
        var output = await Support.PackedPackages.DotnetAsync(app, TimeSpan.FromMinutes(5), "run", "-c", "Release");
        Assert.Contains("received: from the package", output, StringComparison.Ordinal);
        Assert.Contains("stored: True True", output, StringComparison.Ordinal);
        Assert.Contains("greeted: hello, package", output, StringComparison.Ordinal);
    }
}
