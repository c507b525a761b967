using System.Buffers;
using System.Text;
using StateMesh.Protocol;

namespace StateMesh.Deepstream.Tests;

/// <summary>The codec against frames captured between @deepstream/server 7.0.2 and @deepstream/client 7.0.5.</summary>
public class DeepstreamCodecTests
{
    private static readonly DeepstreamCodec Codec = DeepstreamCodec.Instance;

    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    private static byte[] Frame(Message message)
    {
        var encoded = new ArrayBufferWriter<byte>();
        Codec.WriteMessage(message, encoded);
        var frame = new ArrayBufferWriter<byte>();
        Codec.WriteFrame([encoded.WrittenMemory], frame);
        Assert.Equal(Codec.GetFrameLength([encoded.WrittenMemory]), frame.WrittenCount);
        Assert.Equal(frame.WrittenSpan.ToArray(), Codec.EncodeFrame(message));
        return frame.WrittenSpan.ToArray();
    }

    private static Message Parse(byte[] frame)
    {
        var messages = new List<Message>();
        var error = Codec.ParseFrame(new ReadOnlySequence<byte>(frame), messages);
        Assert.Null(error);
        return Assert.Single(messages);
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void Accept_is_byte_identical_to_the_servers()
    {
        Assert.Equal(Hex("06 10 02 1a 02 08 04"), Frame(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Accept }));
    }

