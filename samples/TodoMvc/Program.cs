// A todo list synced between browsers, with no backend code beyond AddStateMesh and MapStateMesh.
//   cd samples/TodoMvc/client && npm ci && npm run build     (bundles the page with esbuild)
//   dotnet run --project samples/TodoMvc -- --urls http://127.0.0.1:5080      (from the repository root)
// then open http://127.0.0.1:5080 in two browsers.
// The todos are kept in SQLite under the user's data folder (~/.local/share/StateMesh/TodoMvc on Linux), never in the
// source tree; --DataDirectory=<dir> puts them elsewhere.
// The page is served from where npm builds it: --webroot <dir>, else ./wwwroot (dotnet run starts in the project
// folder), else the copy next to the binaries.
var webRoot = args.SkipWhile(a => a != "--webroot").Skip(1).FirstOrDefault() is { } dir ? Path.GetFullPath(dir)
    : File.Exists(Path.Combine("wwwroot", "index.html")) ? Path.GetFullPath("wwwroot") : null;
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory, WebRootPath = webRoot });
var data = Path.GetFullPath(builder.Configuration["DataDirectory"]
    ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "StateMesh", "TodoMvc"));
builder.Services.AddStateMesh(mesh => mesh
    .Configure(o => o.DataDirectory = data)
    .AddSqliteStorage("todos.db"));
var app = builder.Build();
app.Logger.LogInformation("TodoMvc keeps its todos in {File}", Path.Combine(data, "todos.db"));
app.UseDefaultFiles();
app.UseStaticFiles();
app.MapStateMesh();
app.Run();
