using Microsoft.Extensions.Logging;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Client;

/// <summary>One live transport of a client: a read loop that hands messages on, and a writer loop.</summary>
internal sealed class ClientLink : IAsyncDisposable
{
    private readonly TransportConnection _transport;
    private readonly OutboundQueue _outbound;
    private readonly Action<Message> _onMessage;
    private readonly TimeProvider _time;
    private readonly int _maxFrame;
    private readonly ILogger _logger;
    private readonly string _address;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _lastReceived;
    private volatile bool _completed;

    public ClientLink(TransportConnection transport, IMessageCodec codec, Action<Message> onMessage, TimeProvider time, int maxFrame, int queueCapacity, long queueMaxBytes, ILogger logger, string address)
    {
        _logger = logger;
        _address = address;
        _transport = transport;
        _outbound = new OutboundQueue(codec, queueCapacity, queueMaxBytes);
        _onMessage = onMessage;
        _time = time;
        _maxFrame = maxFrame;
        _lastReceived = time.GetTimestamp();
    }

    /// <summary>Where the link goes, for logs.</summary>
    public string Address => _address;

    /// <summary>Completes when the link is gone, with the error if one ended it.</summary>
    public Task Closed => _closed.Task;

    public TimeSpan SinceLastMessage => _time.GetElapsedTime(Volatile.Read(ref _lastReceived));

    public void Start()
    {
        _ = Task.Run(RunAsync);
    }

    private async Task RunAsync()
    {
        var writer = WriteAsync();
        try
        {
            await ReadAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _closed.TrySetException(ex);
        }
        finally
        {
            try
            {
                _completed = true;
                _outbound.Complete();
                await _stop.CancelAsync().ConfigureAwait(false);
                try { await writer.ConfigureAwait(false); } catch (OperationCanceledException) { }
                await _transport.DisposeAsync().ConfigureAwait(false);
            }
            finally
            {
                _closed.TrySetResult();
            }
        }
    }

    private async Task WriteAsync()
    {
        try
        {
            await _outbound.RunWriterAsync(_transport.Output, null, _stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // the link is closing: nothing failed
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            // The read loop sees the transport end and reports the loss; this says why writing stopped.
            ClientLog.TransportFailed(_logger, _address, ex.GetType().Name, ex.Message);
        }
        finally
        {
            _transport.Input.CancelPendingRead();
        }
    }

    private async Task ReadAsync()
    {
        var input = _transport.Input;
        var messages = new List<Message>();
        while (true)
        {
            var result = await input.ReadAsync(_stop.Token).ConfigureAwait(false);
            if (result.IsCanceled)
            {
                return;
            }
            var buffer = result.Buffer;
            try
            {
                while (true)
                {
                    var status = Framing.TryReadFrame(ref buffer, _maxFrame, out var frame, out var declared);
                    if (status == Framing.Status.NeedMore)
                    {
                        break;
                    }
                    if (status == Framing.Status.TooLarge)
                    {
                        throw new StateMeshException($"The node sent a frame of {declared} bytes, more than the client's MaxMessageSize of {_maxFrame}.");
                    }
                    Volatile.Write(ref _lastReceived, _time.GetTimestamp());
                    messages.Clear();
                    var error = _outbound.Codec.ParseFrame(frame, messages);
                    foreach (var message in messages)
                    {
                        _onMessage(message);
                    }
                    if (error is { } e)
                    {
                        throw new StateMeshException($"The node sent a frame that did not parse: {e.Description}");
                    }
                }
            }
            finally
            {
                input.AdvanceTo(buffer.Start, buffer.End);
            }
            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    public enum SendResult { Sent, Full, Closed }

    /// <summary>Queues a message for the writer: Full when the queue is at its limit, Closed when the link is going.</summary>
    public SendResult Send(Message message)
    {
        if (_outbound.TryEnqueue(_outbound.Encode(message)))
        {
            return SendResult.Sent;
        }
        return _completed ? SendResult.Closed : SendResult.Full;
    }

    public bool TrySend(Message message) => Send(message) == SendResult.Sent;

    public int QueuedMessages => _outbound.Count;

    public long QueuedBytes => _outbound.QueuedBytes;

    public async ValueTask DisposeAsync()
    {
        _completed = true;
        _outbound.Complete();
        _transport.Input.CancelPendingRead();
        try
        {
            await _closed.Task.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception)
        {
            await _stop.CancelAsync().ConfigureAwait(false);
        }
    }
}
