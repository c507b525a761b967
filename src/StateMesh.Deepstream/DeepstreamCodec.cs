using System.Buffers;
using System.Text;
using StateMesh.Protocol;

namespace StateMesh.Deepstream;

/// <summary>
/// The deepstream v5+ protocol that @deepstream/client 7 speaks: each frame is <c>varint(length) ‖ Message</c>, where
/// <c>Message = { topic: field 2, message: field 3 }</c> and <c>message</c> holds the topic's own protobuf message.
/// Fields are written only when present (presence matters to the JavaScript client); versions of -1 are sign-extended.
/// One message per frame.
/// </summary>
public sealed class DeepstreamCodec : IMessageCodec
{
    /// <summary>The shared instance.</summary>
    public static DeepstreamCodec Instance { get; } = new();

    /// <inheritdoc />
    public string Name => "deepstream";

    /// <inheritdoc />
    public int MaxMessagesPerFrame => 1;

    /// <inheritdoc />
    public bool ClosesOnParseError => true;

    // ---------- writing ----------

    // The topic message is written to a per-thread scratch buffer first: the envelope needs its length.
    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_inner;

    /// <inheritdoc />
    public void WriteMessage(Message message, IBufferWriter<byte> output)
    {
        var inner = t_inner ??= new ArrayBufferWriter<byte>(1024);
        inner.ResetWrittenCount();
        EncodeTopicMessage(message, new FieldWriter(inner));
        new FieldWriter(output).Int(2, (int)message.Topic).Bytes(3, inner.WrittenMemory);
        if (inner.Capacity > 64 * 1024)
        {
            t_inner = null; // do not keep a large message's buffer per thread
        }
    }

    /// <summary>One message as a whole frame, ready to send as one binary WebSocket message (tools and tests).</summary>
    public byte[] EncodeFrame(Message message)
    {
        var encoded = new ArrayBufferWriter<byte>();
        WriteMessage(message, encoded);
        var frame = new ArrayBufferWriter<byte>(GetFrameLength([encoded.WrittenMemory]));
        WriteFrame([encoded.WrittenMemory], frame);
        return frame.WrittenSpan.ToArray();
    }

    /// <inheritdoc />
    public int GetFrameLength(ReadOnlySpan<ReadOnlyMemory<byte>> encodedMessages)
    {
        var length = 0;
        foreach (var m in encodedMessages)
        {
            length += FieldWriter.VarintSize((uint)m.Length) + m.Length;
        }
        return length;
    }

    /// <inheritdoc />
    public void WriteFrame(ReadOnlySpan<ReadOnlyMemory<byte>> encodedMessages, IBufferWriter<byte> output)
    {
        var w = new FieldWriter(output);
        foreach (var m in encodedMessages)
        {
            w.Varint((uint)m.Length);
            output.Write(m.Span);
        }
    }

    private static void EncodeTopicMessage(Message m, FieldWriter w)
    {
        var isRecordBroadcast = m.Topic == Topic.Record && m.Action is (int)RecordAction.Update or (int)RecordAction.Patch && m.CorrelationId is null;
        switch (m.Topic)
        {
            case Topic.Parser:
                w.Int(1, m.Action).Bytes(2, m.Data).Int(8, (int?)m.OriginalTopic).Int(9, m.OriginalAction);
                break;
            case Topic.Connection:
                w.Int(1, m.Action).Bytes(2, m.Data).Bool(3, m.IsError).Bool(4, m.IsAck).Str(5, m.Url).Str(6, m.ProtocolVersion).Str(7, m.SdkVersion).Str(8, m.SdkType);
                break;
            case Topic.Auth:
                w.Int(1, m.Action).Bytes(2, m.Data).Bool(3, m.IsError).Bool(4, m.IsAck);
                break;
            case Topic.Event:
                w.Int(1, m.Action).Bytes(2, m.Data).Str(3, m.CorrelationId).Bool(4, m.IsError).Bool(5, m.IsAck).Str(6, m.Name).Strs(7, m.Names)
                    .Str(8, m.Subscription).Int(10, (int?)m.OriginalTopic).Int(11, m.OriginalAction);
                break;
            case Topic.Record:
                w.Int(1, m.Action).Bytes(2, m.Data).Str(3, m.CorrelationId).Bool(4, m.IsError).Bool(5, m.IsAck).Str(6, m.Name).Strs(7, m.Names)
                    .Str(9, m.Subscription).Int(10, m.OriginalAction);
                // deepstream writes isWriteAck=false explicitly on UPDATE/PATCH broadcasts.
                if (isRecordBroadcast) { w.BoolAlways(11, m.IsWriteAck); } else { w.Bool(11, m.IsWriteAck); }
                w.Str(12, m.Path).Int(13, m.Version).Versions(14, m.Versions);
                break;
            case Topic.Rpc:
                w.Int(1, m.Action).Bytes(2, m.Data).Str(3, m.CorrelationId).Bool(4, m.IsError).Bool(5, m.IsAck).Strs(6, m.Names).Str(7, m.Name)
                    .Int(9, m.OriginalAction).Str(10, m.RequestorName).Bytes(11, m.RequestorData);
                break;
            case Topic.Presence:
                w.Int(1, m.Action).Int(2, (int?)m.OriginalTopic).Int(3, m.OriginalAction).Bytes(4, m.Data).Str(5, m.CorrelationId).Bool(6, m.IsError)
                    .Bool(7, m.IsAck).Str(8, m.Name).Strs(9, m.Names);
                break;
            default:
                w.Int(1, m.Action);
                break;
        }
    }

