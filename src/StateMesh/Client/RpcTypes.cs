using System.Text.Json;

namespace StateMesh.Client;

/// <summary>Remote procedure calls: make them, provide them, or use typed proxies over an interface.</summary>
public interface IRpcClient
{
    /// <summary>Calls <paramref name="name"/> on one of its providers and returns its response.</summary>
    /// <exception cref="RpcException">No provider, a timeout, the provider's error, or a lost connection (see <see cref="RpcException.Code"/>).</exception>
    Task<TResponse> MakeAsync<TRequest, TResponse>(string name, TRequest request, CancellationToken cancellationToken = default);

    /// <summary>Like <see cref="MakeAsync{TRequest,TResponse}(string,TRequest,CancellationToken)"/>, with a response timeout shorter than the node's.</summary>
    Task<TResponse> MakeAsync<TRequest, TResponse>(string name, TRequest request, TimeSpan timeout, CancellationToken cancellationToken = default);

    /// <summary>
    /// Provides <paramref name="name"/>: requests are accepted at once and answered with the handler's result. A handler
    /// that throws <see cref="RpcRejectedException"/> rejects (the node tries another provider); one that throws
    /// <see cref="RpcErrorException"/> answers the caller's <see cref="RpcErrorCode.ProviderError"/> with that exception's
    /// message; any other exception is logged here and the caller gets the fixed text "The provider failed." (internal
    /// details stay in the provider's log). Completes when the node has
    /// acknowledged; dispose to stop providing. Provided again after a reconnect.
    /// </summary>
    Task<IAsyncDisposable> ProvideWithContextAsync<TRequest, TResponse>(string name, Func<RpcRequest<TRequest>, CancellationToken, Task<TResponse>> handler, CancellationToken cancellationToken = default);

    /// <summary>Provides <paramref name="name"/> with a handler that needs only the request data (see <see cref="ProvideWithContextAsync{TRequest,TResponse}"/>).</summary>
    Task<IAsyncDisposable> ProvideAsync<TRequest, TResponse>(string name, Func<TRequest, CancellationToken, Task<TResponse>> handler, CancellationToken cancellationToken = default);

    /// <summary>A typed proxy for an interface marked <see cref="StateMeshRpcAttribute"/>; each method calls the RPC "prefix/Method".</summary>
    TService CreateProxy<TService>() where TService : class;

    /// <summary>Provides every method of an interface marked <see cref="StateMeshRpcAttribute"/> from <paramref name="implementation"/>.</summary>
    Task<IAsyncDisposable> ProvideAsync<TService>(TService implementation, CancellationToken cancellationToken = default) where TService : class;
}

/// <summary>A request as its provider sees it.</summary>
/// <typeparam name="T">The request data type.</typeparam>
public sealed class RpcRequest<T>
{
    internal RpcRequest(string name, T data, string? requestorName, JsonElement? requestorData)
    {
        Name = name;
        Data = data;
        RequestorName = requestorName;
        RequestorData = requestorData;
    }

    /// <summary>The RPC name.</summary>
    public string Name { get; }

    /// <summary>The request data.</summary>
    public T Data { get; }

    /// <summary>The caller's user id, when the node passes it on (StateMesh:Rpc:ProvideRequestorName).</summary>
    public string? RequestorName { get; }

    /// <summary>The caller's client data, when the node passes it on (StateMesh:Rpc:ProvideRequestorData).</summary>
    public JsonElement? RequestorData { get; }

    /// <summary>Returns the exception that rejects this request: <c>throw request.Reject();</c>.</summary>
    public RpcRejectedException Reject() => new();
}

/// <summary>Thrown by a provider's handler to reject a request, so that the node offers it to another provider.</summary>
public sealed class RpcRejectedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RpcRejectedException() : base("The provider rejected the request.") { }
}

/// <summary>
/// Thrown by a provider's handler to answer the caller with an error: its message is what the caller's
/// <see cref="RpcException"/> says (<see cref="RpcErrorCode.ProviderError"/>). Other exceptions are not shown to callers.
/// </summary>
public sealed class RpcErrorException : Exception
{
    /// <summary>Creates the exception with the text the caller sees.</summary>
    public RpcErrorException(string message) : base(message) { }
}

/// <summary>Why a call failed.</summary>
public enum RpcErrorCode
{
    /// <summary>No provider (or every provider rejected).</summary>
    NoProvider,
    /// <summary>The provider did not accept in time.</summary>
    AcceptTimeout,
    /// <summary>The provider did not respond in time.</summary>
    ResponseTimeout,
    /// <summary>The provider answered with an error (or disconnected during the call); see the message.</summary>
    ProviderError,
    /// <summary>The connection was lost before the answer arrived.</summary>
    ConnectionLost,
    /// <summary>The node refused the request.</summary>
    Refused,
}

/// <summary>A call that failed, with a code to act on.</summary>
public sealed class RpcException : StateMeshException
{
    /// <summary>Creates the exception.</summary>
    public RpcException(RpcErrorCode code, string message) : base(message) => Code = code;

    /// <summary>Why the call failed.</summary>
    public RpcErrorCode Code { get; }
}

/// <summary>
/// Marks an interface of async methods as an RPC service: each method is the RPC "<see cref="Prefix"/>/MethodName"
/// (the prefix defaults to the interface name without a leading I). Methods take at most one parameter (the request)
/// plus an optional CancellationToken, and return Task or Task&lt;T&gt;.
/// </summary>
[AttributeUsage(AttributeTargets.Interface)]
public sealed class StateMeshRpcAttribute : Attribute
{
    /// <summary>Marks an interface with the default prefix.</summary>
    public StateMeshRpcAttribute() { }

    /// <summary>Marks an interface with a prefix.</summary>
    public StateMeshRpcAttribute(string prefix) => Prefix = prefix;

    /// <summary>The prefix of the RPC names.</summary>
    public string? Prefix { get; }
}

/// <summary>
/// Where generated code registers proxies and providers for RPC interfaces (the StateMesh source generator writes
/// these registrations, so that proxies need no reflection and work under trimming and native AOT).
/// </summary>
public static class RpcServiceRegistry
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, (Func<IRpcClient, object> Proxy, Func<IRpcClient, object, CancellationToken, Task<IAsyncDisposable>> Provide)> Services = new();

    /// <summary>Registers an interface's proxy factory and provider binder. Called by generated code.</summary>
    public static void Register<TService>(Func<IRpcClient, TService> proxy, Func<IRpcClient, TService, CancellationToken, Task<IAsyncDisposable>> provide)
        where TService : class =>
        Services[typeof(TService)] = (client => proxy(client), (client, implementation, cancellationToken) => provide(client, (TService)implementation, cancellationToken));

    internal static TService CreateProxy<TService>(IRpcClient client) where TService : class =>
        Services.TryGetValue(typeof(TService), out var entry)
            ? (TService)entry.Proxy(client)
            : throw new InvalidOperationException($"No RPC proxy was generated for {typeof(TService).Name}: mark the interface with [StateMeshRpc] in a project that references the StateMesh package.");

    internal static Task<IAsyncDisposable> Provide<TService>(IRpcClient client, TService implementation, CancellationToken cancellationToken) where TService : class =>
        Services.TryGetValue(typeof(TService), out var entry)
            ? entry.Provide(client, implementation, cancellationToken)
            : throw new InvalidOperationException($"No RPC provider binding was generated for {typeof(TService).Name}: mark the interface with [StateMeshRpc] in a project that references the StateMesh package.");
}
