using System.Buffers;
using System.Buffers.Binary;
using System.Net.WebSockets;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.AspNetCore;

/// <summary>
/// Carries a WebSocket into a node session: each binary WebSocket message becomes one frame of the session's input,
/// and each frame the session writes goes out as one binary WebSocket message. A text message, or one larger than
/// the maximum message size, closes the socket (as deepstream does).
/// </summary>
internal static class WebSocketTransport
{
    public static async Task RunAsync(WebSocket socket, StateMeshNode node, IMessageCodec codec, string remoteAddress, CancellationToken cancellationToken)
    {
        var (pump, session) = InMemoryTransport.CreatePair(remoteAddress, transportName: "websocket");
        if (!node.Accept(session, codec))
        {
            await socket.CloseAsync(WebSocketCloseStatus.EndpointUnavailable, "the node is stopping", cancellationToken).ConfigureAwait(false);
            return;
        }
        // Cancelling a WebSocket receive aborts the socket, so the loops end by closing, not by cancellation.
        var inbound = WebSocketClientTransport.ReceiveAsync(socket, pump, node.Options.MaxMessageSize, refuseBadInput: true, cancellationToken);
        var outbound = WebSocketClientTransport.SendAsync(socket, pump, cancellationToken);
        var first = await Task.WhenAny(inbound, outbound).ConfigureAwait(false);
        if (first == outbound)
        {
            // The node ended the session: say goodbye properly, then give the client a moment to answer.
            await CloseOutputAsync(socket, WebSocketCloseStatus.NormalClosure).ConfigureAwait(false);
            await Task.WhenAny(inbound, Task.Delay(TimeSpan.FromSeconds(2), cancellationToken)).ConfigureAwait(false);
        }
        else
        {
            await CloseOutputAsync(socket, WebSocketCloseStatus.NormalClosure).ConfigureAwait(false);
        }
        await pump.DisposeAsync().ConfigureAwait(false);
        await Task.WhenAny(outbound, Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None)).ConfigureAwait(false);
        if (!inbound.IsCompleted)
        {
            socket.Abort();
        }
        foreach (var loop in new[] { inbound, outbound })
        {
            if (loop.IsFaulted)
            {
                _ = loop.Exception; // observed: a reset peer is an ordinary end
            }
        }
    }

    private static async Task CloseOutputAsync(WebSocket socket, WebSocketCloseStatus status)
    {
        if (socket.State is not (WebSocketState.Open or WebSocketState.CloseReceived))
        {
            return;
        }
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await socket.CloseOutputAsync(status, null, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or IOException or InvalidOperationException)
        {
        }
    }
}
