using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using StateMesh.Client;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>
/// README.md's code as a new user pastes it: every C# block is a complete program that builds from the packed
/// packages with warnings as errors (its first line names its template and packages), and runs; the JavaScript
/// snippet runs with the official client. The only changes made to a block are its ports, to free ones.
/// </summary>
public partial class ReadmeTests
{
    private static readonly string Readme = File.ReadAllText(Path.Combine(Repository.Root, "README.md"));

    private sealed record CodeBlock(string Template, string[] Packages, string Code, int Line);

    [GeneratedRegex(@"^```csharp\n(.*?)^```", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex CSharpBlocks();

    [GeneratedRegex(@"^```js\n(.*?)^```", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex JsBlock();

    [GeneratedRegex(@"^```json\n(.*?)^```", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex JsonBlock();

    [GeneratedRegex(@"^// dotnet new (console|web)((?:; dotnet add package [A-Za-z0-9.]+)+)\n")]
    private static partial Regex Header();

    private static List<CodeBlock> Blocks()
    {
        var blocks = new List<CodeBlock>();
        foreach (Match match in CSharpBlocks().Matches(Readme))
        {
            var code = match.Groups[1].Value;
            var line = Readme[..match.Index].Count(c => c == '\n') + 1;
            var header = Header().Match(code);
            Assert.True(header.Success, $"README.md line {line}: a C# block starts with `// dotnet new <console|web>; dotnet add package <id>...`, so that a user knows what it needs");
            var packages = header.Groups[2].Value.Split("; dotnet add package ", StringSplitOptions.RemoveEmptyEntries).Select(p => p.Trim(';', ' ')).ToArray();
            blocks.Add(new CodeBlock(header.Groups[1].Value, packages, code, line));
        }
        return blocks;
    }

    /// <summary>A fresh project for a block, as `dotnet new` makes it, with warnings as errors; built in Release.</summary>
    private static async Task<string> BuildAsync(CodeBlock block, string code)
    {
        var (_, version) = await PackedPackages.GetAsync();
        var central = File.ReadAllText(Path.Combine(Repository.Root, "Directory.Packages.props"));
        string VersionOf(string package)
        {
            if (package.StartsWith("StateMesh", StringComparison.Ordinal))
            {
                return version;
            }
            // The version the repository itself uses when it has one; else the newest, as `dotnet add package` takes.
            var pinned = Regex.Match(central, $"<PackageVersion Include=\"{Regex.Escape(package)}\" Version=\"([^\"]+)\"");
            return pinned.Success ? pinned.Groups[1].Value : "*";
        }
        var app = await PackedPackages.NewProjectAsync($"readme-{block.Line}", block.Template == "web", block.Packages.Select(p => (p, VersionOf(p))), code);
        await PackedPackages.DotnetAsync(app, TimeSpan.FromMinutes(5), "build", "-c", "Release");
        return app;
    }

    /// <summary>A console block of README, its node's TCP port 6021 moved to a free one.</summary>
    private static Task<string> BuildConsoleAsync(int index)
    {
        var block = Blocks()[index];
        var port = Client.ClientEventsTests.FreePort().ToString(CultureInfo);
        return BuildAsync(block, block.Code.Replace("6021", port, StringComparison.Ordinal));
    }

    [Fact]
    public void The_readme_has_its_three_csharp_programs_each_naming_what_it_needs()
    {
        var blocks = Blocks();
        Assert.Equal(3, blocks.Count);
        Assert.Equal(["console", "console", "web"], blocks.Select(b => b.Template));
        Assert.Contains("StateMesh.AspNetCore", blocks[2].Packages);
        // The version README's readers get is the one place it is set.
        var props = File.ReadAllText(Path.Combine(Repository.Root, "Directory.Build.props"));
        var version = Regex.Match(props, "<Version>([^<]+)</Version>").Groups[1].Value;
        Assert.Contains($"`Directory.Build.props` ({version} now)", Readme, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_quick_start_builds_prints_what_the_readme_says_and_ends_on_ctrl_c()
    {
        await using var run = RunningApp.Start(await BuildConsoleAsync(0));
        await run.WaitForLineAsync("Ctrl+C stops");
        await run.WaitForLineAsync("price: 1.0842 / 1.0844");
        await run.WaitForLineAsync("stored: True");
        await run.WaitForLineAsync("todo: buy milk, done: True");
        // A record that did not exist yet is never shown as an empty todo.
        Assert.DoesNotContain(run.Lines, l => l.StartsWith("todo: ,", StringComparison.Ordinal));
        Assert.Equal(0, await run.InterruptAsync());
    }

    [Fact]
    public async Task The_rpc_presence_and_listening_example_builds_and_runs()
    {
        await using var run = RunningApp.Start(await BuildConsoleAsync(1));
        await run.WaitForLineAsync("2 + 3 = 5");
        await run.WaitForLineAsync("others online: ");
        await run.WaitForLineAsync("providing prices/eurusd");
        await run.WaitForLineAsync("Ctrl+C stops");
        Assert.Equal(0, await run.InterruptAsync());
    }

    [Fact]
    public async Task The_web_app_serves_wss_with_the_kestrel_certificate_to_the_official_client_and_the_dotnet_client()
    {
        var block = Blocks()[2];
        var app = await BuildAsync(block, block.Code);
        // README's appsettings.json, on a free port, with a self-signed certificate made here under README's path and password.
        var settings = JsonNode.Parse(JsonBlock().Match(Readme).Groups[1].Value)!;
        var https = settings["Kestrel"]!["Endpoints"]!["Https"]!;
        var port = Client.ClientEventsTests.FreePort();
        Assert.Equal("https://127.0.0.1:6443", (string?)https["Url"]);
        https["Url"] = $"https://127.0.0.1:{port}";
        using var certificate = SelfSigned();
        var pfx = certificate.Export(X509ContentType.Pfx, (string?)https["Certificate"]!["Password"]);
        await File.WriteAllBytesAsync(Path.Combine(app, (string)https["Certificate"]!["Path"]!), pfx);
        var pem = Path.Combine(app, "statemesh.pem");
        await File.WriteAllTextAsync(pem, certificate.ExportCertificatePem());
        await File.WriteAllTextAsync(Path.Combine(app, "appsettings.json"), settings.ToJsonString());

        await using var run = RunningApp.Start(app);
        await run.WaitForLineAsync($"Now listening on: https://127.0.0.1:{port}");
        bool TrustOurs(object? sender, X509Certificate? cert, X509Chain? chain, System.Net.Security.SslPolicyErrors errors) =>
            cert is not null && cert.GetCertHashString() == certificate.GetCertHashString();

        using var http = new HttpClient(new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, cert, chain, errors) => TrustOurs(null, cert, chain, errors) });
        Assert.Equal("Healthy", await http.GetStringAsync(new Uri($"https://127.0.0.1:{port}/health-check")));

        // The .NET client over wss:// trusts this certificate (and no other): it writes a record.
        await using var client = await StateMeshClient.ConnectAsync($"wss://127.0.0.1:{port}/statemesh", new { username = "dotnet" },
            new StateMeshClientOptions { RemoteCertificateValidationCallback = TrustOurs });
        var write = await client.Records.SetDataWithAckAsync("todos/1", new { title = "from .NET over wss" });
        Assert.True(write.Succeeded, write.Error);
        // An untrusted certificate is refused as for any HTTPS client.
        await Assert.ThrowsAnyAsync<Exception>(() => StateMeshClient.ConnectAsync($"wss://127.0.0.1:{port}/statemesh", new { username = "x" },
            new StateMeshClientOptions { MaxReconnectAttempts = 0, ConnectTimeout = TimeSpan.FromSeconds(5) }));

        // README's JavaScript snippet, with the official client over wss://, trusting the certificate as Node.js does.
        var snippet = JsBlock().Match(Readme).Groups[1].Value;
        Assert.Contains("'ws://127.0.0.1:6020/deepstream'", snippet, StringComparison.Ordinal);
        snippet = snippet.Replace("'ws://127.0.0.1:6020/deepstream'", $"'wss://127.0.0.1:{port}/deepstream'", StringComparison.Ordinal);
        await Repository.EnsureNpmPackagesAsync(Path.Combine("tests", "conformance"));
        var script = Path.Combine(Repository.Root, "tests", "conformance", $"readme-snippet-{Guid.NewGuid():N}.mjs");
        await File.WriteAllTextAsync(script, snippet);
        try
        {
            await using var js = RunningApp.Start("node", [script], Path.GetDirectoryName(script)!, new() { ["NODE_EXTRA_CA_CERTS"] = pem });
            await js.WaitForLineAsync("from .NET over wss");
        }
        finally
        {
            File.Delete(script);
        }
        Assert.Equal(0, await run.InterruptAsync());
    }

    private static readonly IFormatProvider CultureInfo = System.Globalization.CultureInfo.InvariantCulture;

    private static X509Certificate2 SelfSigned()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7));
    }

    /// <summary>A program of the test's, running: its lines as they come, Ctrl+C (SIGINT), and its exit code.</summary>
    private sealed class RunningApp : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];
        private readonly SemaphoreSlim _changed = new(0);

        private RunningApp(Process process)
        {
            _process = process;
            _process.OutputDataReceived += (_, e) => Add(e.Data);
            _process.ErrorDataReceived += (_, e) => Add(e.Data);
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        private void Add(string? line)
        {
            if (line is null)
            {
                return;
            }
            lock (_lines)
            {
                _lines.Add(line);
            }
            _changed.Release();
        }

        public string[] Lines
        {
            get { lock (_lines) { return [.. _lines]; } }
        }

        /// <summary>The built app of a fresh project, run as `dotnet App.dll` in its folder.</summary>
        public static RunningApp Start(string app) =>
            // SIGINT as a terminal delivers it, even when this test process was started with it ignored (a background job).
            Start("env", ["--default-signal=INT", "dotnet", Path.Combine(app, "bin", "Release", "net10.0", "App.dll")], app, []);

        public static RunningApp Start(string file, string[] args, string directory, Dictionary<string, string> environment)
        {
            var start = new ProcessStartInfo(file)
            {
                WorkingDirectory = directory,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in args)
            {
                start.ArgumentList.Add(arg);
            }
            foreach (var (key, value) in environment)
            {
                start.Environment[key] = value;
            }
            return new RunningApp(Process.Start(start)!);
        }

        public async Task WaitForLineAsync(string text)
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (!Lines.Any(l => l.Contains(text, StringComparison.Ordinal)))
            {
                var left = until - DateTime.UtcNow;
                Assert.True(left > TimeSpan.Zero && !_process.HasExited || Lines.Any(l => l.Contains(text, StringComparison.Ordinal)),
                    $"no line with '{text}' ({(_process.HasExited ? $"exited {_process.ExitCode}" : "still running")}); its output:\n{string.Join('\n', Lines)}");
                await _changed.WaitAsync(left > TimeSpan.FromMilliseconds(200) ? TimeSpan.FromMilliseconds(200) : left);
            }
        }

        /// <summary>Ctrl+C: SIGINT to the process; its exit code once it has ended by itself.</summary>
        public async Task<int> InterruptAsync()
        {
            using (var kill = Process.Start("kill", ["-INT", _process.Id.ToString(CultureInfo)]))
            {
                await kill.WaitForExitAsync();
            }
            try
            {
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
            }
            catch (TimeoutException)
            {
                Assert.Fail($"still running 20 s after Ctrl+C; its output:\n{string.Join('\n', Lines)}");
            }
            Assert.DoesNotContain(Lines, l => l.Contains("Unhandled exception", StringComparison.Ordinal));
            return _process.ExitCode;
        }

        public ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
            _process.Dispose();
            _changed.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
