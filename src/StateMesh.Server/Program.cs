using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using StateMesh;
using StateMesh.Auth;

// `StateMesh.Server hash <password>` prints a PBKDF2 hash for StateMesh:Users:<name>:PasswordHash.
if (args is ["hash", var password])
{
    Console.WriteLine(PasswordHash.Create(password));
    return 0;
}
if (args is ["hash", ..])
{
    Console.Error.WriteLine("usage: StateMesh.Server hash <password>");
    return 2;
}

// Started as a background job of a script, a process inherits SIGINT as ignored, and .NET then never sees Ctrl+C
// (or `kill -INT`). An operator who sends SIGINT means "stop": take the signal back before the host listens for it.
if (!OperatingSystem.IsWindows())
{
    Signals.RestoreDefault(Signals.SigInt);
}

try
{
    return await RunAsync(args);
}
catch (Exception ex) when (ConfigurationError(ex) is { } problem)
{
    // A value an operator can fix: one line that names the key, no stack trace.
    Console.Error.WriteLine($"StateMesh.Server: bad configuration: {problem}");
    return 2;
}

static string? ConfigurationError(Exception ex) => ex switch
{
    Microsoft.Extensions.Options.OptionsValidationException invalid => string.Join(" ", invalid.Failures),
    InvalidOperationException { InnerException: FormatException or OverflowException or ArgumentException } conversion => conversion.Message,
    AggregateException aggregate when aggregate.InnerExceptions.Count == 1 => ConfigurationError(aggregate.InnerExceptions[0]),
    _ => null,
};

static async Task<int> RunAsync(string[] args)
{
    var builder = WebApplication.CreateBuilder(new WebApplicationOptions
    {
        Args = args,
        ContentRootPath = AppContext.BaseDirectory,
    });
    builder.Services.AddStateMesh(mesh => mesh
        .BindConfiguration(builder.Configuration.GetSection(StateMeshOptions.SectionName))
        .AddHealthCheck()
        // Durable by default: records live in <DataDirectory>/statemesh.db.
        .AddSqliteStorage(sqlite => builder.Configuration.GetSection("StateMesh:Sqlite").Bind(sqlite)));
    builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));

    // WebSockets (/deepstream, /statemesh) and /health-check on one HTTP port, loopback by default.
    var http = builder.Configuration.GetSection("StateMesh:Http");
    var httpHost = http["Host"] ?? "127.0.0.1";
    var httpPort = http.GetValue("Port", 6020);
    builder.WebHost.UseUrls($"http://{httpHost}:{httpPort}");

    var app = builder.Build();
    app.MapStateMesh();
    await app.RunAsync();
    return 0;
}

internal static partial class Signals
{
    public const int SigInt = 2;

    public static void RestoreDefault(int signal) => _ = SetHandler(signal, IntPtr.Zero);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "signal")]
    private static partial IntPtr SetHandler(int signal, IntPtr handler);
}
