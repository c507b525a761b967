using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using StateMesh.Client;
using StateMesh.Generators;

namespace StateMesh.Tests.Generators;

/// <summary>The generator driven directly on small sources: what it reports, and that its output compiles cleanly.</summary>
public class RpcProxyGeneratorTests
{
    private static readonly ImmutableArray<MetadataReference> References =
    [
        .. ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => p.Length > 0)
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)),
        MetadataReference.CreateFromFile(typeof(StateMeshRpcAttribute).Assembly.Location),
    ];

    private sealed record Result(Compilation Output, ImmutableArray<Diagnostic> GeneratorDiagnostics, ImmutableArray<GeneratedSourceResult> Sources);

    private static Result Run(string source)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var compilation = CSharpCompilation.Create(
            "GeneratorInput",
            [CSharpSyntaxTree.ParseText(source, parse, path: "Input.cs")],
            References,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        GeneratorDriver driver = CSharpGeneratorDriver.Create([new RpcProxyGenerator().AsSourceGenerator()], parseOptions: parse);
        driver = driver.RunGeneratorsAndUpdateCompilation(compilation, out var output, out var diagnostics);
        var run = driver.GetRunResult().Results.Single();
        Assert.Null(run.Exception);
        return new Result(output, diagnostics, run.GeneratedSources);
    }

    private const string Usings = """
        using System.Collections.Generic;
        using System.Threading;
        using System.Threading.Tasks;
        using StateMesh.Client;

        """;

    public static TheoryData<string, string, string> Unsupported => new()
    {
        { "SMRPC001", "AddAsync", "Task<int> AddAsync(int a, int b);" },
        { "SMRPC001", "Add", "int Add(int a);" },
        { "SMRPC001", "Run", "void Run();" },
        { "SMRPC001", "GetAsync", "Task<T> GetAsync<T>(T request);" },
        { "SMRPC001", "AddAsync", "Task<int> AddAsync(CancellationToken ct, int a);" },
        { "SMRPC001", "AddAsync", "Task<int> AddAsync(ref int a);" },
        { "SMRPC001", "AddAsync", "Task<int> AddAsync(params int[] a);" },
        { "SMRPC001", "ListAsync", "IAsyncEnumerable<int> ListAsync();" },
        { "SMRPC002", "Name", "string Name { get; }" },
        { "SMRPC002", "Changed", "event System.EventHandler Changed;" },
        { "SMRPC003", "DoAsync", "Task DoAsync(int a); Task DoAsync(string a);" },
    };

    [Theory]
    [MemberData(nameof(Unsupported))]
    public void An_unsupported_member_is_an_error_and_nothing_is_generated(string id, string member, string declaration)
    {
        var result = Run(Usings + "namespace Shapes;\n[StateMeshRpc]\npublic interface IShapes\n{\n    Task<int> FineAsync(int a);\n    " + declaration + "\n}\n");
        var diagnostic = Assert.Single(result.GeneratorDiagnostics);
        Assert.Equal(id, diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Contains("Shapes.IShapes", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        Assert.Contains("'" + member + "'", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        // Reported at the member, in the user's source.
        Assert.Equal("Input.cs", diagnostic.Location.GetLineSpan().Path);
        Assert.Empty(result.Sources);
    }

    [Fact]
    public void Two_request_parameters_are_reported_with_a_hint_to_wrap_them()
    {
        var result = Run(Usings + "[StateMeshRpc(\"calc\")]\npublic interface ICalc\n{\n    Task<int> AddAsync(int a, int b, CancellationToken ct);\n}\n");
        var diagnostic = Assert.Single(result.GeneratorDiagnostics);
        Assert.Equal("SMRPC001", diagnostic.Id);
        Assert.Contains("more than one request parameter", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        var span = diagnostic.Location.GetLineSpan();
        Assert.Equal(("Input.cs", 7), (span.Path, span.StartLinePosition.Line)); // 0-based: the line of AddAsync
    }

    [Theory]
    [InlineData("SMRPC004", "[StateMeshRpc] public interface IBox<T> { Task<T> GetAsync(); }")]
    [InlineData("SMRPC004", "public class Outer<T> { [StateMeshRpc] public interface IInner { Task<int> GetAsync(); } }")]
    [InlineData("SMRPC005", "public class Outer { [StateMeshRpc] private interface IHidden { Task<int> GetAsync(); } }")]
    [InlineData("SMRPC006", "[StateMeshRpc(\"\")] public interface IEmpty { Task<int> GetAsync(); }")]
    public void An_unsupported_interface_is_an_error(string id, string source)
    {
        var result = Run(Usings + source);
        Assert.Equal(id, Assert.Single(result.GeneratorDiagnostics).Id);
        Assert.Empty(result.Sources);
    }

    [Fact]
    public void Supported_shapes_in_any_namespace_compile_without_a_warning()
    {
        var result = Run(Usings + """
            namespace Shop.Api
            {
                public sealed record Item(string Name, int? Count);

                [StateMeshRpc("shop")]
                public interface IShop : IBaseShop
                {
                    Task<List<Item>> ListAsync(string? filter, CancellationToken cancellationToken = default);
                    Task<Item?> FindAsync(int id);
                    Task<int> CountAsync();
                    Task<Dictionary<string, List<Item?>>> GroupAsync(CancellationToken ct);
                    Task ClearAsync();
                    Task ResetAsync(Item item, CancellationToken ct);
                    ValueTask<int?> MaybeAsync(int? value);
                    ValueTask PokeAsync(CancellationToken ct);
                    Task<string> @event(string @class);
                    Task<int> Default() => Task.FromResult(1);
                    static int Helper() => 2;
                }

                public interface IBaseShop
                {
                    Task<bool> PingAsync();
                }

                public static class Outer
                {
                    [StateMeshRpc]
                    internal interface INested { Task<string> EchoAsync(string text); }
                }

                [StateMeshRpc]
                public interface IEmpty { }
            }

            [StateMeshRpc]
            public interface IGlobal { Task<long> NowAsync(); }

            #nullable disable
            [StateMeshRpc]
            public interface IOblivious { Task<string> EchoAsync(string text); }
            """);
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Equal(5, result.Sources.Length);
        var problems = result.Output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems) + "\n" + string.Join("\n\n", result.Sources.Select(s => s.SourceText.ToString())));

        var shop = result.Sources.Single(s => s.HintName.Contains("IShop", StringComparison.Ordinal)).SourceText.ToString();
        Assert.StartsWith("// <auto-generated/>", shop, StringComparison.Ordinal);
        Assert.Contains("#nullable enable", shop, StringComparison.Ordinal);
        foreach (var name in new[] { "shop/ListAsync", "shop/FindAsync", "shop/ClearAsync", "shop/PingAsync", "shop/event" })
        {
            Assert.Contains("\"" + name + "\"", shop, StringComparison.Ordinal);
        }
        Assert.DoesNotContain("shop/Default", shop, StringComparison.Ordinal);
        Assert.DoesNotContain("shop/Helper", shop, StringComparison.Ordinal);
        Assert.Contains("global::System.Runtime.CompilerServices.ModuleInitializer", shop, StringComparison.Ordinal);
        Assert.Contains("\"Nested/EchoAsync\"", result.Sources.Single(s => s.HintName.Contains("INested", StringComparison.Ordinal)).SourceText.ToString(), StringComparison.Ordinal);
        Assert.Contains("\"Global/NowAsync\"", result.Sources.Single(s => s.HintName.Contains("IGlobal", StringComparison.Ordinal)).SourceText.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void The_pipeline_caches_when_an_unrelated_file_changes()
    {
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var service = CSharpSyntaxTree.ParseText(Usings + "[StateMeshRpc] public interface ICalc { Task<int> AddAsync(int a); }", parse);
        var other = CSharpSyntaxTree.ParseText("public static class Other { public static int X => 1; }", parse);
        var compilation = CSharpCompilation.Create("Cache", [service, other], References, new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        GeneratorDriver driver = CSharpGeneratorDriver.Create([new RpcProxyGenerator().AsSourceGenerator()], parseOptions: parse,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));
        driver = driver.RunGenerators(compilation);
        var changed = compilation.ReplaceSyntaxTree(other, CSharpSyntaxTree.ParseText("public static class Other { public static int X => 2; }", parse));
        driver = driver.RunGenerators(changed);
        var outputs = driver.GetRunResult().Results.Single().TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs);
        Assert.All(outputs, o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, o.Reason.ToString()));
    }
}
