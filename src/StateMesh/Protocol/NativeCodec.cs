using System.Buffers;
using System.Text;
using MessagePack;

namespace StateMesh.Protocol;

/// <summary>
/// The native protocol: a frame is a MessagePack array of messages; a message is a map from small
/// integer keys to the fields that are present. Data is carried as MessagePack bin (the JSON bytes).
/// </summary>
public sealed class NativeCodec : IMessageCodec
{
    private const int KeyTopic = 0, KeyAction = 1, KeyName = 2, KeyNames = 3, KeyCorrelationId = 4, KeyData = 5,
        KeyVersion = 6, KeyPath = 7, KeyIsAck = 8, KeyIsError = 9, KeyIsWriteAck = 10, KeyOriginalTopic = 11,
        KeyOriginalAction = 12, KeySubscription = 13, KeyVersions = 14, KeyRequestorName = 15, KeyRequestorData = 16,
        KeyUrl = 17, KeyProtocolVersion = 18, KeySdkVersion = 19, KeySdkType = 20, KeyRequestTimeout = 21;

    private readonly NativeCodecLimits _limits;

    /// <summary>The shared instance with <see cref="NativeCodecLimits.UntrustedData"/>.</summary>
    public static NativeCodec Instance { get; } = new(NativeCodecLimits.UntrustedData);

    /// <summary>Creates a codec with the given limits.</summary>
    public NativeCodec(NativeCodecLimits limits) => _limits = limits;

    /// <inheritdoc />
    public string Name => "native";

    /// <inheritdoc />
    public int MaxMessagesPerFrame => _limits.MaxMessagesPerFrame;

    /// <inheritdoc />
    public CodecError? ParseFrame(ReadOnlySequence<byte> frame, List<Message> messages)
    {
        try
        {
            var reader = new MessagePackReader(frame);
            if (reader.NextMessagePackType != MessagePackType.Array)
            {
                return new CodecError(ParserAction.InvalidMessage, "a native frame must be a MessagePack array of messages");
            }
            var count = reader.ReadArrayHeader();
            if (count > _limits.MaxMessagesPerFrame)
            {
                return new CodecError(ParserAction.InvalidMessage, $"a frame may carry at most {_limits.MaxMessagesPerFrame} messages, this one has {count}");
            }
            for (var i = 0; i < count; i++)
            {
                var error = ReadMessage(ref reader, out var message);
                if (error is not null)
                {
                    return error;
                }
                messages.Add(message!);
            }
            if (!reader.End)
            {
                return new CodecError(ParserAction.InvalidMessage, "trailing bytes after the last message of the frame");
            }
            return null;
        }
        catch (Exception ex) when (ex is MessagePackSerializationException or EndOfStreamException or OverflowException or InvalidOperationException or ArgumentException or DecoderFallbackException)
        {
            return new CodecError(ParserAction.MessageParseError, "malformed MessagePack: " + ex.Message);
        }
    }

