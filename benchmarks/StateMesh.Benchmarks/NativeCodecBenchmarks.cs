using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using StateMesh.Protocol;

namespace StateMesh.Benchmarks;

/// <summary>The native codec: one event message encoded, and frames of 1 and 32 messages parsed.</summary>
[MemoryDiagnoser]
public class NativeCodecBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(4096);
    private readonly List<Message> _parsed = new(64);
    private Message _emit = null!;
    private byte[] _oneMessageFrame = null!;
    private byte[] _batchFrame = null!;

    [GlobalSetup]
    public void Setup()
    {
        _emit = new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "prices/eurusd", Data = Encoding.UTF8.GetBytes("{\"bid\":1.0842,\"ask\":1.0844,\"t\":1764288000000}") };
        _oneMessageFrame = Frame(1);
        _batchFrame = Frame(32);
    }

    private byte[] Frame(int count)
    {
        var encoded = Enumerable.Range(0, count).Select(_ =>
        {
            var w = new ArrayBufferWriter<byte>();
            NativeCodec.Instance.WriteMessage(_emit, w);
            return w.WrittenMemory;
        }).ToArray();
        var frame = new ArrayBufferWriter<byte>();
        NativeCodec.Instance.WriteFrame(encoded, frame);
        return frame.WrittenSpan.ToArray();
    }

    [Benchmark]
    public int WriteEmit()
    {
        _output.ResetWrittenCount();
        NativeCodec.Instance.WriteMessage(_emit, _output);
        return _output.WrittenCount;
    }

    [Benchmark]
    public int ParseOneMessageFrame()
    {
        _parsed.Clear();
        NativeCodec.Instance.ParseFrame(new ReadOnlySequence<byte>(_oneMessageFrame), _parsed);
        return _parsed.Count;
    }

    [Benchmark(OperationsPerInvoke = 32)]
    public int ParseFrameOf32Messages()
    {
        _parsed.Clear();
        NativeCodec.Instance.ParseFrame(new ReadOnlySequence<byte>(_batchFrame), _parsed);
        return _parsed.Count;
    }
}
