using Microsoft.Extensions.DependencyInjection;

namespace StateMesh.Hosting;

/// <summary>Configures a StateMesh node in a service collection; returned by <c>AddStateMesh</c>.</summary>
public interface IStateMeshBuilder
{
    /// <summary>The services the node is registered in.</summary>
    IServiceCollection Services { get; }
}

internal sealed class StateMeshBuilder(IServiceCollection services) : IStateMeshBuilder
{
    public IServiceCollection Services { get; } = services;
}