    private CodecError? ReadMessage(ref MessagePackReader reader, out Message? message)
    {
        message = null;
        if (reader.NextMessagePackType != MessagePackType.Map)
        {
            return new CodecError(ParserAction.InvalidMessage, "a message must be a MessagePack map");
        }
        var fields = reader.ReadMapHeader();
        Topic topic = Topic.Unknown;
        int action = 0;
        string? name = null, correlationId = null, path = null, subscription = null, requestorName = null;
        string? url = null, protocolVersion = null, sdkVersion = null, sdkType = null;
        string[]? names = null;
        ReadOnlyMemory<byte>? data = null, requestorData = null;
        int? version = null, originalAction = null, requestTimeout = null;
        Topic? originalTopic = null;
        bool isAck = false, isError = false, isWriteAck = false;
        Dictionary<string, int>? versions = null;
        var seenTopic = false;
        for (var f = 0; f < fields; f++)
        {
            if (reader.NextMessagePackType != MessagePackType.Integer)
            {
                return new CodecError(ParserAction.InvalidMessage, "message keys must be integers");
            }
            var key = reader.ReadInt32();
            switch (key)
            {
                case KeyTopic:
                    var t = reader.ReadInt32();
                    if (t is < 0 or > 255) { return new CodecError(ParserAction.UnknownTopic, $"unknown topic {t}"); }
                    topic = (Topic)t;
                    seenTopic = true;
                    break;
                case KeyAction: action = reader.ReadInt32(); break;
                case KeyName: name = ReadString(ref reader); break;
                case KeyNames:
                    var n = reader.ReadArrayHeader();
                    if (n > _limits.MaxNames) { return new CodecError(ParserAction.InvalidMessage, $"a message may carry at most {_limits.MaxNames} names"); }
                    names = new string[n];
                    for (var i = 0; i < n; i++)
                    {
                        names[i] = ReadString(ref reader) ?? throw new MessagePackSerializationException("a name must not be nil");
                    }
                    break;
                case KeyCorrelationId: correlationId = ReadString(ref reader); break;
                case KeyData: data = ReadBytes(ref reader); break;
                case KeyVersion: version = reader.ReadInt32(); break;
                case KeyPath: path = ReadString(ref reader); break;
                case KeyIsAck: isAck = reader.ReadBoolean(); break;
                case KeyIsError: isError = reader.ReadBoolean(); break;
                case KeyIsWriteAck: isWriteAck = reader.ReadBoolean(); break;
                case KeyOriginalTopic: originalTopic = (Topic)reader.ReadByte(); break;
                case KeyOriginalAction: originalAction = reader.ReadInt32(); break;
                case KeySubscription: subscription = ReadString(ref reader); break;
                case KeyVersions:
                    var m = reader.ReadMapHeader();
                    if (m > _limits.MaxVersions) { return new CodecError(ParserAction.InvalidMessage, $"a versions map may carry at most {_limits.MaxVersions} entries"); }
                    versions = new Dictionary<string, int>(m, StringComparer.Ordinal);
                    for (var i = 0; i < m; i++)
                    {
                        var k = ReadString(ref reader) ?? throw new MessagePackSerializationException("a versions key must not be nil");
                        versions[k] = reader.ReadInt32();
                    }
                    break;
                case KeyRequestorName: requestorName = ReadString(ref reader); break;
                case KeyRequestorData: requestorData = ReadBytes(ref reader); break;
                case KeyUrl: url = ReadString(ref reader); break;
                case KeyProtocolVersion: protocolVersion = ReadString(ref reader); break;
                case KeySdkVersion: sdkVersion = ReadString(ref reader); break;
                case KeySdkType: sdkType = ReadString(ref reader); break;
                case KeyRequestTimeout: requestTimeout = reader.ReadInt32(); break;
                default:
                    // Unknown keys from a newer peer are skipped, but only scalars: no unbounded nesting.
                    var type = reader.NextMessagePackType;
                    if (type is MessagePackType.Array or MessagePackType.Map or MessagePackType.Extension)
                    {
                        return new CodecError(ParserAction.InvalidMessage, $"unknown key {key} with a nested value");
                    }
                    reader.Skip();
                    break;
            }
        }
        if (!seenTopic)
        {
            return new CodecError(ParserAction.InvalidMessage, "a message must have a topic");
        }
        message = new Message
        {
            Topic = topic, Action = action, Name = name, Names = names, CorrelationId = correlationId, Data = data,
            Version = version, Path = path, IsAck = isAck, IsError = isError, IsWriteAck = isWriteAck,
            OriginalTopic = originalTopic, OriginalAction = originalAction, Subscription = subscription,
            Versions = versions, RequestorName = requestorName, RequestorData = requestorData,
            Url = url, ProtocolVersion = protocolVersion, SdkVersion = sdkVersion, SdkType = sdkType, RequestTimeout = requestTimeout,
        };
        return null;
    }

    private string? ReadString(ref MessagePackReader reader)
    {
        if (reader.TryReadNil())
        {
            return null;
        }
        var bytes = reader.ReadStringSequence() ?? throw new MessagePackSerializationException("expected a string");
        if (bytes.Length > _limits.MaxStringBytes)
        {
            throw new MessagePackSerializationException($"a string may be at most {_limits.MaxStringBytes} bytes");
        }
        return Utf8Strict.GetString(bytes);
    }

    private static ReadOnlyMemory<byte>? ReadBytes(ref MessagePackReader reader)
    {
        if (reader.TryReadNil())
        {
            return null;
        }
        var bytes = reader.ReadBytes() ?? throw new MessagePackSerializationException("expected bytes");
        // Copy: the frame buffer is reused once parsing is done.
        return bytes.ToArray();
    }

