using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using StateMesh;
using StateMesh.AspNetCore;
using StateMesh.Deepstream;
using StateMesh.Protocol;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Serves a StateMesh node over ASP.NET Core.</summary>
public static class StateMeshEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps the node's WebSocket endpoints: <paramref name="deepstreamPath"/> for the deepstream v5+ protocol (what
    /// @deepstream/client 7 connects to) and <paramref name="nativePath"/> for the native protocol, deepstream's HTTP
    /// batch API at <paramref name="apiPath"/> (and <c>/api/auth</c>), plus a health check at <c>/health-check</c>.
    /// Adds the WebSockets middleware. Needs <c>services.AddStateMesh()</c>.
    /// </summary>
    public static WebApplication MapStateMesh(this WebApplication app, string deepstreamPath = "/deepstream", string nativePath = "/statemesh", string healthCheckPath = "/health-check", string apiPath = "/api")
    {
        app.UseWebSockets();
        var api = new HttpApi(app.Services.GetRequiredService<StateMeshNode>());
        app.MapPost(apiPath, api.ApiAsync);
        app.MapPost(apiPath.TrimEnd('/') + "/auth", api.AuthAsync);
        app.MapStateMeshWebSocket(deepstreamPath, DeepstreamCodec.Instance);
        app.MapStateMeshWebSocket(nativePath, NativeCodec.Instance);
        if (app.Services.GetService<HealthCheckService>() is not null)
        {
            app.MapHealthChecks(healthCheckPath);
        }
        else
        {
            // Without ASP.NET Core health checks registered (mesh.AddHealthCheck()), answer from the node alone.
            // The same answer as ASP.NET Core's health checks give: text/plain "Healthy", or 503 "Unhealthy".
            app.MapGet(healthCheckPath, (StateMeshNode node) => node.IsRunning
                ? Results.Text("Healthy", "text/plain")
                : Results.Text("Unhealthy", "text/plain", statusCode: StatusCodes.Status503ServiceUnavailable));
        }
        return app;
    }

    private static void MapStateMeshWebSocket(this IEndpointRouteBuilder endpoints, string path, IMessageCodec codec) =>
        endpoints.Map(path, async context =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
                context.Response.Headers.SecWebSocketVersion = "13";
                await context.Response.WriteAsync($"{path} is a WebSocket endpoint.", context.RequestAborted).ConfigureAwait(false);
                return;
            }
            var node = context.RequestServices.GetRequiredService<StateMeshNode>();
            var remote = $"{context.Connection.RemoteIpAddress}:{context.Connection.RemotePort}";
            if (await WebSocketTransport.TryUpgradeAsync(context, node, codec, remote).ConfigureAwait(false))
            {
                return;
            }
            // Not an HTTP/1.1 upgrade (HTTP/2 WebSockets, test hosts): the framework's WebSocket.
            using var socket = await context.WebSockets.AcceptWebSocketAsync().ConfigureAwait(false);
            await WebSocketTransport.RunAsync(socket, node, codec, remote, context.RequestAborted).ConfigureAwait(false);
        });
}

/// <summary>Registers what <c>MapStateMesh</c> needs.</summary>
public static class StateMeshAspNetCoreServiceCollectionExtensions
{
    /// <summary>Adds the node to ASP.NET Core health checks (healthy while the node runs), served by <c>MapStateMesh</c> at /health-check.</summary>
    public static StateMesh.Hosting.IStateMeshBuilder AddHealthCheck(this StateMesh.Hosting.IStateMeshBuilder builder)
    {
        builder.Services.AddHealthChecks().AddCheck<StateMeshHealthCheck>("statemesh");
        return builder;
    }
}

internal sealed class StateMeshHealthCheck(StateMeshNode node) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(node.IsRunning
            ? HealthCheckResult.Healthy($"{node.ConnectionCount} connections")
            : HealthCheckResult.Unhealthy("the node is not running"));
}
