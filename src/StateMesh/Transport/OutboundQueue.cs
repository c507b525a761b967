using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;
using StateMesh.Protocol;

namespace StateMesh.Transport;

/// <summary>
/// A bounded queue of encoded messages drained by one writer loop that packs them into few frames and
/// flushes once per batch, so that many small messages cost few socket writes.
/// </summary>
internal sealed class OutboundQueue
{
    private const int MaxFrameBytes = 64 * 1024;
    private const int MaxUnflushedBytes = 256 * 1024;
    private readonly Channel<ReadOnlyMemory<byte>> _channel;
    private readonly IMessageCodec _codec;
    private readonly long _maxBytes;
    private long _queuedBytes;
    private ReadOnlyMemory<byte>? _carried;
    // One pending control item at most: a newer one replaces it (RFC 6455 lets a pong answer only the latest ping), so
    // a peer that pings without reading cannot grow this queue.
    private byte[]? _raw;

    /// <param name="codec">Encodes the frames.</param>
    /// <param name="capacity">Most messages queued.</param>
    /// <param name="maxBytes">Most bytes queued (messages are shared between queues, but each queue counts them).</param>
    public OutboundQueue(IMessageCodec codec, int capacity, long maxBytes = long.MaxValue)
    {
        _codec = codec;
        _maxBytes = maxBytes;
        _channel = Channel.CreateBounded<ReadOnlyMemory<byte>>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public IMessageCodec Codec => _codec;

    public int Count => _channel.Reader.Count;

    public long QueuedBytes => Interlocked.Read(ref _queuedBytes);

    /// <summary>False when the queue is full, by count or by bytes (a slow consumer), or completed.</summary>
    public bool TryEnqueue(ReadOnlyMemory<byte> encodedMessage)
    {
        if (Interlocked.Add(ref _queuedBytes, encodedMessage.Length) > _maxBytes && encodedMessage.Length < _maxBytes)
        {
            Interlocked.Add(ref _queuedBytes, -encodedMessage.Length);
            return false;
        }
        if (_channel.Writer.TryWrite(encodedMessage))
        {
            return true;
        }
        Interlocked.Add(ref _queuedBytes, -encodedMessage.Length);
        return false;
    }

    /// <summary>Waits for room; for clients, where the writer is the application and may wait.</summary>
    /// <summary>
    /// Queues bytes the writer sends as they are, after what is queued before them (a transport's control frame). At
    /// most one is pending: a newer one replaces it. An empty item in the channel marks its place. False when the queue
    /// is full or completed (the connection is then a slow consumer and is closed by its session).
    /// </summary>
    public bool TryEnqueueRaw(byte[] bytes)
    {
        if (Interlocked.Exchange(ref _raw, bytes) is not null)
        {
            return true; // a marker is already queued; it now carries the newer bytes
        }
        return _channel.Writer.TryWrite(ReadOnlyMemory<byte>.Empty);
    }

    public ValueTask EnqueueAsync(ReadOnlyMemory<byte> encodedMessage, CancellationToken cancellationToken) =>
        _channel.Writer.WriteAsync(encodedMessage, cancellationToken);

    /// <summary>No more messages: the writer loop drains what is queued, then ends.</summary>
    public void Complete() => _channel.Writer.TryComplete();

    public ReadOnlyMemory<byte> Encode(Message message)
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        _codec.WriteMessage(message, buffer);
        return buffer.WrittenMemory;
    }

    /// <summary>Drains the queue into <paramref name="output"/> until completed or cancelled. Returns the number of frames written.</summary>
    public async Task<long> RunWriterAsync(PipeWriter output, Action<int>? onMessagesWritten, CancellationToken cancellationToken, Action<IBufferWriter<byte>, int>? writeFrameHeader = null)
    {
        writeFrameHeader ??= Framing.WriteHeader;
        var reader = _channel.Reader;
        var perFrame = Math.Min(_codec.MaxMessagesPerFrame, 1024);
        long frames = 0;
        while (_carried is not null || await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
        {
            // Rented per drain and returned before the next wait: an idle connection holds no batch array.
            var batch = ArrayPool<ReadOnlyMemory<byte>>.Shared.Rent(perFrame);
            var unflushed = 0;
            var messages = 0;
            while (unflushed < MaxUnflushedBytes)
            {
                var count = 0;
                var bytes = 0;
                // A frame never grows past MaxFrameBytes by batching; a single larger message goes alone.
                while (count < perFrame)
                {
                    ReadOnlyMemory<byte> item;
                    if (_carried is { } carried)
                    {
                        item = carried;
                        _carried = null;
                    }
                    else if (!reader.TryRead(out item))
                    {
                        break;
                    }
                    else
                    {
                        Interlocked.Add(ref _queuedBytes, -item.Length);
                    }
                    if (count > 0 && (bytes + item.Length > MaxFrameBytes || item.IsEmpty))
                    {
                        _carried = item;
                        break;
                    }
                    if (item.IsEmpty)
                    {
                        // A control item's place: what was queued before it is written, so it goes out now.
                        if (Interlocked.Exchange(ref _raw, null) is { } raw)
                        {
                            output.Write(raw);
                            unflushed += raw.Length;
                        }
                        continue;
                    }
                    batch[count++] = item;
                    bytes += item.Length;
                }
                if (count == 0)
                {
                    break;
                }
                var span = batch.AsSpan(0, count);
                writeFrameHeader(output, _codec.GetFrameLength(span));
                _codec.WriteFrame(span, output);
                span.Clear();
                unflushed += bytes;
                messages += count;
                frames++;
            }
            ArrayPool<ReadOnlyMemory<byte>>.Shared.Return(batch);
            var result = await output.FlushAsync(cancellationToken).ConfigureAwait(false);
            onMessagesWritten?.Invoke(messages);
            if (result.IsCompleted || result.IsCanceled)
            {
                break;
            }
        }
        return frames;
    }
}
