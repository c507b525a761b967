using System.IO.Pipelines;

namespace StateMesh.Transport;

/// <summary>A duplex byte stream carrying length-prefixed frames: a TCP socket or an in-memory pipe pair.</summary>
internal sealed class TransportConnection : IAsyncDisposable
{
    private readonly Func<ValueTask>? _onDispose;
    private int _disposed;

    public TransportConnection(PipeReader input, PipeWriter output, string remoteAddress, string transportName, Func<ValueTask>? onDispose = null)
    {
        Input = input;
        Output = output;
        RemoteAddress = remoteAddress;
        TransportName = transportName;
        _onDispose = onDispose;
    }

    public PipeReader Input { get; }

    public PipeWriter Output { get; }

    public string RemoteAddress { get; }

    public string TransportName { get; }

    /// <summary>Set only for the node's own in-process client: the user id it is logged in as, without a password.</summary>
    public string? TrustedUserId { get; init; }

    /// <summary>The trusted user's serverData (what permission rules see as <c>user.data</c>).</summary>
    public System.Text.Json.Nodes.JsonNode? TrustedServerData { get; init; }

    /// <summary>
    /// Writes the header of one outgoing frame of the given length: the 4-byte length by default; the RFC 6455 header
    /// when <see cref="Output"/> is a node's WebSocket connection itself (ADR 0003).
    /// </summary>
    public Action<System.Buffers.IBufferWriter<byte>, int> WriteFrameHeader { get; init; } = Framing.WriteHeader;

    /// <summary>
    /// Set by the session that owns <see cref="Output"/>: queues bytes the transport must send in order with the
    /// session's frames, written as they are (a WebSocket pong). False when the session no longer sends.
    /// </summary>
    public Func<byte[], bool>? ControlSink { get; set; }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        // Completing the writer may try to flush bytes to a peer that is gone: drop them, never throw here.
        try
        {
            Output.CancelPendingFlush();
            await Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
        }
        try
        {
            await Input.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
        {
        }
        if (_onDispose is not null)
        {
            try
            {
                await _onDispose().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
            {
            }
        }
    }
}
