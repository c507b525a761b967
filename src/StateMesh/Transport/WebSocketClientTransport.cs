using System.Buffers;
using System.Buffers.Binary;
using System.Net.WebSockets;

namespace StateMesh.Transport;

/// <summary>
/// A client WebSocket presented as a length-prefixed frame stream: each binary WebSocket message is one frame.
/// </summary>
internal static class WebSocketClientTransport
{
    public static async Task<TransportConnection> ConnectAsync(Uri uri, int maxMessageSize, CancellationToken cancellationToken)
    {
        var socket = new ClientWebSocket();
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
