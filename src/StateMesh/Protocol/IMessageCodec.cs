using System.Buffers;

namespace StateMesh.Protocol;

/// <summary>
/// Turns frames into messages and messages into frames. A frame is what one transport unit carries
/// (a length-prefixed TCP frame, a WebSocket message). Implementations are stateless and thread-safe.
/// </summary>
public interface IMessageCodec
{
    /// <summary>A short name for logs and metrics, for example "native".</summary>
    string Name { get; }

    /// <summary>How many messages one frame may carry (1 for deepstream).</summary>
    int MaxMessagesPerFrame { get; }

    /// <summary>Whether a frame that does not parse closes the connection after its PARSER error (deepstream closes; the native protocol stays in step and goes on).</summary>
    bool ClosesOnParseError => false;

    /// <summary>
    /// Parses one whole frame. Never throws on bad input: returns an error that says what was wrong.
    /// Messages parsed before an error stay in <paramref name="messages"/>.
    /// </summary>
    CodecError? ParseFrame(ReadOnlySequence<byte> frame, List<Message> messages);

    /// <summary>Encodes one message in the codec's per-message form (see <see cref="WriteFrame"/>).</summary>
    void WriteMessage(Message message, IBufferWriter<byte> output);

    /// <summary>The length of the frame that <see cref="WriteFrame"/> writes for these encoded messages.</summary>
    int GetFrameLength(ReadOnlySpan<ReadOnlyMemory<byte>> encodedMessages);

    /// <summary>Writes a frame from messages encoded by <see cref="WriteMessage"/>.</summary>
    void WriteFrame(ReadOnlySpan<ReadOnlyMemory<byte>> encodedMessages, IBufferWriter<byte> output);
}

/// <summary>Why a frame did not parse.</summary>
/// <param name="Action">The PARSER action to answer with.</param>
/// <param name="Description">What was wrong, for the peer and the log.</param>
public readonly record struct CodecError(ParserAction Action, string Description);