    /// <summary>Writes protobuf fields in ascending order, only those present, straight into the output.</summary>
    private readonly struct FieldWriter(IBufferWriter<byte> output)
    {
        public FieldWriter Int(int field, int? value)
        {
            if (value is { } v)
            {
                Tag(field, 0);
                Varint((ulong)(long)v); // a negative int32 is sign-extended to ten bytes, as protobuf does
            }
            return this;
        }

        public FieldWriter Bool(int field, bool value) => value ? BoolAlways(field, true) : this;

        public FieldWriter BoolAlways(int field, bool value)
        {
            Tag(field, 0);
            Varint(value ? 1u : 0u);
            return this;
        }

        public FieldWriter Str(int field, string? value)
        {
            if (value is not null)
            {
                Tag(field, 2);
                var length = Encoding.UTF8.GetByteCount(value);
                Varint((uint)length);
                var span = output.GetSpan(length);
                Encoding.UTF8.GetBytes(value, span);
                output.Advance(length);
            }
            return this;
        }

        public FieldWriter Bytes(int field, ReadOnlyMemory<byte>? value)
        {
            if (value is { } v)
            {
                Tag(field, 2);
                Varint((uint)v.Length);
                output.Write(v.Span);
            }
            return this;
        }

        public FieldWriter Strs(int field, string[]? values)
        {
            foreach (var v in values ?? [])
            {
                Str(field, v);
            }
            return this;
        }

        public FieldWriter Versions(int field, IReadOnlyDictionary<string, int>? versions)
        {
            if (versions is null)
            {
                return this;
            }
            foreach (var (key, value) in versions)
            {
                // A map entry is a nested message { 1: key, 2: value }.
                var keyLength = Encoding.UTF8.GetByteCount(key);
                Tag(field, 2);
                Varint((uint)(1 + VarintSize((uint)keyLength) + keyLength + 1 + VarintSize((ulong)(long)value)));
                Str(1, key).Int(2, value);
            }
            return this;
        }

        private void Tag(int field, int wireType) => Varint((uint)((field << 3) | wireType));

        public void Varint(ulong value)
        {
            var span = output.GetSpan(10);
            var i = 0;
            while (value >= 0x80)
            {
                span[i++] = (byte)(value | 0x80);
                value >>= 7;
            }
            span[i++] = (byte)value;
            output.Advance(i);
        }

        public static int VarintSize(ulong value)
        {
            var size = 1;
            while (value >= 0x80)
            {
                value >>= 7;
                size++;
            }
            return size;
        }
    }

