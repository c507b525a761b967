using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace StateMesh.Generators;

/// <summary>
/// For every interface marked <c>[StateMesh.Client.StateMeshRpc]</c>, generates a proxy that makes each method's RPC,
/// a binder that provides each method from an implementation, and a module initializer that registers both with
/// <c>StateMesh.Client.RpcServiceRegistry</c>: typed RPC without reflection, so it works trimmed and under native AOT.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class RpcProxyGenerator : IIncrementalGenerator
{
    internal const string AttributeName = "StateMesh.Client.StateMeshRpcAttribute";

    private static readonly SymbolDisplayFormat TypeFormat = SymbolDisplayFormat.FullyQualifiedFormat
        .AddMiscellaneousOptions(SymbolDisplayMiscellaneousOptions.IncludeNullableReferenceTypeModifier);

    /// <inheritdoc />
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var services = context.SyntaxProvider.ForAttributeWithMetadataName(
            AttributeName,
            static (node, _) => node is InterfaceDeclarationSyntax,
            static (ctx, ct) => Analyze(ctx, ct));
        context.RegisterSourceOutput(services, static (spc, service) =>
        {
            if (service is null)
            {
                return;
            }
            foreach (var diagnostic in service.Diagnostics)
            {
                spc.ReportDiagnostic(diagnostic.ToDiagnostic());
            }
            if (service.Diagnostics.Length == 0)
            {
                spc.AddSource(service.HintName, RpcSourceWriter.Write(service));
            }
        });
    }

    private static RpcService? Analyze(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
    {
        if (context.TargetSymbol is not INamedTypeSymbol { TypeKind: TypeKind.Interface } service)
        {
            return null;
        }
        var declaration = (InterfaceDeclarationSyntax)context.TargetNode;
        var interfaceLocation = declaration.Identifier.GetLocation();
        var interfaceName = service.ToDisplayString(SymbolDisplayFormat.CSharpErrorMessageFormat);
        var diagnostics = ImmutableArray.CreateBuilder<DiagnosticInfo>();

        // Where the generated code can live and what it can see.
        var outermost = service;
        var generic = service.IsGenericType;
        var accessible = IsAccessible(service.DeclaredAccessibility);
        for (var container = service.ContainingType; container is not null; container = container.ContainingType)
        {
            generic |= container.IsGenericType;
            accessible &= IsAccessible(container.DeclaredAccessibility);
            outermost = container;
        }
        if (generic)
        {
            diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.GenericInterface, interfaceLocation, interfaceName));
        }
        if (!accessible)
        {
            diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.Inaccessible, interfaceLocation, interfaceName));
        }

        var prefix = DefaultPrefix(service.Name);
        var attribute = context.Attributes.FirstOrDefault();
        if (attribute is { ConstructorArguments.Length: 1 } && attribute.ConstructorArguments[0].Value is string given)
        {
            if (given.Length == 0)
            {
                diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.EmptyPrefix, interfaceLocation, interfaceName));
            }
            prefix = given;
        }

        // The members of the interface and of every interface it extends: the proxy implements them all.
        var methods = ImmutableArray.CreateBuilder<RpcMethod>();
        var names = new HashSet<string>(System.StringComparer.Ordinal);
        foreach (var type in new[] { service }.Concat(service.AllInterfaces))
        {
            foreach (var member in type.GetMembers())
            {
                cancellationToken.ThrowIfCancellationRequested();
                var location = member.Locations.FirstOrDefault(l => l.IsInSource) ?? interfaceLocation;
                switch (member)
                {
                    case IMethodSymbol { MethodKind: MethodKind.Ordinary } method:
                        if (!method.IsAbstract && !method.IsVirtual)
                        {
                            continue; // a static helper or a default implementation: nothing to implement
                        }
                        if (method.IsStatic)
                        {
                            diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.UnsupportedMethod, location, method.Name, interfaceName, "static abstract and static virtual methods cannot be proxied"));
                            continue;
                        }
                        if (!method.IsAbstract)
                        {
                            continue;
                        }
                        var rpcName = prefix + "/" + method.Name;
                        if (!names.Add(rpcName))
                        {
                            diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.DuplicateName, location, method.Name, interfaceName, rpcName));
                            continue;
                        }
                        if (AnalyzeMethod(method, rpcName, out var reason) is { } model)
                        {
                            methods.Add(model);
                        }
                        else
                        {
                            diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.UnsupportedMethod, location, method.Name, interfaceName, reason!));
                        }
                        break;
                    case IPropertySymbol property when property.IsAbstract:
                        diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.UnsupportedMember, location, interfaceName, property.IsIndexer ? "indexer" : "property", property.Name));
                        break;
                    case IEventSymbol @event when @event.IsAbstract:
                        diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.UnsupportedMember, location, interfaceName, "event", @event.Name));
                        break;
                    case IMethodSymbol { IsAbstract: true, MethodKind: MethodKind.UserDefinedOperator or MethodKind.Conversion } op:
                        diagnostics.Add(DiagnosticInfo.Create(RpcDiagnostics.UnsupportedMember, location, interfaceName, "operator", op.Name));
                        break;
                    default:
                        break; // accessors (reported with their property or event), nested types, implemented members
                }
            }
        }

        var ns = outermost.ContainingNamespace is { IsGlobalNamespace: false } n ? n.ToDisplayString() : "";
        var className = string.Join("_", ContainersAndSelf(service).Select(t => t.Name)) + "_StateMeshRpc";
        var hintName = (ns.Length == 0 ? "" : ns + ".") + className + ".g.cs";
        return new RpcService(
            ns,
            service.ToDisplayString(TypeFormat),
            className,
            hintName,
            new EquatableArray<RpcMethod>(methods.ToImmutable()),
            new EquatableArray<DiagnosticInfo>(diagnostics.ToImmutable()));
    }

    private static IEnumerable<INamedTypeSymbol> ContainersAndSelf(INamedTypeSymbol type)
    {
        var chain = new Stack<INamedTypeSymbol>();
        for (var t = type; t is not null; t = t.ContainingType)
        {
            chain.Push(t);
        }
        return chain;
    }

    private static bool IsAccessible(Accessibility accessibility) =>
        accessibility is Accessibility.Public or Accessibility.Internal or Accessibility.ProtectedOrInternal;

    /// <summary>ICalculator → Calculator; names that do not start with I and an upper-case letter stay as they are.</summary>
    internal static string DefaultPrefix(string interfaceName) =>
        interfaceName.Length > 1 && interfaceName[0] == 'I' && char.IsUpper(interfaceName[1]) ? interfaceName.Substring(1) : interfaceName;

    private static RpcMethod? AnalyzeMethod(IMethodSymbol method, string rpcName, out string? reason)
    {
        reason = null;
        if (method.IsGenericMethod)
        {
            reason = "generic methods are not supported";
            return null;
        }
        if (method.ReturnsByRef || method.ReturnsByRefReadonly || ClassifyReturn(method.ReturnType) is not { } kind)
        {
            reason = $"it returns '{method.ReturnType.ToDisplayString(SymbolDisplayFormat.CSharpErrorMessageFormat)}'";
            return null;
        }
        string? resultType = null;
        if (kind is ReturnKind.TaskOfT or ReturnKind.ValueTaskOfT)
        {
            var result = ((INamedTypeSymbol)method.ReturnType).TypeArguments[0];
            resultType = result.ToDisplayString(TypeFormat);
        }

        string? requestType = null;
        var hasCancellationToken = false;
        for (var i = 0; i < method.Parameters.Length; i++)
        {
            var parameter = method.Parameters[i];
            if (parameter.RefKind != RefKind.None)
            {
                reason = $"parameter '{parameter.Name}' is passed by reference";
                return null;
            }
            if (parameter.IsParams)
            {
                reason = $"parameter '{parameter.Name}' is a params parameter";
                return null;
            }
            if (IsCancellationToken(parameter.Type))
            {
                if (i != method.Parameters.Length - 1)
                {
                    reason = "the CancellationToken must be the last parameter";
                    return null;
                }
                hasCancellationToken = true;
                continue;
            }
            if (requestType is not null)
            {
                reason = "it has more than one request parameter (wrap them in one request type)";
                return null;
            }
            if (parameter.Type.IsRefLikeType || parameter.Type.TypeKind is TypeKind.Pointer or TypeKind.FunctionPointer)
            {
                reason = $"parameter '{parameter.Name}' has a type that cannot be serialized as a request";
                return null;
            }
            requestType = parameter.Type.ToDisplayString(TypeFormat);
        }

        var containing = method.ContainingType.ToDisplayString(TypeFormat);
        return new RpcMethod(
            containing,
            Identifier(method.Name),
            rpcName,
            method.ReturnType.ToDisplayString(TypeFormat),
            method.ReturnType.NullableAnnotation == NullableAnnotation.Annotated,
            kind,
            resultType,
            requestType,
            hasCancellationToken);
    }

    private static ReturnKind? ClassifyReturn(ITypeSymbol type)
    {
        if (type is not INamedTypeSymbol named || !IsInNamespace(named, "System", "Threading", "Tasks"))
        {
            return null;
        }
        return (named.Name, named.Arity) switch
        {
            ("Task", 0) => ReturnKind.Task,
            ("Task", 1) => ReturnKind.TaskOfT,
            ("ValueTask", 0) => ReturnKind.ValueTask,
            ("ValueTask", 1) => ReturnKind.ValueTaskOfT,
            _ => null,
        };
    }

    private static bool IsCancellationToken(ITypeSymbol type) =>
        type is INamedTypeSymbol { Name: "CancellationToken", Arity: 0, TypeKind: TypeKind.Struct } named && IsInNamespace(named, "System", "Threading");

    private static bool IsInNamespace(INamedTypeSymbol type, params string[] parts)
    {
        if (type.ContainingType is not null)
        {
            return false;
        }
        var ns = type.ContainingNamespace;
        for (var i = parts.Length - 1; i >= 0; i--)
        {
            if (ns is null || ns.IsGlobalNamespace || ns.Name != parts[i])
            {
                return false;
            }
            ns = ns.ContainingNamespace;
        }
        return ns is { IsGlobalNamespace: true };
    }

    private static string Identifier(string name) =>
        SyntaxFacts.GetKeywordKind(name) != SyntaxKind.None ? "@" + name : name;
}
