using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace StateMesh.Generators;

/// <summary>How a method returns its result.</summary>
internal enum ReturnKind
{
    Task,
    TaskOfT,
    ValueTask,
    ValueTaskOfT,
}

/// <summary>One RPC method, as text ready to emit (no symbols, so that the model caches across compilations).</summary>
/// <param name="DeclaringInterface">The fully qualified interface that declares the method (for the explicit implementation).</param>
/// <param name="Identifier">The method name as a C# identifier (escaped when it is a keyword).</param>
/// <param name="RpcName">prefix/MethodName.</param>
/// <param name="ReturnType">The fully qualified return type, as declared.</param>
/// <param name="ReturnIsNullable">The declared task type itself is nullable (Task&lt;T&gt;?).</param>
/// <param name="Kind">The shape of the return type.</param>
/// <param name="ResultType">The fully qualified T of Task&lt;T&gt;/ValueTask&lt;T&gt;, or null.</param>
/// <param name="RequestType">The fully qualified type of the request parameter, or null when there is none.</param>
/// <param name="HasCancellationToken">The method takes a trailing CancellationToken.</param>
internal sealed record RpcMethod(
    string DeclaringInterface,
    string Identifier,
    string RpcName,
    string ReturnType,
    bool ReturnIsNullable,
    ReturnKind Kind,
    string? ResultType,
    string? RequestType,
    bool HasCancellationToken);

/// <summary>One interface marked [StateMeshRpc]: what to generate, or why not.</summary>
/// <param name="Namespace">The namespace to generate into ("" for the global namespace).</param>
/// <param name="InterfaceType">The fully qualified interface type.</param>
/// <param name="ClassName">The name of the generated static class.</param>
/// <param name="HintName">The name of the generated source.</param>
/// <param name="Methods">The methods to implement and provide.</param>
/// <param name="Diagnostics">Errors found; nothing is generated when there is any.</param>
internal sealed record RpcService(
    string Namespace,
    string InterfaceType,
    string ClassName,
    string HintName,
    EquatableArray<RpcMethod> Methods,
    EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>A source location without the syntax tree it came from.</summary>
internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
{
    public static LocationInfo? From(Location? location) =>
        location is null || !location.IsInSource ? null : new LocationInfo(location.SourceTree?.FilePath ?? "", location.SourceSpan, location.GetLineSpan().Span);

    public Location ToLocation() => Location.Create(FilePath, Span, LineSpan);
}

/// <summary>A diagnostic to report later, kept as plain values.</summary>
internal sealed record DiagnosticInfo(DiagnosticDescriptor Descriptor, LocationInfo? Location, EquatableArray<string> Arguments)
{
    public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, Location? location, params string[] arguments) =>
        new(descriptor, LocationInfo.From(location), new EquatableArray<string>(ImmutableArray.Create(arguments)));

    public Diagnostic ToDiagnostic() =>
        Diagnostic.Create(Descriptor, Location?.ToLocation(), Arguments.Select(a => (object?)a).ToArray());
}
