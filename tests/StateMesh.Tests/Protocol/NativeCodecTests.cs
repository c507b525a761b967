using System.Buffers;
using System.Text;
using MessagePack;
using StateMesh.Protocol;

namespace StateMesh.Tests.Protocol;

public class NativeCodecTests
{
    private static readonly NativeCodec Codec = NativeCodec.Instance;

    private static byte[] Frame(params Message[] messages)
    {
        var encoded = messages.Select(m =>
        {
            var w = new ArrayBufferWriter<byte>();
            Codec.WriteMessage(m, w);
            return w.WrittenMemory;
        }).ToArray();
        var frame = new ArrayBufferWriter<byte>();
        Codec.WriteFrame(encoded, frame);
        Assert.Equal(Codec.GetFrameLength(encoded), frame.WrittenCount);
        return frame.WrittenSpan.ToArray();
    }

    private static List<Message> Parse(byte[] frame, out CodecError? error)
    {
        var messages = new List<Message>();
        error = Codec.ParseFrame(new ReadOnlySequence<byte>(frame), messages);
        return messages;
    }

    [Fact]
    public void Every_field_survives_a_round_trip()
    {
        var message = new Message
        {
            Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = "todos/1", Names = ["a", "b", "ü"],
            CorrelationId = "42", Data = Encoding.UTF8.GetBytes("{\"x\":1}"), Version = -1, Path = "a.b[2].c",
            IsAck = true, IsError = true, IsWriteAck = true, OriginalTopic = Topic.Event, OriginalAction = 7,
            Subscription = "sub", Versions = new Dictionary<string, int> { ["r1"] = 3, ["r2"] = -1 },
            RequestorName = "ana", RequestorData = Encoding.UTF8.GetBytes("{}"), Url = "tcp://x", ProtocolVersion = "0.1a",
            SdkVersion = "1.0", SdkType = "dotnet", RequestTimeout = 250,
        };
        var parsed = Assert.Single(Parse(Frame(message), out var error));
        Assert.Null(error);
        Assert.Equal(message.ToString(), parsed.ToString());
        Assert.Equal(message.Names, parsed.Names);
        Assert.Equal(message.Data!.Value.ToArray(), parsed.Data!.Value.ToArray());
        Assert.Equal(message.RequestorData!.Value.ToArray(), parsed.RequestorData!.Value.ToArray());
        Assert.Equal(message.Versions, parsed.Versions);
        Assert.Equal((message.Url, message.ProtocolVersion, message.SdkVersion, message.SdkType, message.Subscription, message.RequestorName),
            (parsed.Url, parsed.ProtocolVersion, parsed.SdkVersion, parsed.SdkType, parsed.Subscription, parsed.RequestorName));
        Assert.Equal((message.OriginalTopic, message.OriginalAction, message.Version, message.RequestTimeout), (parsed.OriginalTopic, parsed.OriginalAction, parsed.Version, parsed.RequestTimeout));
    }

