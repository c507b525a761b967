// An RPC interface in the global namespace, on purpose: the generator must handle it.
#pragma warning disable CA1050 // Declare types in namespaces

/// <summary>Default prefix: GlobalClock.</summary>
[StateMesh.Client.StateMeshRpc]
public interface IGlobalClock
{
    Task<long> NowAsync();
}

internal sealed class GlobalClock : IGlobalClock
{
    public Task<long> NowAsync() => Task.FromResult(42L);
}
