using System.Buffers;
using System.Text;
using StateMesh.Deepstream;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Fuzz;

/// <summary>
/// The seed corpora: real messages of every topic written by the project's own codecs, the frames captured between
/// @deepstream/server 7.0.2 and @deepstream/client 7.0.5 (tests/StateMesh.Deepstream.Tests), and WebSocket streams,
/// record paths and HTTP API requests as clients send them. <c>dotnet run --project fuzz/StateMesh.Fuzz -- seed fuzz/corpus</c>.
/// </summary>
internal static class Seeds
{
    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    /// <summary>Messages as clients and nodes exchange them, one or more of each topic.</summary>
    public static Message[] Messages() =>
    [
        new() { Topic = Topic.Connection, Action = (int)ConnectionAction.Challenge, Url = "ws://127.0.0.1:6020/deepstream", ProtocolVersion = "0.1a", SdkVersion = "7.0.5", SdkType = "javascript" },
        new() { Topic = Topic.Connection, Action = (int)ConnectionAction.Accept },
        new() { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping },
        new() { Topic = Topic.Connection, Action = (int)ConnectionAction.Redirect, Url = "ws://127.0.0.1:6030/deepstream" },
        new() { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = Utf8("{\"username\":\"alice\",\"password\":\"alicepw\"}") },
        new() { Topic = Topic.Auth, Action = (int)AuthAction.AuthSuccessful, Data = Utf8("{\"role\":\"tester\",\"name\":\"Alice\"}") },
        new() { Topic = Topic.Auth, Action = (int)AuthAction.AuthUnsuccessful, IsError = true },
        new() { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = "prices/eurusd", Data = Utf8("{\"bid\":1.0842,\"ask\":1.0844}") },
        new() { Topic = Topic.Event, Action = (int)EventAction.Subscribe, CorrelationId = "1", Names = ["chat/general", "chat/random"] },
        new() { Topic = Topic.Event, Action = (int)EventAction.Subscribe, CorrelationId = "1", Names = ["chat/general"], IsAck = true },
        new() { Topic = Topic.Event, Action = (int)EventAction.Listen, Name = "^prices/.*", CorrelationId = "7" },
        new() { Topic = Topic.Event, Action = (int)EventAction.SubscriptionForPatternFound, Name = "^prices/.*", Subscription = "prices/eurusd" },
        new() { Topic = Topic.Event, Action = (int)EventAction.NotSubscribed, Name = "chat/none", IsError = true, OriginalAction = (int)EventAction.Unsubscribe },
        new() { Topic = Topic.Record, Action = (int)RecordAction.SubscribeCreateAndRead, CorrelationId = "0", Names = ["test/rec-12345678"] },
        new() { Topic = Topic.Record, Action = (int)RecordAction.ReadResponse, Name = "todos/1", Version = 3, Data = Utf8("{\"title\":\"buy milk\",\"done\":false}") },
        new() { Topic = Topic.Record, Action = (int)RecordAction.Update, Name = "todos/1", Version = 4, Data = Utf8("{\"title\":\"buy milk\",\"done\":true}"), IsWriteAck = true, CorrelationId = "12" },
        new() { Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = "todos/1", Version = 5, Path = "items[7].done", Data = Utf8("true") },
        new() { Topic = Topic.Record, Action = (int)RecordAction.Patch, Name = "todos/1", Version = -1, Path = "a.b", Data = Utf8("{\"c\":[1,2,3]}") },
        new() { Topic = Topic.Record, Action = (int)RecordAction.Erase, Name = "todos/1", Version = 6, Path = "items[0]" },
        new() { Topic = Topic.Record, Action = (int)RecordAction.HeadBulk, CorrelationId = "3", Names = ["a", "b", "c"] },
        new() { Topic = Topic.Record, Action = (int)RecordAction.HeadResponseBulk, CorrelationId = "3", Versions = new Dictionary<string, int> { ["a"] = 1, ["b"] = -1, ["c"] = 12 } },
        new() { Topic = Topic.Record, Action = (int)RecordAction.VersionExists, Name = "todos/1", Version = 9, IsError = true, Data = Utf8("{}"), OriginalAction = (int)RecordAction.Update },
        new() { Topic = Topic.Record, Action = (int)RecordAction.WriteAcknowledgement, CorrelationId = "12", IsWriteAck = true, Data = Utf8("[\"todos/1\"]") },
        new() { Topic = Topic.Record, Action = (int)RecordAction.Listen, Name = "^todos/.*", CorrelationId = "4" },
        new() { Topic = Topic.Record, Action = (int)RecordAction.Notify, CorrelationId = "5", Names = ["todos/1", "todos/2"] },
        new() { Topic = Topic.Rpc, Action = (int)RpcAction.Request, Name = "calc/AddAsync", CorrelationId = "r1", Data = Utf8("{\"a\":2,\"b\":3}") },
        new() { Topic = Topic.Rpc, Action = (int)RpcAction.Request, Name = "calc/AddAsync", CorrelationId = "r1", Data = Utf8("{\"a\":2}"), RequestorName = "ana", RequestorData = Utf8("{\"level\":3}") },
        new() { Topic = Topic.Rpc, Action = (int)RpcAction.Response, Name = "calc/AddAsync", CorrelationId = "r1", Data = Utf8("5") },
        new() { Topic = Topic.Rpc, Action = (int)RpcAction.Provide, CorrelationId = "p", Names = ["calc/AddAsync"] },
        new() { Topic = Topic.Rpc, Action = (int)RpcAction.NoRpcProvider, Name = "calc/AddAsync", CorrelationId = "r2", IsError = true, OriginalAction = (int)RpcAction.Request, RequestTimeout = 5000 },
        new() { Topic = Topic.Presence, Action = (int)PresenceAction.Query, CorrelationId = "q", Names = ["ana", "bob"] },
        new() { Topic = Topic.Presence, Action = (int)PresenceAction.QueryResponse, CorrelationId = "q", Data = Utf8("{\"ana\":true,\"bob\":false}") },
        new() { Topic = Topic.Presence, Action = (int)PresenceAction.PresenceJoin, Name = "ana" },
        new() { Topic = Topic.Parser, Action = (int)ParserAction.UnknownTopic, OriginalTopic = (Topic)99, Data = Utf8("\"unknown topic\"") },
    ];