    // ---------- reading ----------

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <inheritdoc />
    public CodecError? ParseFrame(ReadOnlySequence<byte> frame, List<Message> messages)
    {
        if (frame.IsSingleSegment)
        {
            return Parse(frame.FirstSpan, messages);
        }
        var length = (int)frame.Length;
        var rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            frame.CopyTo(rented);
            return Parse(rented.AsSpan(0, length), messages);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Reads the frame in place: only the message, its strings and its data are allocated.</summary>
    private static CodecError? Parse(ReadOnlySpan<byte> frame, List<Message> messages)
    {
        try
        {
            var input = new ProtoReader(frame);
            var length = input.ReadLength();
            var remaining = frame.Length - input.Position;
            if (length != remaining)
            {
                return new CodecError(ParserAction.InvalidMessage, $"the frame announces {length} bytes but carries {remaining}");
            }
            Topic? topic = null;
            var body = ReadOnlySpan<byte>.Empty;
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                switch (tag)
                {
                    case (2 << 3) | 0:
                        var t = input.ReadInt32();
                        topic = t is >= 0 and <= 255 ? (Topic)t : (Topic)255;
                        break;
                    case (3 << 3) | 2:
                        body = input.ReadBytes();
                        break;
                    default:
                        input.Skip(tag);
                        break;
                }
            }
            if (topic is null)
            {
                // deepstream answers a frame without a known topic with UNKNOWN_TOPIC and keeps the connection.
                messages.Add(new Message { Topic = Topic.Unknown });
                return null;
            }
            messages.Add(DecodeTopicMessage(topic.Value, body));
            return null;
        }
        catch (MalformedException ex)
        {
            return new CodecError(ParserAction.MessageParseError, "malformed protobuf: " + ex.Message);
        }
        catch (DecoderFallbackException ex)
        {
            return new CodecError(ParserAction.MessageParseError, "invalid UTF-8: " + ex.Message);
        }
    }

    /// <summary>Names (or versions) one message may carry, as the native codec bounds them.</summary>
    internal const int MaxNames = 10_000;

