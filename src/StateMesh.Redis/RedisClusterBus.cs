using System.Buffers;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;
using StateMesh.Cluster;
using StateMesh.Protocol;

namespace StateMesh.Redis;

/// <summary>
/// The cluster bus over Redis pub/sub: a node subscribes to a channel's Redis channel from its first local interest to
/// its last (interest-based routing), and publishes each message once, prefixed with its own name so that it can drop
/// its own messages when they come back. On a Redis Cluster it uses sharded pub/sub (SSUBSCRIBE, SPUBLISH), which
/// spreads channels over the masters. Messages of one channel are handled in order (one ChannelMessageQueue each).
/// </summary>
public sealed class RedisClusterBus : IClusterBus
{
    private readonly RedisClusterOptions _options;
    private readonly ILogger _logger;
    private readonly Dictionary<string, Subscription> _subscriptions = new(StringComparer.Ordinal);
    private ConnectionMultiplexer? _redis;
    private ISubscriber? _subscriber;
    private IClusterReceiver? _receiver;
    private byte[] _origin = [];
    private bool _sharded;
    private volatile bool _stopped;

    /// <summary>Creates the bus; it connects in <see cref="StartAsync"/>.</summary>
    public RedisClusterBus(RedisClusterOptions options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("StateMesh.Redis");
    }

    /// <summary>The multiplexer, once started (shared with the other Redis seams of this node).</summary>
    internal ConnectionMultiplexer Redis => _redis ?? throw new InvalidOperationException("The bus is not started.");

    /// <summary>Messages published since start (for the tests and the benchmark's Redis messages per event).</summary>
    internal long Published => Interlocked.Read(ref _published);

    private long _published;

    /// <summary>Messages Redis delivered to this node since start, its own ones that came back included (for the tests).</summary>
    internal long Received => Interlocked.Read(ref _received);

    private long _received;

    /// <summary>Of <see cref="Received"/>, this node's own messages that Redis sent back and the node dropped.</summary>
    internal long ReturnedOwn => Interlocked.Read(ref _returnedOwn);

    private long _returnedOwn;

    /// <inheritdoc />
    public async Task StartAsync(string nodeName, IClusterReceiver receiver, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(nodeName);
        _receiver = receiver;
        var name = Encoding.UTF8.GetBytes(nodeName);
        if (name.Length > 255)
        {
            throw new ArgumentException("A node name must be at most 255 bytes of UTF-8.", nameof(nodeName));
        }
        _origin = [(byte)name.Length, .. name];
        var configuration = ConfigurationOptions.Parse(_options.Configuration);
        // Up when Redis is not: local clients are served meanwhile, and the multiplexer keeps trying.
        configuration.AbortOnConnectFail = false;
        configuration.ClientName ??= "statemesh-" + nodeName;
        _redis = await ConnectionMultiplexer.ConnectAsync(configuration).WaitAsync(cancellationToken).ConfigureAwait(false);
        _redis.ConnectionFailed += (_, e) => RedisLog.ConnectionFailed(_logger, e.EndPoint?.ToString() ?? "?", e.FailureType.ToString(), e.Exception);
        _redis.ConnectionRestored += (_, e) => RedisLog.ConnectionRestored(_logger, e.EndPoint?.ToString() ?? "?");
        _sharded = _redis.GetServers().Any(s => s.IsConnected && s.ServerType == ServerType.Cluster);
        _subscriber = _redis.GetSubscriber();
        RedisLog.Connected(_logger, nodeName, string.Join(',', configuration.EndPoints), _sharded ? "Redis Cluster, sharded pub/sub" : "one Redis");
    }

    private RedisChannel ChannelOf(string channel) =>
        _sharded ? RedisChannel.Sharded(_options.Prefix + channel) : RedisChannel.Literal(_options.Prefix + channel);

    /// <inheritdoc />
    public Task Subscribe(string channel)
    {
        lock (_subscriptions)
        {
            if (_stopped)
            {
                return Task.CompletedTask;
            }
            if (_subscriptions.TryGetValue(channel, out var existing))
            {
                existing.Count++;
                return existing.Queue;
            }
            var subscription = new Subscription();
            _subscriptions[channel] = subscription;
            subscription.Queue = SubscribeCoreAsync(channel, subscription);
            return subscription.Queue;
        }
    }