    /// <summary>Frames captured between @deepstream/server 7.0.2 and @deepstream/client 7.0.5 (as in DeepstreamCodecTests).</summary>
    private static byte[][] CapturedDeepstreamFrames() =>
    [
        Hex("06 10 02 1a 02 08 04"),
        Hex("06 10 02 1a 02 08 03"),
        Hex("06 10 03 1a 02 08 04"),
        [.. Hex("28 10 03 1a 24 08 03 12 20"), .. Utf8("{\"role\":\"tester\",\"name\":\"Alice\"}")],
        [.. Hex("3f 10 02 1a 3b 08 05 2a 1e"), .. Utf8("ws://127.0.0.1:6021/deepstream"), .. Hex("32 04"), .. Utf8("0.1a"), .. Hex("3a 05"), .. Utf8("7.0.5"), .. Hex("42 0a"), .. Utf8("javascript")],
        [.. Hex("31 10 03 1a 2d 08 02 12 29"), .. Utf8("{\"username\":\"alice\",\"password\":\"alicepw\"}")],
        [.. Hex("1c 10 05 1a 18 08 17 1a 01"), .. Utf8("0"), .. Hex("3a 11"), .. Utf8("test/rec-12345678")],
        [.. Hex("1e 10 05 1a 1a 08 17 1a 01"), .. Utf8("0"), .. Hex("28 01 3a 11"), .. Utf8("test/rec-12345678")],
        [.. Hex("1f 10 05 1a 1b 08 04 12 02"), .. Utf8("{}"), .. Hex("32 11"), .. Utf8("test/rec-12345678"), .. Hex("68 00")],
        Hex("02 10 63"),
    ];

