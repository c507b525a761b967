using System.Buffers;
using System.Threading.Channels;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Tests.Support;

/// <summary>
/// An in-process stand-in for a node (<c>inproc://</c>, the client's real in-memory transport) that logs every client
/// in and then does only what the test says: for client tests that need a node which stops reading, never answers,
/// or breaks the connection.
/// </summary>
internal sealed class FakeNode : IDisposable
{
    private static int s_counter;
    private readonly IDisposable _listener;
    private readonly Channel<Connection> _logins = Channel.CreateUnbounded<Connection>();

    public FakeNode()
    {
        Name = $"fake-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}";
        _listener = InMemoryTransport.Listen(Name, transport =>
        {
            new Connection(transport, this).Start();
            return true;
        });
    }

    public string Name { get; }

    public string Address => "inproc://" + Name;

    /// <summary>After login, read nothing more: the client's writes pile up in the pipe, then in its own queue.</summary>
    public bool StopReadingAfterLogin { get; init; }

    /// <summary>The next connection that logged in.</summary>
    public Task<Connection> NextLoginAsync() => _logins.Reader.ReadAsync().AsTask().WaitAsync(RawClient.DefaultTimeout);

    public void Dispose() => _listener.Dispose();

    internal sealed class Connection(TransportConnection transport, FakeNode node)
    {
        private readonly SemaphoreSlim _writeLock = new(1, 1);
        private Task _reader = Task.CompletedTask;

        /// <summary>Everything the client sent after login (until the node stops reading).</summary>
        public Channel<Message> Received { get; } = Channel.CreateUnbounded<Message>();

        public void Start() => _reader = Task.Run(ReadAsync);

        public async Task<Message> ReceiveAsync(Func<Message, bool> match)
        {
            using var timeout = new CancellationTokenSource(RawClient.DefaultTimeout);
            while (true)
            {
                var message = await Received.Reader.ReadAsync(timeout.Token);
                if (match(message))
                {
                    return message;
                }
            }
        }

        public async Task SendAsync(Message message)
        {
            var encoded = new ArrayBufferWriter<byte>();
            NativeCodec.Instance.WriteMessage(message, encoded);
            var frame = new ArrayBufferWriter<byte>();
            Framing.WriteHeader(frame, NativeCodec.Instance.GetFrameLength([encoded.WrittenMemory]));
            NativeCodec.Instance.WriteFrame([encoded.WrittenMemory], frame);
            await _writeLock.WaitAsync();
            try
            {
                await transport.Output.WriteAsync(frame.WrittenMemory);
            }
            finally
            {
                _writeLock.Release();
            }
        }

        /// <summary>Ends the node's side of the client's writes with <paramref name="error"/>: the client's next write fails with it.</summary>
        public async Task FailClientWritesAsync(Exception error)
        {
            transport.Input.CancelPendingRead();
            await _reader;
            await transport.Input.CompleteAsync(error);
        }

        private async Task ReadAsync()
        {
            var input = transport.Input;
            var messages = new List<Message>();
            while (true)
            {
                var result = await input.ReadAsync();
                if (result.IsCanceled)
                {
                    return;
                }
                var buffer = result.Buffer;
                var stop = false;
                while (!stop && Framing.TryReadFrame(ref buffer, int.MaxValue, out var frame, out _) == Framing.Status.Frame)
                {
                    messages.Clear();
                    NativeCodec.Instance.ParseFrame(frame, messages);
                    foreach (var message in messages)
                    {
                        if (message.Topic == Topic.Connection && message.Action == (int)ConnectionAction.Challenge)
                        {
                            await SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Accept });
                        }
                        else if (message.Topic == Topic.Auth && message.Action == (int)AuthAction.Request)
                        {
                            await SendAsync(new Message { Topic = Topic.Auth, Action = (int)AuthAction.AuthSuccessful });
                            node._logins.Writer.TryWrite(this);
                            stop = node.StopReadingAfterLogin;
                        }
                        else
                        {
                            Received.Writer.TryWrite(message);
                        }
                    }
                }
                input.AdvanceTo(buffer.Start, buffer.End);
                if (stop || result.IsCompleted)
                {
                    return;
                }
            }
        }
    }
}
