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