    private async Task<ChannelMessageQueue?> SubscribeCoreAsync(string channel, Subscription subscription)
    {
        // Once subscribed, the multiplexer subscribes again by itself after a reconnect. A subscribe that fails (Redis
        // is away) is tried again every second for as long as the node still wants the channel.
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                var queue = await _subscriber!.SubscribeAsync(ChannelOf(channel)).ConfigureAwait(false);
                queue.OnMessage(message => Deliver(channel, message.Message));
                return queue;
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                if (attempt == 0)
                {
                    RedisLog.SubscribeFailed(_logger, channel, ex);
                }
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
            await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            lock (_subscriptions)
            {
                if (_stopped || !_subscriptions.TryGetValue(channel, out var current) || !ReferenceEquals(current, subscription))
                {
                    return null;
                }
            }
        }
    }

    /// <inheritdoc />
    public void Unsubscribe(string channel)
    {
        Subscription? ended = null;
        lock (_subscriptions)
        {
            if (!_subscriptions.TryGetValue(channel, out var subscription))
            {
                return;
            }
            if (--subscription.Count == 0)
            {
                _subscriptions.Remove(channel);
                ended = subscription;
            }
        }
        if (ended is not null)
        {
            _ = EndAsync(ended);
        }
    }

    private static async Task EndAsync(Subscription subscription)
    {
        try
        {
            if (await subscription.Queue.ConfigureAwait(false) is { } queue)
            {
                await queue.UnsubscribeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            // Redis is gone: the subscription went with the connection.
        }
    }

    /// <inheritdoc />
    public void Publish(string channel, Message message)
    {
        if (_stopped || _subscriber is null)
        {
            return;
        }
        var buffer = new ArrayBufferWriter<byte>(64 + (message.Data?.Length ?? 0));
        buffer.Write(_origin);
        var encoded = new ArrayBufferWriter<byte>(32 + (message.Data?.Length ?? 0));
        NativeCodec.Instance.WriteMessage(message, encoded);
        NativeCodec.Instance.WriteFrame([encoded.WrittenMemory], buffer);
        Interlocked.Increment(ref _published);
        _ = PublishCoreAsync(channel, buffer.WrittenMemory);
    }

    private async Task PublishCoreAsync(string channel, ReadOnlyMemory<byte> payload)
    {
        try
        {
            await _subscriber!.PublishAsync(ChannelOf(channel), payload, CommandFlags.FireAndForget).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            RedisLog.PublishFailed(_logger, channel, ex.Message);
        }
    }

    private void Deliver(string channel, RedisValue value)
    {
        Interlocked.Increment(ref _received);
        ReadOnlyMemory<byte> bytes = (byte[]?)value ?? [];
        var span = bytes.Span;
        if (span.Length == 0 || span.Length < 1 + span[0])
        {
            RedisLog.BadMessage(_logger, channel, "no origin");
            return;
        }
        if (span[..(1 + span[0])].SequenceEqual(_origin))
        {
            Interlocked.Increment(ref _returnedOwn);
            return; // our own message, back from Redis
        }
        var messages = new List<Message>(1);
        var body = new ReadOnlySequence<byte>(bytes[(1 + span[0])..]);
        if (NativeCodec.Instance.ParseFrame(body, messages) is { } error)
        {
            RedisLog.BadMessage(_logger, channel, error.Description);
            return;
        }
        foreach (var message in messages)
        {
            _receiver!.OnMessage(channel, message);
        }
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        List<Subscription> all;
        lock (_subscriptions)
        {
            if (_stopped)
            {
                return;
            }
            _stopped = true;
            all = [.. _subscriptions.Values];
            _subscriptions.Clear();
        }
        foreach (var subscription in all)
        {
            await EndAsync(subscription).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        if (_redis is not null)
        {
            await _redis.CloseAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            await _redis.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);

    private sealed class Subscription
    {
        public int Count = 1;
        public Task<ChannelMessageQueue?> Queue = Task.FromResult<ChannelMessageQueue?>(null);
    }
}
