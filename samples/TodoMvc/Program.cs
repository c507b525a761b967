// A todo list synced between browsers, with no backend code beyond AddStateMesh and MapStateMesh.
//   cd samples/TodoMvc/client && npm ci && npm run build     (bundles the page with esbuild)
//   dotnet run --project samples/TodoMvc -- --urls http://127.0.0.1:5080      (from the repository root)
// then open http://127.0.0.1:5080 in two browsers.
// The page is served from where npm builds it: --webroot <dir>, else ./wwwroot (dotnet run starts in the project
// folder), else the copy next to the binaries.
var webRoot = args.SkipWhile(a => a != "--webroot").Skip(1).FirstOrDefault() is { } dir ? Path.GetFullPath(dir)
    : File.Exists(Path.Combine("wwwroot", "index.html")) ? Path.GetFullPath("wwwroot") : null;
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory, WebRootPath = webRoot });
builder.Services.AddStateMesh(mesh => mesh
    .Configure(o => o.DataDirectory = builder.Configuration["DataDirectory"] ?? "data")
    .AddSqliteStorage("todos.db"));
var app = builder.Build();
app.UseDefaultFiles();
app.UseStaticFiles();
app.MapStateMesh();
app.Run();
