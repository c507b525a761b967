using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace StateMesh.Transport;

internal static class TcpTransport
{
    // Zero-byte reads: an idle connection waits for data before it rents a read buffer.
    private static readonly StreamPipeReaderOptions ReaderOptions = new(bufferSize: 16 * 1024, minimumReadSize: 4096, leaveOpen: true, useZeroByteReads: true);
    private static readonly StreamPipeWriterOptions WriterOptions = new(minimumBufferSize: 16 * 1024, leaveOpen: true);

    public static TransportConnection FromSocket(Socket socket, string address)
    {
        socket.NoDelay = true;
        var stream = new NetworkStream(socket, ownsSocket: true);
        return new TransportConnection(
            PipeReader.Create(stream, ReaderOptions),
            PipeWriter.Create(stream, WriterOptions),
            address,
            "tcp",
            () =>
            {
                try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
                return stream.DisposeAsync();
            });
    }

    public static Task<TransportConnection> ConnectAsync(string host, int port, CancellationToken cancellationToken) =>
        ConnectAsync(host, port, localAddress: null, cancellationToken);

    /// <summary>
    /// Connects from <paramref name="localAddress"/> when given (a load test spreads many connections over several
    /// loopback source addresses, since each has only its ephemeral port range).
    /// </summary>
    public static async Task<TransportConnection> ConnectAsync(string host, int port, IPAddress? localAddress, CancellationToken cancellationToken)
    {
        var socket = localAddress is null ? new Socket(SocketType.Stream, ProtocolType.Tcp) : new Socket(localAddress.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (localAddress is not null)
            {
                if (OperatingSystem.IsLinux())
                {
                    // IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect, per destination, not reserved at bind.
                    socket.SetRawSocketOption(0, 24, BitConverter.GetBytes(1));
                }
                socket.Bind(new IPEndPoint(localAddress, 0));
            }
            await socket.ConnectAsync(host, port, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return FromSocket(socket, $"tcp://{host}:{port}");
    }
}

/// <summary>Accepts TCP connections and hands each to the node.</summary>
internal sealed class TcpListenerLoop : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly Func<TransportConnection, bool> _accept;
    private readonly Microsoft.Extensions.Logging.ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    public TcpListenerLoop(IPEndPoint endPoint, Func<TransportConnection, bool> accept, Microsoft.Extensions.Logging.ILogger? logger = null)
    {
        _accept = accept;
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _socket.Bind(endPoint);
        _socket.Listen(512);
        LocalEndPoint = (IPEndPoint)_socket.LocalEndPoint!;
    }

    public IPEndPoint LocalEndPoint { get; }

    public void Start() => _loop = Task.Run(AcceptLoopAsync);

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _socket.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            catch (SocketException ex)
            {
                // For example too many open files: back off instead of spinning.
                Diagnostics.NodeLog.AcceptFailed(_logger, ex.Message);
                try { await Task.Delay(100, _stop.Token).ConfigureAwait(false); } catch (OperationCanceledException) { return; }
                continue;
            }
            try
            {
                var connection = TcpTransport.FromSocket(client, client.RemoteEndPoint?.ToString() ?? "tcp");
                if (!_accept(connection))
                {
                    await connection.DisposeAsync().ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
            {
                // The peer reset before we got to it.
                client.Dispose();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _socket.Dispose();
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }
        _stop.Dispose();
    }
}