    private static Message DecodeTopicMessage(Topic topic, ReadOnlySpan<byte> body)
    {
        var input = new ProtoReader(body);
        int action = 0;
        string? name = null, correlationId = null, path = null, subscription = null, requestorName = null, url = null, protocolVersion = null, sdkVersion = null, sdkType = null;
        List<string>? names = null;
        ReadOnlyMemory<byte>? data = null, requestorData = null;
        int? version = null, originalAction = null;
        Topic? originalTopic = null;
        bool isAck = false, isError = false, isWriteAck = false;
        Dictionary<string, int>? versions = null;
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var field = (int)(tag >> 3);
            var wire = tag & 7;
            switch (topic, field)
            {
                case (_, 1) when wire == 0: action = input.ReadInt32(); break;
                case (Topic.Parser, 2) or (Topic.Connection, 2) or (Topic.Auth, 2) or (Topic.Event, 2) or (Topic.Record, 2) or (Topic.Rpc, 2) or (Topic.Presence, 4) when wire == 2:
                    data = input.ReadBytes().ToArray();
                    break;
                case (Topic.Parser, 8) or (Topic.Event, 10) or (Topic.Presence, 2) when wire == 0: originalTopic = (Topic)input.ReadInt32(); break;
                case (Topic.Parser, 9) or (Topic.Event, 11) or (Topic.Record, 10) or (Topic.Rpc, 9) or (Topic.Presence, 3) when wire == 0: originalAction = input.ReadInt32(); break;
                case (Topic.Connection, 3) or (Topic.Auth, 3) or (Topic.Event, 4) or (Topic.Record, 4) or (Topic.Rpc, 4) or (Topic.Presence, 6) when wire == 0: isError = input.ReadBool(); break;
                case (Topic.Connection, 4) or (Topic.Auth, 4) or (Topic.Event, 5) or (Topic.Record, 5) or (Topic.Rpc, 5) or (Topic.Presence, 7) when wire == 0: isAck = input.ReadBool(); break;
                case (Topic.Connection, 5) when wire == 2: url = input.ReadString(); break;
                case (Topic.Connection, 6) when wire == 2: protocolVersion = input.ReadString(); break;
                case (Topic.Connection, 7) when wire == 2: sdkVersion = input.ReadString(); break;
                case (Topic.Connection, 8) when wire == 2: sdkType = input.ReadString(); break;
                case (Topic.Event, 3) or (Topic.Record, 3) or (Topic.Rpc, 3) or (Topic.Presence, 5) when wire == 2: correlationId = input.ReadString(); break;
                case (Topic.Event, 6) or (Topic.Record, 6) or (Topic.Rpc, 7) or (Topic.Presence, 8) when wire == 2: name = input.ReadString(); break;
                case (Topic.Event, 7) or (Topic.Record, 7) or (Topic.Rpc, 6) or (Topic.Presence, 9) when wire == 2:
                    (names ??= []).Add(input.ReadString());
                    if (names.Count > MaxNames)
                    {
                        throw new MalformedException($"a message may carry at most {MaxNames} names");
                    }
                    break;
                case (Topic.Event, 8) or (Topic.Record, 9) when wire == 2: subscription = input.ReadString(); break;
                case (Topic.Record, 8) when wire == 2: name ??= input.ReadString(); break; // "pattern": the client uses name for it
                case (Topic.Record, 11) when wire == 0: isWriteAck = input.ReadBool(); break;
                case (Topic.Record, 12) when wire == 2: path = input.ReadString(); break;
                case (Topic.Record, 13) when wire == 0: version = input.ReadInt32(); break;
                case (Topic.Record, 14) when wire == 2:
                    var entry = new ProtoReader(input.ReadBytes());
                    string key = "";
                    var value = 0;
                    uint entryTag;
                    while ((entryTag = entry.ReadTag()) != 0)
                    {
                        switch (entryTag)
                        {
                            case (1 << 3) | 2: key = entry.ReadString(); break;
                            case (2 << 3) | 0: value = entry.ReadInt32(); break;
                            default: entry.Skip(entryTag); break;
                        }
                    }
                    (versions ??= new Dictionary<string, int>(StringComparer.Ordinal))[key] = value;
                    if (versions.Count > MaxNames)
                    {
                        throw new MalformedException($"a message may carry at most {MaxNames} versions");
                    }
                    break;
                case (Topic.Rpc, 10) when wire == 2: requestorName = input.ReadString(); break;
                case (Topic.Rpc, 11) when wire == 2: requestorData = input.ReadBytes().ToArray(); break;
                default: input.Skip(tag); break;
            }
        }
        return new Message
        {
            Topic = topic, Action = action, Name = name, Names = names?.ToArray(), CorrelationId = correlationId, Data = data, Version = version,
            Path = path, IsAck = isAck, IsError = isError, IsWriteAck = isWriteAck, OriginalTopic = originalTopic, OriginalAction = originalAction,
            Subscription = subscription, Versions = versions, RequestorName = requestorName, RequestorData = requestorData,
            Url = url, ProtocolVersion = protocolVersion, SdkVersion = sdkVersion, SdkType = sdkType,
        };
    }

    private sealed class MalformedException(string message) : Exception(message);

    /// <summary>Protobuf wire format over a span, as far as deepstream's messages need it.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;

        public int Position { get; private set; }

        /// <summary>The next tag, or 0 at the end.</summary>
        public uint ReadTag()
        {
            if (Position >= _data.Length)
            {
                return 0;
            }
            var tag = ReadVarint();
            if (tag >> 3 == 0 || tag > uint.MaxValue)
            {
                throw new MalformedException($"invalid tag {tag}");
            }
            return (uint)tag;
        }

        public ulong ReadVarint()
        {
            ulong result = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (Position >= _data.Length)
                {
                    throw new MalformedException("truncated varint");
                }
                var b = _data[Position++];
                result |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return result;
                }
            }
            throw new MalformedException("a varint longer than ten bytes");
        }

        public int ReadInt32() => (int)ReadVarint(); // protobuf keeps the low 32 bits (-1 arrives sign-extended)

        public bool ReadBool() => ReadVarint() != 0;

        public int ReadLength()
        {
            var length = ReadVarint();
            return length <= int.MaxValue ? (int)length : throw new MalformedException($"a length of {length}");
        }

        public ReadOnlySpan<byte> ReadBytes()
        {
            var length = ReadLength();
            if (length > _data.Length - Position)
            {
                throw new MalformedException($"a field of {length} bytes with {_data.Length - Position} left");
            }
            var bytes = _data.Slice(Position, length);
            Position += length;
            return bytes;
        }

        public string ReadString() => StrictUtf8.GetString(ReadBytes());

        public void Skip(uint tag)
        {
            switch (tag & 7)
            {
                case 0: ReadVarint(); break;
                case 1: Advance(8); break;
                case 2: ReadBytes(); break;
                case 5: Advance(4); break;
                default: throw new MalformedException($"wire type {tag & 7} in tag {tag}");
            }
        }

        private void Advance(int count)
        {
            if (count > _data.Length - Position)
            {
                throw new MalformedException("truncated fixed-width field");
            }
            Position += count;
        }
    }
}
