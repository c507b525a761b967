using System.Buffers;
using System.Text;
using System.Threading.Channels;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.Tests.Support;

/// <summary>A protocol-level client for tests: sends exactly the messages it is given, records everything it receives.</summary>
internal sealed class RawClient : IAsyncDisposable
{
    private readonly TransportConnection _transport;
    private readonly Channel<Message> _received = Channel.CreateUnbounded<Message>();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _reader;
    private readonly SemaphoreSlim _writeLock = new(1, 1);

    private RawClient(TransportConnection transport)
    {
        _transport = transport;
        _reader = Task.Run(ReadAsync);
    }

    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    public static Task<RawClient> ConnectTcpAsync(StateMeshNode node) => ConnectTcpAsync(node.TcpEndPoint!.Port);

    public static async Task<RawClient> ConnectTcpAsync(int port) =>
        new(await TcpTransport.ConnectAsync("127.0.0.1", port, CancellationToken.None));

    public static RawClient ConnectInProcess(StateMeshNode node) => new(InMemoryTransport.Connect(node.Options.NodeName));

    /// <summary>Connects, handshakes and logs in; fails the test when login does not succeed.</summary>
    public static Task<RawClient> LoginAsync(StateMeshNode node, string authJson = "{}") => LoginAsync(node.TcpEndPoint!.Port, authJson);

    public static async Task<RawClient> LoginAsync(int port, string authJson = "{}")
    {
        var client = await ConnectTcpAsync(port);
        await client.HandshakeAsync();
        await client.SendAsync(new Message { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = Encoding.UTF8.GetBytes(authJson) });
        var reply = await client.ReceiveAsync();
        Assert.Equal(Topic.Auth, reply.Topic);
        Assert.Equal((int)AuthAction.AuthSuccessful, reply.Action);
        return client;
    }

    /// <summary>Connects in-process (the node may run on fake time, without TCP), handshakes and logs in anonymously.</summary>
    public static async Task<RawClient> LoginInProcessAsync(StateMeshNode node)
    {
        var client = ConnectInProcess(node);
        await client.HandshakeAsync();
        await client.SendAsync(new Message { Topic = Topic.Auth, Action = (int)AuthAction.Request, Data = "{}"u8.ToArray() });
        Assert.Equal((int)AuthAction.AuthSuccessful, (await client.ReceiveAsync()).Action);
        return client;
    }

    public async Task HandshakeAsync()
    {
        await SendAsync(new Message { Topic = Topic.Connection, Action = (int)ConnectionAction.Challenge, Url = "tcp://test", ProtocolVersion = "0.1a", SdkType = "test" });
        var accept = await ReceiveAsync();
        Assert.Equal(Topic.Connection, accept.Topic);
        Assert.Equal((int)ConnectionAction.Accept, accept.Action);
    }

    public Task Closed => _closed.Task;

    /// <summary>Frames from the node that did not parse: a node bug. Checked by <see cref="ReceiveAsync"/>.</summary>
    public System.Collections.Concurrent.ConcurrentBag<string> ProtocolErrors { get; } = [];

    public Task SendAsync(params Message[] messages)
    {
        var encoded = messages.Select(m =>
        {
            var w = new ArrayBufferWriter<byte>();
            NativeCodec.Instance.WriteMessage(m, w);
            return w.WrittenMemory;
        }).ToArray();
        var frame = new ArrayBufferWriter<byte>();
        NativeCodec.Instance.WriteFrame(encoded, frame);
        return SendFrameAsync(frame.WrittenSpan.ToArray());
    }

    /// <summary>Sends raw frame bytes with a correct length prefix.</summary>
    public Task SendFrameAsync(byte[] frame)
    {
        var bytes = new byte[4 + frame.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)frame.Length);
        frame.CopyTo(bytes, 4);
        return SendRawAsync(bytes);
    }

    /// <summary>Sends bytes exactly as given.</summary>
    public async Task SendRawAsync(byte[] bytes)
    {
        await _writeLock.WaitAsync();
        try
        {
            await _transport.Output.WriteAsync(bytes);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public async Task<Message> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            var message = await _received.Reader.ReadAsync(cts.Token);
            Assert.Empty(ProtocolErrors);
            return message;
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException("no message arrived in time");
        }
        catch (ChannelClosedException)
        {
            Assert.Empty(ProtocolErrors);
            throw new IOException("the node closed the connection before the message arrived");
        }
    }

    /// <summary>Receives until a message matches, skipping others (returned in <paramref name="skipped"/>).</summary>
    public async Task<Message> ReceiveUntilAsync(Func<Message, bool> match, List<Message>? skipped = null, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException("no matching message arrived in time");
            }
            var m = await ReceiveAsync(left);
            if (match(m))
            {
                return m;
            }
            skipped?.Add(m);
        }
    }

    /// <summary>True when nothing arrives within <paramref name="window"/> (used only to check absence, after a later message proves delivery).</summary>
    public bool TryTakeNow(out Message? message) => _received.Reader.TryRead(out message);

    private async Task ReadAsync()
    {
        var messages = new List<Message>();
        try
        {
            while (true)
            {
                var result = await _transport.Input.ReadAsync();
                var buffer = result.Buffer;
                while (Framing.TryReadFrame(ref buffer, int.MaxValue, out var frame, out _) == Framing.Status.Frame)
                {
                    messages.Clear();
                    var error = NativeCodec.Instance.ParseFrame(frame, messages);
                    if (error is { } e)
                    {
                        ProtocolErrors.Add(e.Description);
                    }
                    foreach (var m in messages)
                    {
                        _received.Writer.TryWrite(m);
                    }
                }
                _transport.Input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex)
        {
            _ = ex; // the test sees the end of the stream as a closed connection
        }
        finally
        {
            _received.Writer.TryComplete();
            _closed.TrySetResult();
        }
    }

    /// <summary>Stops reading without closing the socket: the node sees a consumer that never reads.</summary>
    public void StopReading() => _transport.Input.CancelPendingRead();

    public async ValueTask DisposeAsync()
    {
        _transport.Input.CancelPendingRead();
        await _transport.DisposeAsync();
        await _reader.WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(_ => { });
    }
}
