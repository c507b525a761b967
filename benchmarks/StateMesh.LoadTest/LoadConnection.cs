using System.Buffers;
using System.Buffers.Text;
using System.Diagnostics;
using System.Text;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.LoadTest;

/// <summary>
/// A lean protocol client: handshake, login, subscribe, and a read loop that counts deliveries. Deliveries that no
/// one samples are counted from the frame header without decoding, so the tool spends its CPU on sending.
/// </summary>
internal sealed class LoadConnection : IAsyncDisposable
{
    private readonly Endpoint _endpoint;
    private readonly TransportConnection _transport;
    private readonly OutboundQueue _outbound;
    private readonly Task _writer;
    private TaskCompletionSource<Message>? _waiting;
    private TaskCompletionSource<Message>? _readWait;
    private Task? _reader;
    private bool _loggedIn;

    private LoadConnection(Endpoint endpoint, TransportConnection transport)
    {
        _endpoint = endpoint;
        _transport = transport;
        _outbound = new OutboundQueue(endpoint.Codec, 1 << 20);
        _writer = Task.Run(() => _outbound.RunWriterAsync(transport.Output, null, CancellationToken.None));
    }

    /// <summary>Deliveries counted so far.</summary>
    public long Delivered;

    /// <summary>Which messages count as deliveries (default: events).</summary>
    public (Topic Topic, int Action) Counted { get; set; } = (Topic.Event, (int)EventAction.Emit);

    /// <summary>
    /// Another action of the same topic that counts as a delivery too: a record's change can arrive as a PATCH or, from
    /// another node of a StateMesh cluster, as an UPDATE with the whole record.
    /// </summary>
    public int? CountedToo { get; set; }

    private bool IsCounted(int topic, int action) => topic == (int)Counted.Topic && (action == Counted.Action || action == CountedToo);

    /// <summary>Latency samples of this connection (taken while <see cref="Sampling"/> is set).</summary>
    public LatencyRecorder? Latencies { get; set; }

    /// <summary>When set, deliveries are decoded and their payload timestamp recorded.</summary>
    public bool Sampling;

    /// <summary>Called for each delivery (decoded).</summary>
    public Action<Message>? OnDelivery { get; set; }

    /// <summary>Called for every other message after login (acks, errors).</summary>
    public Action<Message>? OnOther { get; set; }

    /// <summary>Called for RECORD acks (subscribe, unsubscribe, listen), which <see cref="OnOther"/> does not see.</summary>
    public Action<Message>? OnRecordAck { get; set; }

    public bool Closed { get; private set; }

    /// <summary>The read loop ended, or the writer did (a peer that reset the connection shows here first when this side does not read).</summary>
    public bool Broken => Closed || _writer.IsCompleted;

    /// <summary>Bytes queued to send and not yet written to the transport.</summary>
    public long Backlog => _outbound.QueuedBytes;

    public static async Task<LoadConnection> OpenAsync(Endpoint endpoint, string user, CancellationToken cancellationToken = default) =>
        await OpenAsync(endpoint, user, null, cancellationToken);

