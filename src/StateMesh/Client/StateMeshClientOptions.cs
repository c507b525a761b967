using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace StateMesh.Client;

/// <summary>Settings of a client. Defaults are those of deepstream's JavaScript client.</summary>
public sealed class StateMeshClientOptions
{
    /// <summary>
    /// Addresses of more nodes of the same cluster (<c>tcp://host:port</c>, <c>ws://host:port/statemesh</c>,
    /// <c>inproc://node-name</c>), tried after the address or addresses given to <c>ConnectAsync</c> (or to
    /// <c>AddStateMeshClient</c> as its <c>Address</c>), in this order, each once. After a loss the client reconnects to
    /// the next address in that list rather than to the node it lost. Read when the client is created; the in-process
    /// client of a hosted node stays with its node and ignores them.
    /// </summary>
    public IList<string> Endpoints { get; } = [];

    /// <summary>Serializer settings for typed values (web defaults: camelCase).</summary>
    public JsonSerializerOptions SerializerOptions { get; set; } = new(JsonSerializerDefaults.Web);

    /// <summary>The client pings this often; a node silent for twice this long counts as lost.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Reconnect delay grows by this much per attempt (the first retry waits only the jitter), whichever address the
    /// attempt goes to.
    /// </summary>
    public TimeSpan ReconnectIntervalIncrement { get; set; } = TimeSpan.FromSeconds(4);

    /// <summary>
    /// Each reconnect delay gets a random extra of up to this much (never more than <see cref="ReconnectIntervalIncrement"/>),
    /// so that many clients of a node that restarts spread their reconnects instead of arriving at once.
    /// </summary>
    public TimeSpan ReconnectJitter { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest reconnect delay.</summary>
    public TimeSpan MaxReconnectInterval { get; set; } = TimeSpan.FromSeconds(180);

    /// <summary>
    /// Reconnect attempts after a loss before the client gives up (state <see cref="ConnectionState.Failed"/>); with
    /// several addresses, each attempt goes to the next one, so this counts attempts over all of them.
    /// </summary>
    public int MaxReconnectAttempts { get; set; } = 5;

    /// <summary>After a loss, emits are queued this long; then they fail with <see cref="StateMeshOfflineException"/>.</summary>
    public TimeSpan OfflineBufferTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How long to wait for the node to acknowledge a subscription.</summary>
    public TimeSpan AckTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How long loading a record, a snapshot, a head or a delete may take.</summary>
    public TimeSpan RecordReadTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How records resolve conflicts unless a record sets its own (deepstream's default: the node's version wins).</summary>
    public MergeStrategy MergeStrategy { get; set; } = MergeStrategy.RemoteWins;

    /// <summary>How long the handshake and login may take.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The largest payload the client sends (the node's StateMesh:MaxMessageSize, 1 MiB by default); larger ones throw at once.</summary>
    public int MaxOutgoingPayloadSize { get; set; } = 1024 * 1024 - 1024;

    /// <summary>
    /// The wire protocol: null for the native protocol (tcp://, inproc://, ws://…/statemesh); the deepstream codec from
    /// StateMesh.Deepstream for ws://…/deepstream (a StateMesh node or a deepstream server).
    /// </summary>
    public Protocol.IMessageCodec? Codec { get; set; }

    /// <summary>
    /// Most messages waiting to be written to the connection (and, while reconnecting, in the offline buffer); past it a
    /// send fails with <see cref="StateMeshBackpressureException"/> instead of holding more memory. At least 1.
    /// </summary>
    public int OutboundQueueCapacity { get; set; } = 65536;

    /// <summary>
    /// Most bytes waiting to be written to the connection, encoded (and, while reconnecting, payload bytes in the offline
    /// buffer); past it a send fails with <see cref="StateMeshBackpressureException"/>. A single message larger than
    /// this still goes when nothing else waits. At least 1.
    /// </summary>
    public long OutboundQueueMaxBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>The largest frame the client accepts from a node.</summary>
    public int MaxMessageSize { get; set; } = 16 * 1024 * 1024;

    /// <summary>Time for heartbeats, backoff and timeouts.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Where the client logs.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>
    /// Checks the node's TLS certificate on wss:// (null: the system's trust store decides, as for any HTTPS client).
    /// For a node with a self-signed certificate, trust that certificate here, not every certificate.
    /// </summary>
    public System.Net.Security.RemoteCertificateValidationCallback? RemoteCertificateValidationCallback { get; set; }
}
