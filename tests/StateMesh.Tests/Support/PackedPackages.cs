using System.Diagnostics;

namespace StateMesh.Tests.Support;

/// <summary>
/// The shipped packages packed once per test run into a local feed, as a user gets them (README: "Getting the
/// packages"), and fresh projects that use them. A version of its own per run, so that NuGet's global cache never
/// hands a fresh project the packages of an earlier run.
/// </summary>
internal static class PackedPackages
{
    /// <summary>Every package under src/ (the runnable server is not a package).</summary>
    public static readonly string[] Packages = ["StateMesh", "StateMesh.Sqlite", "StateMesh.Postgres", "StateMesh.Redis", "StateMesh.Deepstream", "StateMesh.AspNetCore", "StateMesh.Jwt"];

    /// <summary>Projects under src/ that ship inside another package rather than as one of their own.</summary>
    public static readonly string[] Bundled = ["StateMesh.Generators"];

    private static readonly Lazy<Task<(string Feed, string Version)>> Packed = new(PackAsync);

    /// <summary>The folder that holds the packed packages, and their version.</summary>
    public static Task<(string Feed, string Version)> GetAsync() => Packed.Value;

    private static readonly DirectoryInfo Work = CreateWork();

    private static DirectoryInfo CreateWork()
    {
        var work = Directory.CreateTempSubdirectory("statemesh-pack-");
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                work.Delete(recursive: true);
            }
            catch (IOException)
            {
                // a process of a fresh project may still hold a file; the temp folder is the system's to clear
            }
        };
        return work;
    }

    /// <summary>A new empty folder for one fresh project, deleted with the rest at the end of the run.</summary>
    public static string NewFolder(string name) => Directory.CreateDirectory(Path.Combine(Work.FullName, name + "-" + Guid.NewGuid().ToString("N")[..8])).FullName;

    private static async Task<(string Feed, string Version)> PackAsync()
    {
        var feed = Path.Combine(Work.FullName, "feed");
        var version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmssfff}";
        // Pack from a copy of the sources, so that packing never rewrites binaries the running tests use.
        var copy = Path.Combine(Work.FullName, "repo");
        Directory.CreateDirectory(copy);
        foreach (var file in new[] { "Directory.Build.props", "Directory.Packages.props", "README.md", "LICENSE", "nuget.config", ".editorconfig" })
        {
            File.Copy(Path.Combine(Repository.Root, file), Path.Combine(copy, file));
        }
        CopySources(Path.Combine(Repository.Root, "docs", "package"), Path.Combine(copy, "docs", "package"));
        foreach (var project in Packages.Concat(Bundled))
        {
            CopySources(Path.Combine(Repository.Root, "src", project), Path.Combine(copy, "src", project));
        }
        foreach (var package in Packages)
        {
            await DotnetAsync(copy, TimeSpan.FromMinutes(5), "pack", Path.Combine(copy, "src", package, package + ".csproj"), "-c", "Release", "-o", feed, $"-p:Version={version}");
        }
        return (feed, version);
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

    /// <summary>
    /// A fresh console or web project, as `dotnet new` makes it (nullable, implicit usings), with a nuget.config for the
    /// feed and the given packages (id → version); warnings are errors there.
    /// </summary>
    public static async Task<string> NewProjectAsync(string name, bool web, IEnumerable<(string Id, string Version)> packages, string program)
    {
        var (feed, _) = await GetAsync();
        var app = NewFolder(name);
        await File.WriteAllTextAsync(Path.Combine(app, "nuget.config"), NuGetConfig(feed));
        var references = string.Join("\n", packages.Select(p => $"""    <PackageReference Include="{p.Id}" Version="{p.Version}" />"""));
        await File.WriteAllTextAsync(Path.Combine(app, "App.csproj"), $"""
            <Project Sdk="{(web ? "Microsoft.NET.Sdk.Web" : "Microsoft.NET.Sdk")}">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                <!-- No vulnerability audit: it fetches data from nuget.org that this test does not need. -->
                <NuGetAudit>false</NuGetAudit>
              </PropertyGroup>
              <ItemGroup>
            {references}
              </ItemGroup>
            </Project>
            """);
        await File.WriteAllTextAsync(Path.Combine(app, "Program.cs"), program);
        return app;
    }

    /// <summary>A nuget.config for a fresh project: StateMesh from the local feed only, everything else from nuget.org.</summary>
    public static string NuGetConfig(string feed) => $"""
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
        """;

    /// <summary>Runs dotnet to its end; fails the test with the output unless it exits 0.</summary>
    public static async Task<string> DotnetAsync(string workingDirectory, TimeSpan timeout, params string[] args)
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
        await process.WaitForExitAsync().WaitAsync(timeout);
        var output = await stdout + await stderr;
        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(' ', args)} failed ({process.ExitCode}):\n{output}");
        return output;
    }
}
