using System.Text;
using BenchmarkDotNet.Attributes;
using StateMesh.Records;

namespace StateMesh.Benchmarks;

/// <summary>What a PATCH costs the node: parse the stored document, set the path, serialize it again.</summary>
[MemoryDiagnoser]
public class RecordPatchBenchmarks
{
    private ReadOnlyMemory<byte> _document;
    private PathToken[] _path = null!;
    private ReadOnlyMemory<byte>? _value;

    [GlobalSetup]
    public void Setup()
    {
        var items = string.Join(",", Enumerable.Range(0, 20).Select(i => $"{{\"id\":{i},\"title\":\"item {i}\",\"done\":false}}"));
        _document = Encoding.UTF8.GetBytes($"{{\"owner\":\"ana\",\"items\":[{items}]}}"); // about 1 KB
        RecordPath.TryParse("items[7].done", out _path, out _);
        _value = "true"u8.ToArray();
    }

    [Benchmark]
    public int PatchOneKilobyteDocument()
    {
        RecordsTopic.TryApplyPath(_document, _path, _value, 1024 * 1024, out var next, out _);
        return next.Length;
    }

    [Benchmark]
    public int ParsePath() => RecordPath.TryParse("items[7].done", out var tokens, out _) ? tokens.Length : 0;
}