    [Fact]
    public void Pong_and_auth_results_are_byte_identical()
    {
        Assert.Equal(Hex("06 10 02 1a 02 08 03"), Frame(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Pong }));
        Assert.Equal(Hex("06 10 03 1a 02 08 04"), Frame(new Message { Topic = Topic.Auth, Action = (int)AuthAction.AuthUnsuccessful }));
        var clientData = "{\"role\":\"tester\",\"name\":\"Alice\"}";
        var expected = Hex("28 10 03 1a 24 08 03 12 20").Concat(Utf8(clientData)).ToArray();
        Assert.Equal(expected, Frame(new Message { Topic = Topic.Auth, Action = (int)AuthAction.AuthSuccessful, Data = Utf8(clientData) }));
    }

    [Fact]
    public void The_clients_challenge_parses()
    {
        var frame = Hex("3f 10 02 1a 3b 08 05 2a 1e").Concat(Utf8("ws://127.0.0.1:6021/deepstream")).Concat(Hex("32 04")).Concat(Utf8("0.1a"))
            .Concat(Hex("3a 05")).Concat(Utf8("7.0.5")).Concat(Hex("42 0a")).Concat(Utf8("javascript")).ToArray();
        var m = Parse(frame);
        Assert.Equal((Topic.Connection, (int)ConnectionAction.Challenge, "ws://127.0.0.1:6021/deepstream", "0.1a", "7.0.5", "javascript"),
            (m.Topic, m.Action, m.Url, m.ProtocolVersion, m.SdkVersion, m.SdkType));
    }

    [Fact]
    public void The_clients_auth_request_parses_with_its_json()
    {
        var json = "{\"username\":\"alice\",\"password\":\"alicepw\"}";
        var m = Parse(Hex("31 10 03 1a 2d 08 02 12 29").Concat(Utf8(json)).ToArray());
        Assert.Equal((Topic.Auth, (int)AuthAction.Request, json), (m.Topic, m.Action, Encoding.UTF8.GetString(m.Data!.Value.Span)));
    }

    [Fact]
    public void Subscribe_create_and_read_and_its_ack_match_the_capture()
    {
        var name = "test/rec-12345678";
        Assert.Equal(17, name.Length);
        var request = Hex("1c 10 05 1a 18 08 17 1a 01").Concat(Utf8("0")).Concat(Hex("3a 11")).Concat(Utf8(name)).ToArray();
        var m = Parse(request);
        Assert.Equal((Topic.Record, (int)RecordAction.SubscribeCreateAndRead, "0", name), (m.Topic, m.Action, m.CorrelationId, Assert.Single(m.Names!)));
        var ack = Hex("1e 10 05 1a 1a 08 17 1a 01").Concat(Utf8("0")).Concat(Hex("28 01 3a 11")).Concat(Utf8(name)).ToArray();
        Assert.Equal(ack, Frame(m with { IsAck = true }));
    }

    [Fact]
    public void Read_response_writes_version_0_explicitly()
    {
        var name = "test/rec-12345678";
        var expected = Hex("1f 10 05 1a 1b 08 04 12 02").Concat(Utf8("{}")).Concat(Hex("32 11")).Concat(Utf8(name)).Concat(Hex("68 00")).ToArray();
        Assert.Equal(expected, Frame(new Message { Topic = Topic.Record, Action = (int)RecordAction.ReadResponse, Name = name, Version = 0, Data = Utf8("{}") }));
    }

    [Fact]
    public void A_version_of_minus_one_goes_out_as_ten_bytes()
    {
        var frame = Frame(new Message { Topic = Topic.Record, Action = (int)RecordAction.HeadResponse, Name = "missing-1", Version = -1 });
        Assert.EndsWith("68FFFFFFFFFFFFFFFFFF01", Convert.ToHexString(frame), StringComparison.Ordinal);
        Assert.Equal(-1, Parse(frame).Version);
    }

    [Fact]
    public void Update_broadcasts_carry_is_write_ack_false_and_never_an_empty_path()
    {
        var frame = Frame(new Message { Topic = Topic.Record, Action = (int)RecordAction.Update, Name = "r", Version = 2, Data = Utf8("{}") });
        Assert.Contains("5800", Convert.ToHexString(frame), StringComparison.Ordinal);
        Assert.DoesNotContain("62", Convert.ToHexString(frame)[10..14], StringComparison.Ordinal);
        var parsed = Parse(frame);
        Assert.Null(parsed.Path);
        Assert.False(parsed.IsWriteAck);
    }

    [Fact]
    public void Every_field_of_every_topic_survives_a_round_trip()
    {
        var messages = new[]
        {
            new Message { Topic = Topic.Event, Action = 2, Name = "e", Names = ["a", "b"], CorrelationId = "1", Data = Utf8("1"), IsAck = true, IsError = true, Subscription = "s", OriginalTopic = Topic.Event, OriginalAction = 3 },
            new Message { Topic = Topic.Record, Action = 19, Name = "r", Names = ["x"], CorrelationId = "c", Data = Utf8("\"v\""), IsAck = true, IsError = true, IsWriteAck = true, Subscription = "sub", OriginalAction = 18, Path = "a.b[1]", Version = 7, Versions = new Dictionary<string, int> { ["r1"] = 1, ["r2"] = -1 } },
            new Message { Topic = Topic.Rpc, Action = 2, Name = "add", Names = ["p"], CorrelationId = "k", Data = Utf8("{}"), IsAck = true, IsError = true, OriginalAction = 6, RequestorName = "ana", RequestorData = Utf8("{\"t\":1}") },
            new Message { Topic = Topic.Presence, Action = 4, Name = "u", Names = ["u1", "u2"], CorrelationId = "q", Data = Utf8("{\"u1\":true}"), IsAck = true, IsError = true, OriginalTopic = Topic.Presence, OriginalAction = 10 },
            new Message { Topic = Topic.Parser, Action = 1, Data = Utf8("\"x\""), OriginalTopic = Topic.Record, OriginalAction = 99 },
        };
        foreach (var m in messages)
        {
            var back = Parse(Frame(m));
            Assert.Equal(m.ToString(), back.ToString());
            Assert.Equal(m.Names, back.Names);
            Assert.Equal(m.Versions, back.Versions);
            Assert.Equal((m.Subscription, m.RequestorName, m.IsWriteAck), (back.Subscription, back.RequestorName, back.IsWriteAck));
            Assert.Equal(m.RequestorData?.ToArray(), back.RequestorData?.ToArray());
        }
    }

    [Fact]
    public void An_unknown_topic_parses_to_a_message_the_node_answers_with_unknown_topic()
    {
        // Captured: bytes 02 10 63 (topic 99) got PARSER UNKNOWN_TOPIC and the connection stayed open.
        Assert.Equal((Topic)99, Parse(Hex("02 10 63")).Topic);
    }

    [Fact]
    public void Garbage_and_truncation_are_errors_never_exceptions()
    {
        var good = Frame(new Message { Topic = Topic.Record, Action = 18, Name = "r", Version = 1, Data = Utf8("{\"a\":1}") });
        for (var length = 0; length < good.Length; length++)
        {
            var messages = new List<Message>();
            Assert.NotNull(Codec.ParseFrame(new ReadOnlySequence<byte>(good[..length]), messages));
        }
        var random = new Random(5);
        for (var i = 0; i < 20_000; i++)
        {
            var bytes = new byte[random.Next(0, 40)];
            random.NextBytes(bytes);
            _ = Codec.ParseFrame(new ReadOnlySequence<byte>(bytes), []);
        }
        // A truncated varint.
        Assert.NotNull(Codec.ParseFrame(new ReadOnlySequence<byte>(Hex("ff ff ff")), []));
    }
}
