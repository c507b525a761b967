using System.Security.Cryptography;
using StackExchange.Redis;
using StateMesh.Storage;

namespace StateMesh.Redis;

/// <summary>
/// The cluster's record store in Redis: one hash per record with the newest accepted version and data (<c>v</c>,
/// <c>d</c>) and the newest durable one (<c>sv</c>, <c>sd</c>). A compare-and-set is one Lua script, so two nodes
/// can never both accept version N; marking a state shown never goes back to an older version. The key's hash tag is
/// the record name, as in its bus channel, so on a Redis Cluster both live on one master.
/// </summary>
public sealed class RedisRecordStore : IRecordStore
{
    // KEYS[1] the record; ARGV expected version (-1: only if absent), SHA-1 (hex) of the expected data, new version,
    // new data, SHA-1 of the new data. The version and the hash of the data are compared: a node may build a write on
    // one of its own still in flight, which must fail if another node took that version meanwhile (same version, other
    // data). A record stored without 'h' has its hash computed here once.
    // Returns {1} when set; {0} when the record is absent and a version was expected; {0, v, d} on a conflict.
    private const string CompareAndSetScript = """
        local cur = redis.call('HMGET', KEYS[1], 'v', 'h')
        if cur[1] == false then
          if ARGV[1] ~= '-1' then return {0} end
        else
          local h = cur[2]
          if h == false and cur[1] == ARGV[1] then h = redis.sha1hex(redis.call('HGET', KEYS[1], 'd')) end
          if cur[1] ~= ARGV[1] or h ~= ARGV[2] then
            return {0, cur[1], redis.call('HGET', KEYS[1], 'd')}
          end
        end
        redis.call('HSET', KEYS[1], 'v', ARGV[3], 'd', ARGV[4], 'h', ARGV[5])
        return {1}
        """;

    // KEYS[1] the record; ARGV version, data. Only onto a record that exists, and only forward.
    private const string MarkShownScript = """
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        local sv = redis.call('HGET', KEYS[1], 'sv')
        if sv ~= false and tonumber(sv) >= tonumber(ARGV[1]) then return 0 end
        redis.call('HSET', KEYS[1], 'sv', ARGV[1], 'sd', ARGV[2])
        return 1
        """;

    private static readonly RedisValue[] Accepted = ["v", "d"];
    private static readonly RedisValue[] Shown = ["sv", "sd"];
    private readonly RedisClusterBus _bus;
    private readonly string _prefix;

    /// <summary>A store over the bus's connection (it connects when the node starts).</summary>
    public RedisRecordStore(RedisClusterBus bus, RedisClusterOptions options)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(options);
        _bus = bus;
        _prefix = options.Prefix;
    }

    private IDatabase Database => _bus.Redis.GetDatabase();

    /// <summary>The record's key: the braces make the record name its hash tag.</summary>
    internal RedisKey KeyOf(string name) => _prefix + "r{" + name + "}";

    /// <inheritdoc />
    public async ValueTask<RecordState?> GetAsync(string name, CancellationToken cancellationToken) =>
        StateOf(await Database.HashGetAsync(KeyOf(name), Accepted).WaitAsync(cancellationToken).ConfigureAwait(false));

    /// <inheritdoc />
    public async ValueTask<RecordState?> GetShownAsync(string name, CancellationToken cancellationToken) =>
        StateOf(await Database.HashGetAsync(KeyOf(name), Shown).WaitAsync(cancellationToken).ConfigureAwait(false));

    private static RecordState? StateOf(RedisValue[] fields) =>
        fields[0].IsNull || fields[1].IsNull ? null : new RecordState((int)fields[0], (byte[])fields[1]!);

    /// <inheritdoc />
    public async ValueTask<CompareAndSetResult> CompareAndSetAsync(string name, RecordState? expected, RecordState next, CancellationToken cancellationToken)
    {
        var result = (RedisResult[])(await Database.ScriptEvaluateAsync(CompareAndSetScript, [KeyOf(name)],
            [expected?.Version ?? -1, expected is { } e ? HashOf(e.Data) : "", next.Version, next.Data, HashOf(next.Data)])
            .WaitAsync(cancellationToken).ConfigureAwait(false))!;
        if ((int)result[0] == 1)
        {
            return new CompareAndSetResult(true, null);
        }
        return result.Length < 3
            ? new CompareAndSetResult(false, null)
            : new CompareAndSetResult(false, new RecordState((int)result[1], (byte[])result[2]!));
    }

    /// <summary>The hash the compare-and-set compares: SHA-1 as lowercase hex, as Redis's own <c>redis.sha1hex</c> writes it.</summary>
    internal static string HashOf(ReadOnlyMemory<byte> data)
    {
        Span<byte> hash = stackalloc byte[SHA1.HashSizeInBytes];
        SHA1.HashData(data.Span, hash);
        return Convert.ToHexStringLower(hash);
    }

    /// <inheritdoc />
    public async ValueTask MarkShownAsync(string name, RecordState state, CancellationToken cancellationToken) =>
        await Database.ScriptEvaluateAsync(MarkShownScript, [KeyOf(name)], [state.Version, state.Data]).WaitAsync(cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    public async ValueTask RemoveAsync(string name, CancellationToken cancellationToken) =>
        await Database.KeyDeleteAsync(KeyOf(name)).WaitAsync(cancellationToken).ConfigureAwait(false);

    /// <summary>The other nodes still need the record: a shared store keeps it (Redis's own memory policy applies).</summary>
    public ValueTask ForgetAsync(string name, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}