    public static void Write(string root)
    {
        var messages = Messages();
        var deepstream = DeepstreamCodec.Instance;
        var native = NativeCodec.Instance;
        var deepstreamFrames = CapturedDeepstreamFrames().Concat(messages.Select(deepstream.EncodeFrame)).ToList();
        var nativeFrames = messages.Select(m => NativeFrame([m])).Append(NativeFrame(messages[7..13])).Append(NativeFrame(messages)).ToList();

        Save(root, "deepstream", deepstreamFrames);
        Save(root, "native", nativeFrames);
        Save(root, "websocket-node", WebSocketStreams(deepstreamFrames.Concat(nativeFrames).ToList(), masked: true));
        Save(root, "websocket-client", WebSocketStreams(deepstreamFrames.Concat(nativeFrames).ToList(), masked: false));
        Save(root, "record-path", RecordPaths());
        Save(root, "http-api", HttpApiRequests());
    }

    private static byte[] NativeFrame(Message[] messages)
    {
        var encoded = messages.Select(m =>
        {
            var output = new ArrayBufferWriter<byte>();
            NativeCodec.Instance.WriteMessage(m, output);
            return (ReadOnlyMemory<byte>)output.WrittenMemory.ToArray();
        }).ToArray();
        var frame = new ArrayBufferWriter<byte>();
        NativeCodec.Instance.WriteFrame(encoded, frame);
        return frame.WrittenSpan.ToArray();
    }

    /// <summary>What a peer sends: binary messages, some fragmented, pings, a close; masked when a client sends them.</summary>
    private static List<byte[]> WebSocketStreams(List<byte[]> payloads, bool masked)
    {
        uint key = 0x1234_5678;
        uint? Key() => masked ? key = (key * 1_103_515_245) + 12_345 : null;
        byte[] Frame(byte opcode, byte[] payload, bool fin = true)
        {
            var bytes = WebSocketFraming.Frame(opcode, new ReadOnlySequence<byte>(payload), Key());
            if (!fin)
            {
                bytes[0] &= 0x7F;
            }
            return bytes;
        }
        var streams = new List<byte[]>();
        foreach (var p in payloads.Take(12))
        {
            streams.Add(Frame(WebSocketFraming.Binary, p));
        }
        // A session's worth: several messages in one read, a ping between them, a close at the end.
        streams.Add([.. payloads.Take(6).SelectMany(p => Frame(WebSocketFraming.Binary, p)), .. Frame(WebSocketFraming.Ping, Utf8("hb")),
            .. Frame(WebSocketFraming.Binary, payloads[^1]), .. Frame(WebSocketFraming.Close, [.. WebSocketFraming.ClosePayload(1000, "bye").ToArray()])]);
        // A message in three fragments with a ping in the middle.
        var big = payloads.OrderByDescending(p => p.Length).First();
        var third = big.Length / 3;
        streams.Add([.. Frame(WebSocketFraming.Binary, big[..third], fin: false), .. Frame(WebSocketFraming.Ping, []),
            .. Frame(WebSocketFraming.Continuation, big[third..(2 * third)], fin: false), .. Frame(WebSocketFraming.Continuation, big[(2 * third)..])]);
        // Lengths on 16 and 64 bits.
        streams.Add(Frame(WebSocketFraming.Binary, [.. Enumerable.Repeat((byte)0x2A, 300)]));
        var wide = Frame(WebSocketFraming.Binary, [.. Enumerable.Range(0, 200).Select(i => (byte)i)]);
        streams.Add([wide[0], (byte)((wide[1] & 0x80) | 127), 0, 0, 0, 0, 0, 0, 0, 200, .. wide[4..]]);
        streams.Add(Frame(WebSocketFraming.Pong, Utf8("late")));
        streams.Add(Frame(WebSocketFraming.Close, [0x03]));
        streams.Add(Frame(WebSocketFraming.Text, Utf8("{\"text\":true}")));
        return streams;
    }

