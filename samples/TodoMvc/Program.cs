// A todo list synced between browsers, with no backend code beyond AddStateMesh and MapStateMesh.
//   cd samples/TodoMvc/client && npm ci && npm run build     (bundles the page with esbuild)
//   dotnet run --project samples/TodoMvc -- --urls http://127.0.0.1:5080
// then open http://127.0.0.1:5080 in two browsers.
// --webroot <dir> serves the page from elsewhere (the tests serve it from the source tree, where npm builds it).
var webRoot = args.SkipWhile(a => a != "--webroot").Skip(1).FirstOrDefault();
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory, WebRootPath = webRoot });
builder.Services.AddStateMesh(mesh => mesh
    .Configure(o => o.DataDirectory = builder.Configuration["DataDirectory"] ?? "data")
    .AddSqliteStorage("todos.db"));
var app = builder.Build();
app.UseDefaultFiles();
app.UseStaticFiles();
app.MapStateMesh();
app.Run();
