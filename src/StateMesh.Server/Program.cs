using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using StateMesh;
using StateMesh.Auth;
using StateMesh.Redis;

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
    ServerConfigurationException settings => settings.Message,
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
    var configuration = builder.Configuration;
    var cluster = configuration["StateMesh:Cluster:Redis"];
    var postgres = configuration.GetSection("StateMesh:Postgres");
    var postgresConnectionString = postgres["ConnectionString"];
    CheckCluster(configuration, cluster, postgresConnectionString);
    builder.Services.AddStateMesh(mesh =>
    {
        mesh.BindConfiguration(configuration.GetSection(StateMeshOptions.SectionName)).AddHealthCheck();
        if (!string.IsNullOrWhiteSpace(postgresConnectionString))
        {
            mesh.AddPostgresStorage(postgresConnectionString, pg => postgres.Bind(pg));
        }
        else
        {
            // Durable by default: records live in <DataDirectory>/statemesh.db.
            mesh.AddSqliteStorage(sqlite => configuration.GetSection("StateMesh:Sqlite").Bind(sqlite));
        }
        if (!string.IsNullOrWhiteSpace(cluster))
        {
            mesh.AddRedisCluster(cluster);
        }
        if (configuration.GetSection(StateMesh.Jwt.JwtAuthenticationOptions.SectionName).Exists())
        {
            mesh.AddJwtAuthentication(configuration.GetSection(StateMesh.Jwt.JwtAuthenticationOptions.SectionName));
        }
    });
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

// Checked before anything connects: a cluster whose nodes could not agree is refused at once, not found out later.
static void CheckCluster(IConfiguration configuration, string? cluster, string? postgresConnectionString)
{
    if (string.IsNullOrWhiteSpace(cluster))
    {
        return;
    }
    try
    {
        _ = StackExchange.Redis.ConfigurationOptions.Parse(cluster);
    }
    catch (ArgumentException ex)
    {
        throw new ServerConfigurationException($"StateMesh:Cluster:Redis is not a StackExchange.Redis configuration string: {ex.Message}");
    }
    if (string.IsNullOrWhiteSpace(postgresConnectionString))
    {
        throw new ServerConfigurationException(
            "StateMesh:Cluster:Redis is set but records would stay in each node's own SQLite file, so the nodes would disagree: " +
            "set StateMesh:Postgres:ConnectionString to the PostgreSQL database all nodes of the cluster share.");
    }
    // The default name would be the same on every node, and nodes of a cluster tell each other apart by name.
    // (appsettings.json leaves NodeName out, so that set here means set by the operator.)
    if (string.IsNullOrWhiteSpace(configuration["StateMesh:NodeName"]))
    {
        throw new ServerConfigurationException(
            "StateMesh:Cluster:Redis is set but StateMesh:NodeName is not: give every node of the cluster its own name (for example --StateMesh:NodeName=node1).");
    }
}

/// <summary>Settings that contradict each other: the operator fixes them from the message alone.</summary>
internal sealed class ServerConfigurationException(string message) : Exception(message);

internal static partial class Signals
{
    public const int SigInt = 2;

    public static void RestoreDefault(int signal) => _ = SetHandler(signal, IntPtr.Zero);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "signal")]
    private static partial IntPtr SetHandler(int signal, IntPtr handler);
}
