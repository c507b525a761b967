using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;

namespace StateMesh.Transport;

/// <summary>
/// A client WebSocket presented as a length-prefixed frame stream: each binary WebSocket message is one frame.
/// </summary>
internal static class WebSocketClientTransport
{
    /// <summary>
    /// Connects to a node's WebSocket endpoint: ws:// from <paramref name="localAddress"/> when given, wss:// with the
    /// node's certificate checked by <paramref name="certificateValidation"/> when given (else by the system's trust store).
    /// </summary>
    public static async Task<TransportConnection> ConnectAsync(Uri uri, int maxMessageSize, System.Net.IPAddress? localAddress, System.Net.Security.RemoteCertificateValidationCallback? certificateValidation, CancellationToken cancellationToken)
    {
        if (uri.Scheme == "ws")
        {
            return await ConnectFramedAsync(uri, maxMessageSize, localAddress, cancellationToken).ConfigureAwait(false);
        }
        if (localAddress is not null)
        {
            throw new NotSupportedException("a local address can be chosen for ws:// only");
        }
        var socket = new ClientWebSocket();
        if (certificateValidation is not null)
        {
            socket.Options.RemoteCertificateValidationCallback = certificateValidation;
        }
        try
        {
            await socket.ConnectAsync(uri, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var (client, pump) = InMemoryTransport.CreatePair(uri.ToString(), transportName: "websocket");
        var stop = new CancellationTokenSource();
        var inbound = Task.Run(() => ReceiveAsync(socket, pump, maxMessageSize, refuseBadInput: false, stop.Token), CancellationToken.None);
        var outbound = Task.Run(() => SendAsync(socket, pump, stop.Token), CancellationToken.None);
        _ = Task.WhenAny(inbound, outbound).ContinueWith(async _ =>
        {
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or IOException)
                {
                }
            }
            await pump.DisposeAsync().ConfigureAwait(false);
            await Task.WhenAny(Task.WhenAll(inbound, outbound), Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None)).ConfigureAwait(false);
            socket.Abort();
            socket.Dispose();
            stop.Dispose();
        }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).Unwrap();
        return client;
    }

    /// <summary>
    /// ws:// without TLS: the upgrade request and RFC 6455 framing on a TCP connection's own pipes, batched per write
    /// (ADR 0003). wss:// goes through <see cref="ClientWebSocket"/>.
    /// </summary>
    private static async Task<TransportConnection> ConnectFramedAsync(Uri uri, int maxMessageSize, System.Net.IPAddress? localAddress, CancellationToken cancellationToken)
    {
        var tcp = await TcpTransport.ConnectAsync(uri.Host, uri.Port, localAddress, cancellationToken).ConfigureAwait(false);
        try
        {
            var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
            var request = $"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                          $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n";
            await tcp.Output.WriteAsync(Encoding.ASCII.GetBytes(request), cancellationToken).ConfigureAwait(false);
            var response = await ReadResponseHeadAsync(tcp.Input, cancellationToken).ConfigureAwait(false);
            var lines = response.Split("\r\n");
            if (!lines[0].StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
            {
                throw new IOException($"{uri} refused the WebSocket upgrade: {lines[0]}");
            }
            var accept = lines.Select(l => l.Split(':', 2)).FirstOrDefault(p => p.Length == 2 && p[0].Trim().Equals("Sec-WebSocket-Accept", StringComparison.OrdinalIgnoreCase));
            if (accept is null || accept[1].Trim() != WebSocketFraming.AcceptKey(key))
            {
                throw new IOException($"{uri} answered the WebSocket upgrade with a wrong Sec-WebSocket-Accept");
            }
        }
        catch
        {
            await tcp.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        var (client, pump) = InMemoryTransport.CreatePair(uri.ToString(), transportName: "websocket");
        var websocket = new WebSocketPump(tcp.Input, tcp.Output, pump.Output, pump.Input, isClient: true, maxMessageSize);
        _ = Task.Run(async () =>
        {
            await websocket.RunAsync().ConfigureAwait(false);
            await tcp.DisposeAsync().ConfigureAwait(false);
        }, CancellationToken.None);
        return client;
    }

    private static async Task<string> ReadResponseHeadAsync(PipeReader input, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var reader = new SequenceReader<byte>(buffer);
            if (reader.TryReadTo(out ReadOnlySequence<byte> head, "\r\n\r\n"u8))
            {
                var text = Encoding.ASCII.GetString(head);
                input.AdvanceTo(reader.Position);
                return text;
            }
            if (buffer.Length > 16 * 1024 || result.IsCompleted)
            {
                throw new IOException("the server closed or sent an oversized answer to the WebSocket upgrade");
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>
    /// Each binary WebSocket message becomes one length-prefixed frame in <paramref name="pump"/>. With
    /// <paramref name="refuseBadInput"/> (a node), a text message or one over the limit closes the socket with its
    /// status, as deepstream does; a client just stops.
    /// </summary>
    internal static async Task ReceiveAsync(WebSocket socket, TransportConnection pump, int maxMessageSize, bool refuseBadInput, CancellationToken cancellationToken)
    {
        var message = new ArrayBufferWriter<byte>(16 * 1024);
        var prefix = new byte[4];
        try
        {
            while (true)
            {
                message.ResetWrittenCount();
                ValueWebSocketReceiveResult result;
                do
                {
                    result = await socket.ReceiveAsync(message.GetMemory(16 * 1024), cancellationToken).ConfigureAwait(false);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }
                    if (result.MessageType == WebSocketMessageType.Text && refuseBadInput)
                    {
                        await socket.CloseOutputAsync(WebSocketCloseStatus.InvalidMessageType, "binary frames only", cancellationToken).ConfigureAwait(false);
                        return;
                    }
                    message.Advance(result.Count);
                    if (message.WrittenCount > maxMessageSize)
                    {
                        if (refuseBadInput)
                        {
                            await socket.CloseOutputAsync(WebSocketCloseStatus.MessageTooBig, $"messages are limited to {maxMessageSize} bytes", cancellationToken).ConfigureAwait(false);
                        }
                        return;
                    }
                }
                while (!result.EndOfMessage);
                BinaryPrimitives.WriteUInt32BigEndian(prefix, (uint)message.WrittenCount);
                pump.Output.Write(prefix);
                pump.Output.Write(message.WrittenSpan);
                if ((await pump.Output.FlushAsync(cancellationToken).ConfigureAwait(false)).IsCompleted)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or InvalidOperationException)
        {
        }
    }

    /// <summary>Each length-prefixed frame the session writes goes out as one binary WebSocket message.</summary>
    internal static async Task SendAsync(WebSocket socket, TransportConnection pump, CancellationToken cancellationToken)
    {
        var input = pump.Input;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
                var buffer = result.Buffer;
                try
                {
                    while (Framing.TryReadFrame(ref buffer, int.MaxValue, out var frame, out _) == Framing.Status.Frame)
                    {
                        await socket.SendAsync(frame.IsSingleSegment ? frame.First : frame.ToArray(), WebSocketMessageType.Binary, true, cancellationToken).ConfigureAwait(false);
                    }
                }
                finally
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                }
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or InvalidOperationException)
        {
        }
    }
}