    private static readonly UTF8Encoding Utf8Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <inheritdoc />
    public void WriteMessage(Message message, IBufferWriter<byte> output)
    {
        var writer = new MessagePackWriter(output);
        var fields = 2;
        if (message.Name is not null) { fields++; }
        if (message.Names is not null) { fields++; }
        if (message.CorrelationId is not null) { fields++; }
        if (message.Data is not null) { fields++; }
        if (message.Version is not null) { fields++; }
        if (message.Path is not null) { fields++; }
        if (message.IsAck) { fields++; }
        if (message.IsError) { fields++; }
        if (message.IsWriteAck) { fields++; }
        if (message.OriginalTopic is not null) { fields++; }
        if (message.OriginalAction is not null) { fields++; }
        if (message.Subscription is not null) { fields++; }
        if (message.Versions is not null) { fields++; }
        if (message.RequestorName is not null) { fields++; }
        if (message.RequestorData is not null) { fields++; }
        if (message.Url is not null) { fields++; }
        if (message.ProtocolVersion is not null) { fields++; }
        if (message.SdkVersion is not null) { fields++; }
        if (message.SdkType is not null) { fields++; }
        if (message.RequestTimeout is not null) { fields++; }
        writer.WriteMapHeader(fields);
        writer.Write(KeyTopic); writer.Write((byte)message.Topic);
        writer.Write(KeyAction); writer.Write(message.Action);
        if (message.Name is not null) { writer.Write(KeyName); writer.Write(message.Name); }
        if (message.Names is not null)
        {
            writer.Write(KeyNames);
            writer.WriteArrayHeader(message.Names.Length);
            foreach (var n in message.Names) { writer.Write(n); }
        }
        if (message.CorrelationId is not null) { writer.Write(KeyCorrelationId); writer.Write(message.CorrelationId); }
        if (message.Data is { } data) { writer.Write(KeyData); writer.Write(data.Span); }
        if (message.Version is { } version) { writer.Write(KeyVersion); writer.Write(version); }
        if (message.Path is not null) { writer.Write(KeyPath); writer.Write(message.Path); }
        if (message.IsAck) { writer.Write(KeyIsAck); writer.Write(true); }
        if (message.IsError) { writer.Write(KeyIsError); writer.Write(true); }
        if (message.IsWriteAck) { writer.Write(KeyIsWriteAck); writer.Write(true); }
        if (message.OriginalTopic is { } ot) { writer.Write(KeyOriginalTopic); writer.Write((byte)ot); }
        if (message.OriginalAction is { } oa) { writer.Write(KeyOriginalAction); writer.Write(oa); }
        if (message.Subscription is not null) { writer.Write(KeySubscription); writer.Write(message.Subscription); }
        if (message.Versions is not null)
        {
            writer.Write(KeyVersions);
            writer.WriteMapHeader(message.Versions.Count);
            foreach (var (k, v) in message.Versions) { writer.Write(k); writer.Write(v); }
        }
        if (message.RequestorName is not null) { writer.Write(KeyRequestorName); writer.Write(message.RequestorName); }
        if (message.RequestorData is { } rd) { writer.Write(KeyRequestorData); writer.Write(rd.Span); }
        if (message.Url is not null) { writer.Write(KeyUrl); writer.Write(message.Url); }
        if (message.ProtocolVersion is not null) { writer.Write(KeyProtocolVersion); writer.Write(message.ProtocolVersion); }
        if (message.SdkVersion is not null) { writer.Write(KeySdkVersion); writer.Write(message.SdkVersion); }
        if (message.SdkType is not null) { writer.Write(KeySdkType); writer.Write(message.SdkType); }
        if (message.RequestTimeout is { } timeout) { writer.Write(KeyRequestTimeout); writer.Write(timeout); }
        writer.Flush();
    }

    /// <inheritdoc />
    public int GetFrameLength(ReadOnlySpan<ReadOnlyMemory<byte>> encodedMessages)
    {
        var length = ArrayHeaderLength(encodedMessages.Length);
        foreach (var m in encodedMessages) { length += m.Length; }
        return length;
    }

    /// <inheritdoc />
    public void WriteFrame(ReadOnlySpan<ReadOnlyMemory<byte>> encodedMessages, IBufferWriter<byte> output)
    {
        var writer = new MessagePackWriter(output);
        writer.WriteArrayHeader(encodedMessages.Length);
        writer.Flush();
        foreach (var m in encodedMessages)
        {
            output.Write(m.Span);
        }
    }

    private static int ArrayHeaderLength(int count) => count <= 15 ? 1 : count <= ushort.MaxValue ? 3 : 5;
}
