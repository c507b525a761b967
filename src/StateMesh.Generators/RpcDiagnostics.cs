using Microsoft.CodeAnalysis;

namespace StateMesh.Generators;

/// <summary>The errors the RPC proxy generator reports instead of silently leaving a member out.</summary>
internal static class RpcDiagnostics
{
    private const string Category = "StateMesh.Rpc";

    public static readonly DiagnosticDescriptor UnsupportedMethod = new(
        id: "SMRPC001",
        title: "Unsupported RPC method shape",
        messageFormat: "Method '{0}' of RPC interface '{1}' is not supported: {2}. An RPC method takes at most one request parameter plus an optional trailing CancellationToken, is not generic, and returns Task, Task<T>, ValueTask or ValueTask<T>.",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor UnsupportedMember = new(
        id: "SMRPC002",
        title: "Unsupported RPC interface member",
        messageFormat: "RPC interface '{0}' declares the {1} '{2}': an RPC interface may only declare methods",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor DuplicateName = new(
        id: "SMRPC003",
        title: "Duplicate RPC name",
        messageFormat: "Method '{0}' of RPC interface '{1}' maps to the RPC name '{2}', which another method of the interface already uses (overloads are not supported)",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor GenericInterface = new(
        id: "SMRPC004",
        title: "Generic RPC interface",
        messageFormat: "RPC interface '{0}' is generic or nested in a generic type, which the proxy generator does not support",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor Inaccessible = new(
        id: "SMRPC005",
        title: "Inaccessible RPC interface",
        messageFormat: "RPC interface '{0}' must be public or internal (and so must every type it is nested in), so that the generated proxy can implement it",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor EmptyPrefix = new(
        id: "SMRPC006",
        title: "Empty RPC prefix",
        messageFormat: "The RPC prefix of interface '{0}' is empty: pass a prefix, or no argument for the default",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);
}
