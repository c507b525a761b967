using System.Diagnostics;

namespace StateMesh.Tests.Integration;

/// <summary>The way users get StateMesh: a NuGet package, referenced by a fresh project.</summary>
public class PackageTests
{
    private static readonly string RepositoryRoot = FindRoot();

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "StateMesh.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("StateMesh.sln not found above the test binaries");
    }

    private static async Task<string> RunAsync(string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        // A build of the repository must not leak into the fresh project.
        start.Environment.Remove("MSBuildExtensionsPath");
        start.Environment.Remove("MSBUILD_EXE_PATH");
        start.Environment.Remove("MSBuildSDKsPath");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));
        var output = await stdout + await stderr;
        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(' ', args)} failed ({process.ExitCode}):\n{output}");
        return output;
    }

    /// <summary>Every package under src/ (the runnable server is not a package).</summary>
    private static readonly string[] Packages = ["StateMesh", "StateMesh.Sqlite", "StateMesh.Postgres", "StateMesh.Redis", "StateMesh.Deepstream", "StateMesh.AspNetCore"];

    /// <summary>Projects under src/ that ship inside another package rather than as one of their own.</summary>
    private static readonly string[] Bundled = ["StateMesh.Generators"];

    [Fact]
    public void Every_library_under_src_is_in_the_packed_list()
    {
        var libraries = Directory.GetDirectories(Path.Combine(RepositoryRoot, "src")).Select(Path.GetFileName).Where(n => n != "StateMesh.Server" && !Bundled.Contains(n)).Order();
        Assert.Equal(libraries, Packages.Order());
    }

    private static async Task CheckPackageAsync(string nupkg, string package)
    {
        Assert.True(File.Exists(nupkg), $"{package} was not packed");
        using var zip = System.IO.Compression.ZipFile.OpenRead(nupkg);
        var nuspec = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var reader = new StreamReader(nuspec.Open());
        var text = await reader.ReadToEndAsync();
        Assert.Contains("<license type=\"expression\">MIT</license>", text, StringComparison.Ordinal);
        Assert.Contains("<readme>README.md</readme>", text, StringComparison.Ordinal);
        Assert.Contains("<repository type=\"git\"", text, StringComparison.Ordinal);
        Assert.Contains("<description>", text, StringComparison.Ordinal);
        Assert.Contains(zip.Entries, e => e.FullName == "README.md");
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

    private static void CopySources(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }
        foreach (var dir in Directory.GetDirectories(from))
        {
            var name = Path.GetFileName(dir);
            if (name is not ("bin" or "obj"))
            {
                CopySources(dir, Path.Combine(to, name));
            }
        }
    }

    [Fact]
    public async Task A_fresh_project_references_the_package_and_exchanges_an_event()
    {
        var work = Directory.CreateTempSubdirectory("statemesh-pack-");
        try
        {
            var feed = Path.Combine(work.FullName, "feed");
            var version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmssfff}";
            // Pack from a copy of the sources, so that packing never rewrites binaries the running tests use.
            var copy = Path.Combine(work.FullName, "repo");
            foreach (var file in new[] { "Directory.Build.props", "Directory.Packages.props", "README.md", "LICENSE", "nuget.config", ".editorconfig" })
            {
                Directory.CreateDirectory(copy);
                File.Copy(Path.Combine(RepositoryRoot, file), Path.Combine(copy, file));
            }
            foreach (var project in Packages.Concat(Bundled))
            {
                CopySources(Path.Combine(RepositoryRoot, "src", project), Path.Combine(copy, "src", project));
            }
            foreach (var package in Packages)
            {
                await RunAsync(copy, "pack", Path.Combine(copy, "src", package, package + ".csproj"), "-c", "Release", "-o", feed, $"-p:Version={version}");
                await CheckPackageAsync(Path.Combine(feed, $"{package}.{version}.nupkg"), package);
            }

            var app = Path.Combine(work.FullName, "app");
            Directory.CreateDirectory(app);
            await File.WriteAllTextAsync(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="local" value="{feed}" />
                    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
                  </packageSources>
                  <!-- StateMesh comes from the local feed only: no slow round trip to nuget.org for packages it does not have. -->
                  <packageSourceMapping>
                    <packageSource key="local">
                      <package pattern="StateMesh" />
                      <package pattern="StateMesh.*" />
                    </packageSource>
                    <packageSource key="nuget.org">
                      <package pattern="*" />
                    </packageSource>
                  </packageSourceMapping>
                </configuration>
                """);
            await File.WriteAllTextAsync(Path.Combine(app, "App.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <!-- No vulnerability audit: it fetches data from nuget.org that this test does not need. -->
                    <NuGetAudit>false</NuGetAudit>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="StateMesh" Version="{version}" />
                    <PackageReference Include="StateMesh.Sqlite" Version="{version}" />
                    <PackageReference Include="Microsoft.Extensions.Hosting" Version="10.0.15" />
                  </ItemGroup>
                </Project>
                """);
            await File.WriteAllTextAsync(Path.Combine(app, "Program.cs"), """
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
            var output = await RunAsync(app, "run", "-c", "Release");
            Assert.Contains("received: from the package", output, StringComparison.Ordinal);
            Assert.Contains("stored: True True", output, StringComparison.Ordinal);
            Assert.Contains("greeted: hello, package", output, StringComparison.Ordinal);
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }
}
