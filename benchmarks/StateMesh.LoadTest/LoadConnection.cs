using System.Text;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.LoadTest;

/// <summary>A lean protocol client: handshake, login, subscribe, and a read loop that counts deliveries.</summary>
internal sealed class LoadConnection : IAsyncDisposable
{
    private readonly TransportConnection _transport;
    private readonly OutboundQueue _outbound = new(NativeCodec.Instance, 1 << 20);
    private readonly Task _writer;
    private readonly TaskCompletionSource<Message> _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource<Message>? _waiting;
    private Task? _reader;

    private LoadConnection(TransportConnection transport)
    {
        _transport = transport;
        _writer = Task.Run(() => _outbound.RunWriterAsync(transport.Output, null, CancellationToken.None));
    }

    public long Delivered;

    /// <summary>Messages that count as deliveries (default: events).</summary>
    public Func<Message, bool> Counts { get; set; } = static m => m.Topic == Topic.Event && m.Action == (int)EventAction.Emit;

    /// <summary>Called for each delivery.</summary>
    public Action<Message>? OnEvent { get; set; }

    /// <summary>Called for every other message after login (acks, errors).</summary>
    public Action<Message>? OnOther { get; set; }

    private bool _loggedIn;

    public static async Task<LoadConnection> OpenAsync(Uri address, string user)
    {
        var transport = await TcpTransport.ConnectAsync(address.Host, address.Port, CancellationToken.None);
        var connection = new LoadConnection(transport);
        connection._reader = Task.Run(connection.ReadAsync);
        await connection.RequestAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Challenge, Url = address.ToString(), ProtocolVersion = "0.1a", SdkType = "loadtest" }, ConnectionAction.Accept);
        var auth = await connection.RequestAsync(new Message { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = Encoding.UTF8.GetBytes($"{{\"username\":\"{user}\"}}") }, null);
        if (auth.Action != (int)AuthAction.AuthSuccessful)
        {
            throw new InvalidOperationException("login refused: " + auth);
        }
        connection._loggedIn = true;
        return connection;
    }

    public Task SubscribeAsync(string name) =>
        RequestAsync(new Message { Topic = Topic.Event, Action = (int)EventAction.Subscribe, Names = [name], CorrelationId = "1" }, null);

    /// <summary>Subscribes to a record and waits for its READ_RESPONSE (after the ack). Returns its version.</summary>
    public async Task<int> SubscribeRecordAsync(string name)
    {
        var read = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _readWait, read);
        Send(new Message { Topic = Topic.Record, Action = (int)RecordAction.SubscribeCreateAndRead, Names = [name], CorrelationId = "1" });
        return (await read.Task.WaitAsync(TimeSpan.FromSeconds(30))).Version ?? 0;
    }

    private TaskCompletionSource<Message>? _readWait;

    private async Task<Message> RequestAsync(Message request, ConnectionAction? expected)
    {
        var wait = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _waiting, wait);
        Send(request);
        var reply = await wait.Task.WaitAsync(TimeSpan.FromSeconds(30));
        if (expected is { } e && reply.Action != (int)e)
        {
            throw new InvalidOperationException("unexpected reply: " + reply);
        }
        return reply;
    }

    public void Send(Message message)
    {
        if (!_outbound.TryEnqueue(_outbound.Encode(message)))
        {
            throw new InvalidOperationException("the connection is closed");
        }
    }

    private async Task ReadAsync()
    {
        var messages = new List<Message>();
        var input = _transport.Input;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                while (Framing.TryReadFrame(ref buffer, int.MaxValue, out var frame, out _) == Framing.Status.Frame)
                {
                    messages.Clear();
                    NativeCodec.Instance.ParseFrame(frame, messages);
                    foreach (var m in messages)
                    {
                        if (Counts(m))
                        {
                            Interlocked.Increment(ref Delivered);
                            OnEvent?.Invoke(m);
                        }
                        else if (m.Topic == Topic.Record && m.Action == (int)RecordAction.ReadResponse && Interlocked.Exchange(ref _readWait, null) is { } read)
                        {
                            read.TrySetResult(m);
                        }
                        else if (m.IsAck && m.Topic == Topic.Record)
                        {
                            // subscription acks: nothing to do
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
                }
                input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (IOException)
        {
        }
        Closed = true;
    }

    public bool Closed { get; private set; }

    /// <summary>Whatever a scenario wants to keep with the connection.</summary>
    public object? Tag { get; set; }

    public async ValueTask DisposeAsync()
    {
        _outbound.Complete();
        await _writer.ConfigureAwait(false);
        _transport.Input.CancelPendingRead();
        if (_reader is not null)
        {
            await _reader.ConfigureAwait(false);
        }
        await _transport.DisposeAsync();
    }
}