    /// <summary>Connects from <paramref name="localAddress"/> when given, then logs in as <paramref name="user"/>.</summary>
    public static async Task<LoadConnection> OpenAsync(Endpoint endpoint, string user, System.Net.IPAddress? localAddress, CancellationToken cancellationToken = default)
    {
        var transport = await endpoint.ConnectAsync(localAddress, cancellationToken);
        var connection = new LoadConnection(endpoint, transport);
        connection._reader = Task.Run(connection.ReadAsync, CancellationToken.None);
        if (endpoint.Wire == Wire.Relay)
        {
            return connection;
        }
        await connection.RequestAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Challenge, Url = endpoint.Address.ToString(), ProtocolVersion = "0.1a", SdkType = "loadtest" });
        var auth = await connection.RequestAsync(new Message { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = Encoding.UTF8.GetBytes($"{{\"username\":\"{user}\",\"password\":\"loadtest\"}}") });
        if (auth.Action != (int)AuthAction.AuthSuccessful)
        {
            throw new InvalidOperationException("login refused: " + auth);
        }
        connection._loggedIn = true;
        return connection;
    }

    /// <summary>Subscribes to an event (or, on the relay, joins a channel as a receiver) and waits for the ack.</summary>
    public Task SubscribeEventAsync(string name) => _endpoint.Wire == Wire.Relay
        ? RelayHelloAsync('S', name)
        : RequestAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = [name], CorrelationId = "1" });

    /// <summary>On the relay, joins a channel as a sender; a protocol needs nothing before emitting.</summary>
    public Task PrepareEmitAsync(string name) => _endpoint.Wire == Wire.Relay ? RelayHelloAsync('P', name) : Task.CompletedTask;

    public void Emit(string name, byte[] data)
    {
        if (_endpoint.Wire == Wire.Relay)
        {
            Enqueue(data);
            return;
        }
        Send(new Message { Topic = Topic.Event, Action = (int)EventAction.Emit, Name = name, Data = data });
    }

    private Task RelayHelloAsync(char role, string name)
    {
        var wait = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _waiting, wait);
        Enqueue(Encoding.UTF8.GetBytes(role + " " + name));
        return wait.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>Subscribes to a record and waits for its READ_RESPONSE. Returns its version.</summary>
    public async Task<int> SubscribeRecordAsync(string name)
    {
        var read = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _readWait, read);
        Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscribeCreateAndRead, Names = [name], CorrelationId = "1" });
        return (await read.Task.WaitAsync(TimeSpan.FromSeconds(30))).Version ?? 0;
    }

    /// <summary>Sends a request and waits for the next message that is not a delivery.</summary>
    public async Task<Message> RequestAsync(Message request)
    {
        var wait = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _waiting, wait);
        Send(request);
        var reply = await wait.Task.WaitAsync(TimeSpan.FromSeconds(30));
        if (request.Topic == Topic.Connection && reply.Action != (int)ConnectionAction.Accept)
        {
            throw new InvalidOperationException("unexpected reply: " + reply);
        }
        return reply;
    }

    public void Send(Message message) => Enqueue(_outbound.Encode(message));

    /// <summary>A heartbeat, as deepstream clients send: the node closes connections that stay silent.</summary>
    public void Ping() => _outbound.TryEnqueue(_outbound.Encode(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Ping }));

    private void Enqueue(ReadOnlyMemory<byte> encoded)
    {
        if (!_outbound.TryEnqueue(encoded) && !_disposing)
        {
            throw new InvalidOperationException("the connection is closed");
        }
    }

    private TaskCompletionSource? _paused;

    /// <summary>
    /// Stops reading the socket (a slow reader): what the node sends piles up in the socket buffers, then in its
    /// outbound queue. <see cref="ResumeReading"/> or disposal reads on.
    /// </summary>
    public void PauseReading() =>
        Interlocked.CompareExchange(ref _paused, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), null);

    public void ResumeReading() => Interlocked.Exchange(ref _paused, null)?.TrySetResult();

    private async Task ReadAsync()
    {
        var messages = new List<Message>();
        var input = _transport.Input;
        var relay = _endpoint.Wire == Wire.Relay;
        var deepstream = _endpoint.Wire == Wire.Deepstream;
        try
        {
            while (true)
            {
                if (Volatile.Read(ref _paused) is { } paused)
                {
                    await paused.Task;
                }
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                while (Framing.TryReadFrame(ref buffer, int.MaxValue, out var frame, out _) == Framing.Status.Frame)
                {
                    if (relay)
                    {
                        OnRelayFrame(frame);
                        continue;
                    }
                    if (deepstream && !Sampling && OnDelivery is null && TryPeekDeepstream(frame, out var topic, out var action)
                        && IsCounted(topic, action))
                    {
                        Delivered++;
                        continue;
                    }
                    messages.Clear();
                    _endpoint.Codec.ParseFrame(frame, messages);
                    foreach (var m in messages)
                    {
                        OnMessage(m);
                    }
                }
                input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException or ArgumentOutOfRangeException)
        {
            // Reset by the peer, or the transport closed under a read (disposal of a connection whose peer stopped reading;
            // a stream's pipe reader whose stream is disposed during a read can throw ArgumentOutOfRangeException).
        }
        Closed = true;
        Interlocked.Exchange(ref _waiting, null)?.TrySetException(new IOException("the connection closed"));
    }

    private void OnRelayFrame(ReadOnlySequence<byte> frame)
    {
        if (Volatile.Read(ref _waiting) is not null && frame.Length == 2)
        {
            Interlocked.Exchange(ref _waiting, null)?.TrySetResult(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, IsAck = true });
            return;
        }
        Delivered++;
        if (Sampling)
        {
            RecordLatency(frame.IsSingleSegment ? frame.FirstSpan : frame.ToArray());
        }
    }

    private void OnMessage(Message m)
    {
        if (IsCounted((int)m.Topic, m.Action))
        {
            Delivered++;
            if (Sampling && m.Data is { } data)
            {
                RecordLatency(data.Span);
            }
            OnDelivery?.Invoke(m);
        }
        else if (m.Topic == Topic.Connection && m.Action == (int)ConnectionAction.Ping)
        {
            _outbound.TryEnqueue(_outbound.Encode(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Pong }));
        }
        else if (m.Topic == Topic.Record && m.Action == (int)RecordAction.ReadResponse && Interlocked.Exchange(ref _readWait, null) is { } read)
        {
            read.TrySetResult(m);
        }
        else if (m.IsAck && m.Topic == Topic.Record)
        {
            // Subscription acks: not replies a request waits for (SubscribeRecordAsync waits for READ_RESPONSE).
            OnRecordAck?.Invoke(m);
        }
        else if (Interlocked.Exchange(ref _waiting, null) is { } waiting)
        {
            waiting.TrySetResult(m);
        }
        else if (_loggedIn)
        {
            OnOther?.Invoke(m);
        }
    }

    /// <summary>
    /// Payloads start with a send timestamp: <c>[ticks,…</c> for events, <c>ticks</c> for record patches, <c>{"t":ticks}</c>
    /// for a record's whole state.
    /// </summary>
    private void RecordLatency(ReadOnlySpan<byte> payload)
    {
        if (payload.Length > 0 && payload[0] == (byte)'[')
        {
            payload = payload[1..];
        }
        else if (payload.StartsWith("{\"t\":"u8))
        {
            payload = payload[5..];
        }
        if (Utf8Parser.TryParse(payload, out long sent, out _))
        {
            Latencies?.Record(Stopwatch.GetTimestamp() - sent);
        }
    }

    /// <summary>
    /// Reads topic and action from a deepstream frame without decoding it: <c>varint(len) ‖ 0x10 topic ‖ 0x1A len ‖ 0x08 action</c>.
    /// </summary>
    internal static bool TryPeekDeepstream(ReadOnlySequence<byte> frame, out int topic, out int action)
    {
        topic = action = 0;
        Span<byte> head = stackalloc byte[24];
        var n = (int)Math.Min(frame.Length, head.Length);
        frame.Slice(0, n).CopyTo(head);
        head = head[..n];
        var i = 0;
        return TryVarint(head, ref i, out _)
            && i < head.Length && head[i++] == 0x10 && TryVarint(head, ref i, out topic)
            && i < head.Length && head[i++] == 0x1A && TryVarint(head, ref i, out _)
            && i < head.Length && head[i++] == 0x08 && TryVarint(head, ref i, out action);
    }

    private static bool TryVarint(ReadOnlySpan<byte> span, ref int i, out int value)
    {
        value = 0;
        for (var shift = 0; shift < 35 && i < span.Length; shift += 7)
        {
            var b = span[i++];
            value |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return true;
            }
        }
        return false;
    }

    private volatile bool _disposing;

    public async ValueTask DisposeAsync()
    {
        _disposing = true; // replies still arriving from the node are dropped, not thrown
        _outbound.Complete();
        // A peer that stopped reading (a node busy elsewhere) would hold the last write forever: give it a while, then
        // close the transport under it. A peer that reset the connection faulted the writer: nothing left to send.
        if (await Task.WhenAny(_writer, Task.Delay(TimeSpan.FromSeconds(5))) != _writer)
        {
            await _transport.DisposeAsync();
        }
        ResumeReading();
        try
        {
            _transport.Input.CancelPendingRead();
        }
        catch (InvalidOperationException)
        {
        }
        if (_reader is not null)
        {
            await _reader.ConfigureAwait(false);
        }
        await _transport.DisposeAsync();
        try
        {
            await _writer.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
        }
    }
}

/// <summary>Latency samples of one connection (one reader thread at a time), merged at the end of a run.</summary>
internal sealed class LatencyRecorder
{
    private readonly List<long> _ticks = [];

    public void Record(long ticks)
    {
        lock (_ticks)
        {
            _ticks.Add(ticks);
        }
    }

    public static (double P50, double P99, double Max, int Samples) Percentiles(IEnumerable<LatencyRecorder> recorders)
    {
        var all = new List<long>();
        foreach (var r in recorders)
        {
            lock (r._ticks)
            {
                all.AddRange(r._ticks);
            }
        }
        if (all.Count == 0)
        {
            return (double.NaN, double.NaN, double.NaN, 0);
        }
        all.Sort();
        static double Ms(long t) => t * 1000.0 / Stopwatch.Frequency;
        return (Ms(all[all.Count / 2]), Ms(all[Math.Min(all.Count - 1, (int)(all.Count * 0.99))]), Ms(all[^1]), all.Count);
    }
}
