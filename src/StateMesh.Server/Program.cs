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

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
{
    Args = args,
    ContentRootPath = AppContext.BaseDirectory,
});
builder.Services.AddStateMesh(mesh => mesh
    .BindConfiguration(builder.Configuration.GetSection(StateMeshOptions.SectionName))
    // Durable by default: records live in <DataDirectory>/statemesh.db.
    .AddSqliteStorage(sqlite => builder.Configuration.GetSection("StateMesh:Sqlite").Bind(sqlite)));
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
using var host = builder.Build();
await host.RunAsync();
return 0;