    private static List<byte[]> RecordPaths()
    {
        byte[] Input(string path, string stored, string? value) =>
            value is null ? [.. Utf8(path), 0xFF, .. Utf8(stored)] : [.. Utf8(path), 0xFF, .. Utf8(stored), 0xFF, .. Utf8(value)];
        const string todo = "{\"title\":\"buy milk\",\"done\":false,\"items\":[{\"done\":true},{\"done\":false}],\"tags\":{\"home\":1}}";
        return
        [
            Input("done", todo, "true"),
            Input("items[1].done", todo, "true"),
            Input("items[3].text", todo, "\"eggs\""),
            Input("tags.work", todo, "{\"since\":\"2026-01-01\"}"),
            Input("a.b[2].c", "{}", "[1,2,3]"),
            Input("[0]", "[]", "null"),
            Input("[1][0]", "[[1],[2,3]]", "\"x\""),
            Input("title", todo, null),
            Input("items[0]", todo, null),
            Input("tags.home", todo, null),
            Input("deep.a.b.c.d.e.f.g.h", "{\"deep\":{}}", "{\"i\":{\"j\":[{}]}}"),
            Input("__proto__.polluted", "{}", "1"),
            Input("items[100001]", todo, "1"),
            Input("items.[0]", todo, "1"),
        ];
    }

    private static List<byte[]> HttpApiRequests() =>
    [
        .. new[]
        {
            "{\"token\":\"Ilm3RZXj7Ak0wR0CcdRH6mPz8Zz2mQ1bZ7cM1a0eMDQ\",\"body\":[{\"topic\":\"event\",\"action\":\"emit\",\"eventName\":\"prices/eurusd\",\"data\":{\"bid\":1.0842}}]}",
            "{\"authData\":{\"username\":\"alice\",\"password\":\"alicepw\"},\"body\":[{\"topic\":\"record\",\"action\":\"read\",\"recordName\":\"todos/1\"},{\"topic\":\"record\",\"action\":\"head\",\"recordName\":\"todos/1\"}]}",
            "{\"body\":[{\"topic\":\"record\",\"action\":\"write\",\"recordName\":\"todos/1\",\"path\":\"items[0].done\",\"data\":true},{\"topic\":\"list\",\"action\":\"write\",\"listName\":\"lists/a\",\"data\":[\"todos/1\",\"todos/2\"]}]}",
            "{\"body\":[{\"topic\":\"rpc\",\"action\":\"make\",\"rpcName\":\"calc/AddAsync\",\"data\":{\"a\":2,\"b\":3}},{\"topic\":\"record\",\"action\":\"notify\",\"recordNames\":[\"todos/1\"]}]}",
            "{\"body\":[{\"topic\":\"presence\",\"action\":\"query\",\"names\":[\"ana\",\"bob\"]},{\"topic\":\"presence\",\"action\":\"query\"},{\"topic\":\"record\",\"action\":\"delete\",\"recordName\":\"todos/1\"}]}",
            "{\"body\":[42,null,\"x\",{\"topic\":\"unknown\"}]}",
            "{\"username\":\"alice\",\"password\":\"alicepw\"}",
            "{\"body\":{}}",
            "[]",
        }.Select(Utf8),
    ];

    private static void Save(string root, string target, List<byte[]> inputs)
    {
        var directory = Path.Combine(root, target);
        Directory.CreateDirectory(directory);
        foreach (var old in Directory.GetFiles(directory, "seed-*"))
        {
            File.Delete(old);
        }
        for (var i = 0; i < inputs.Count; i++)
        {
            File.WriteAllBytes(Path.Combine(directory, $"seed-{i:D3}"), inputs[i]);
        }
        Console.WriteLine($"{target}: {inputs.Count} seeds in {directory}");
    }
}