    [Fact]
    public void Absent_fields_stay_absent_and_empty_ones_stay_empty()
    {
        var parsed = Parse(Frame(
            new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "e" },
            new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "", Data = Array.Empty<byte>(), Path = "", Version = 0 }), out var error);
        Assert.Null(error);
        Assert.Equal(2, parsed.Count);
        Assert.Null(parsed[0].Data);
        Assert.Null(parsed[0].Path);
        Assert.Null(parsed[0].Version);
        Assert.Null(parsed[0].CorrelationId);
        Assert.Equal(0, parsed[1].Data!.Value.Length);
        Assert.Equal("", parsed[1].Path);
        Assert.Equal(0, parsed[1].Version);
    }

    [Fact]
    public void Many_messages_share_one_frame_in_order()
    {
        var messages = Enumerable.Range(0, 100).Select(i => new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "e" + i }).ToArray();
        var parsed = Parse(Frame(messages), out var error);
        Assert.Null(error);
        Assert.Equal(messages.Select(m => m.Name), parsed.Select(m => m.Name));
    }

    [Fact]
    public void Every_truncation_of_a_frame_is_an_error_not_an_exception()
    {
        var frame = Frame(new Message { Topic = Topic.Record, Action = 18, Name = "n", Names = ["a", "b"], Data = new byte[300], Versions = new Dictionary<string, int> { ["x"] = 1 } });
        for (var length = 0; length < frame.Length; length++)
        {
            Parse(frame[..length], out var error);
            Assert.NotNull(error);
        }
    }

    [Fact]
    public void Random_bytes_never_throw()
    {
        var random = new Random(1234);
        for (var i = 0; i < 20_000; i++)
        {
            var bytes = new byte[random.Next(0, 64)];
            random.NextBytes(bytes);
            if (bytes.Length > 0 && random.Next(2) == 0)
            {
                bytes[0] = (byte)(0x90 | random.Next(0, 4)); // a plausible array header
            }
            var messages = new List<Message>();
            _ = Codec.ParseFrame(new ReadOnlySequence<byte>(bytes), messages);
        }
    }

    [Fact]
    public void Flipping_any_byte_of_a_valid_frame_never_throws()
    {
        var frame = Frame(new Message { Topic = Topic.Event, Action = 3, Names = ["alpha", "beta"], CorrelationId = "1", Data = "{\"a\":[1,2]}"u8.ToArray() });
        for (var i = 0; i < frame.Length; i++)
        {
            for (var b = 0; b < 256; b += 7)
            {
                var copy = (byte[])frame.Clone();
                copy[i] = (byte)b;
                _ = Parse(copy, out _);
            }
        }
    }

    [Fact]
    public void A_frame_claiming_a_huge_number_of_messages_is_refused_without_allocating_them()
    {
        var w = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(w);
        writer.WriteArrayHeader(int.MaxValue);
        writer.Flush();
        var before = GC.GetAllocatedBytesForCurrentThread();
        var messages = Parse(w.WrittenSpan.ToArray(), out var error);
        Assert.NotNull(error);
        Assert.Empty(messages);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1024 * 1024, "parsing a lying header must not allocate for the claimed count");
    }

    [Fact]
    public void A_message_claiming_a_huge_names_array_is_refused()
    {
        var w = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(w);
        writer.WriteArrayHeader(1);
        writer.WriteMapHeader(3);
        writer.Write(0); writer.Write(4);
        writer.Write(1); writer.Write(3);
        writer.Write(3); writer.WriteArrayHeader(50_000_000);
        writer.Flush();
        Parse(w.WrittenSpan.ToArray(), out var error);
        Assert.NotNull(error);
    }

    [Fact]
    public void Deeply_nested_unknown_values_are_refused()
    {
        var w = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(w);
        writer.WriteArrayHeader(1);
        writer.WriteMapHeader(2);
        writer.Write(0); writer.Write(4);
        writer.Write(99);
        for (var i = 0; i < 10_000; i++) { writer.WriteArrayHeader(1); }
        writer.Write(1);
        writer.Flush();
        Parse(w.WrittenSpan.ToArray(), out var error);
        Assert.Equal(ParserAction.InvalidMessage, error!.Value.Action);
    }

    [Fact]
    public void Unknown_scalar_keys_are_skipped()
    {
        var w = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(w);
        writer.WriteArrayHeader(1);
        writer.WriteMapHeader(3);
        writer.Write(0); writer.Write(4);
        writer.Write(77); writer.Write("from the future");
        writer.Write(2); writer.Write("e");
        writer.Flush();
        var parsed = Assert.Single(Parse(w.WrittenSpan.ToArray(), out var error));
        Assert.Null(error);
        Assert.Equal("e", parsed.Name);
    }

    [Fact]
    public void A_message_without_topic_is_invalid()
    {
        var w = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(w);
        writer.WriteArrayHeader(1);
        writer.WriteMapHeader(1);
        writer.Write(1); writer.Write(2);
        writer.Flush();
        Parse(w.WrittenSpan.ToArray(), out var error);
        Assert.Equal(ParserAction.InvalidMessage, error!.Value.Action);
    }

    [Fact]
    public void Invalid_utf8_in_a_string_is_a_parse_error()
    {
        var w = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(w);
        writer.WriteArrayHeader(1);
        writer.WriteMapHeader(2);
        writer.Write(0); writer.Write(4);
        writer.Write(2); writer.WriteString(new byte[] { 0xC3, 0x28 });
        writer.Flush();
        Parse(w.WrittenSpan.ToArray(), out var error);
        Assert.Equal(ParserAction.MessageParseError, error!.Value.Action);
    }

    [Fact]
    public void Data_is_copied_out_of_the_frame_buffer()
    {
        var frame = Frame(new Message { Topic = Topic.Event, Action = 2, Name = "e", Data = "{\"a\":1}"u8.ToArray() });
        var parsed = Assert.Single(Parse(frame, out _));
        Array.Clear(frame);
        Assert.Equal("{\"a\":1}", Encoding.UTF8.GetString(parsed.Data!.Value.Span));
    }
}
