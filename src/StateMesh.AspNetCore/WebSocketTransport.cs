using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
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
    // Zero-byte reads: an idle connection waits for data before it rents a read buffer.
    private static readonly StreamPipeReaderOptions ReaderOptions = new(bufferSize: 16 * 1024, minimumReadSize: 4096, leaveOpen: true, useZeroByteReads: true);
    private static readonly StreamPipeWriterOptions WriterOptions = new(minimumBufferSize: 4096, leaveOpen: true);
    private static readonly PipeOptions InboundOptions = new(pauseWriterThreshold: 1024 * 1024, resumeWriterThreshold: 512 * 1024, useSynchronizationContext: false);

    /// <summary>
    /// Answers an HTTP/1.1 WebSocket upgrade itself and speaks RFC 6455 framing on the upgraded connection, so that
    /// frames are batched per write (ADR 0003). Returns false when the request cannot be upgraded that way.
    /// </summary>
    public static async Task<bool> TryUpgradeAsync(HttpContext context, StateMeshNode node, IMessageCodec codec, string remoteAddress)
    {
        var upgrade = context.Features.Get<IHttpUpgradeFeature>();
        var headers = context.Request.Headers;
        if (upgrade is not { IsUpgradableRequest: true } || !HttpMethods.IsGet(context.Request.Method)
            || !string.Equals(headers.Upgrade, "websocket", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        // The caller checked IsWebSocketRequest: version 13 and a well-formed key.
        var key = headers.SecWebSocketKey.ToString();
        context.Response.Headers.Connection = "Upgrade";
        context.Response.Headers.Upgrade = "websocket";
        context.Response.Headers.SecWebSocketAccept = WebSocketFraming.AcceptKey(key);
        await using var stream = await upgrade.UpgradeAsync().ConfigureAwait(false);
        var rawInput = PipeReader.Create(stream, ReaderOptions);
        var rawOutput = PipeWriter.Create(stream, WriterOptions);
        // Inbound: the pump turns WebSocket messages into frames of an in-memory pipe that the session reads.
        // Outbound: the session writes WebSocket frames to the connection itself, batched per flush.
        var inbound = new Pipe(InboundOptions);
        var outputDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var session = new TransportConnection(inbound.Reader, new SessionOutput(rawOutput, outputDone), remoteAddress, "websocket")
        {
            WriteFrameHeader = WebSocketFraming.WriteServerBinaryHeader,
        };
        var websocket = new WebSocketPump(rawInput, rawOutput, inbound.Writer, messagesOut: null, isClient: false, node.Options.MaxMessageSize);
        if (!node.Accept(session, codec))
        {
            WebSocketFraming.WriteFrame(rawOutput, WebSocketFraming.Close, WebSocketFraming.ClosePayload(1001, "the node does not accept the connection now"), null);
            await rawOutput.FlushAsync().ConfigureAwait(false);
            return true;
        }
        if (!await websocket.RunServerAsync(session, outputDone.Task).ConfigureAwait(false))
        {
            context.Abort(); // the session still writes: no close frame can follow it safely
        }
        return true;
    }

    public static async Task RunAsync(WebSocket socket, StateMeshNode node, IMessageCodec codec, string remoteAddress, CancellationToken cancellationToken)
    {
        var (pump, session) = InMemoryTransport.CreatePair(remoteAddress, transportName: "websocket");
        if (!node.Accept(session, codec))
        {
            await socket.CloseAsync(WebSocketCloseStatus.EndpointUnavailable, "the node does not accept the connection now", cancellationToken).ConfigureAwait(false);
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

/// <summary>
/// The connection's output as the session sees it: writes go straight through; completing it only tells the pump that
/// the session has stopped writing, so that the close frame can follow.
/// </summary>
internal sealed class SessionOutput(PipeWriter inner, TaskCompletionSource done) : PipeWriter
{
    public override void Advance(int bytes) => inner.Advance(bytes);

    public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

    public override void CancelPendingFlush()
    {
        // Once the session has stopped, a leftover cancel must not fall on the close frame's flush.
        if (!done.Task.IsCompleted)
        {
            inner.CancelPendingFlush();
        }
    }

    public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => inner.UnflushedBytes;

    public override void Complete(Exception? exception = null) => done.TrySetResult();
}
