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
    // KEYS[1] the record; ARGV expected version (-1: only if absent), new version, new data.
    // Returns {1} when set; {0} when the record is absent and a version was expected; {0, v, d} on a conflict.
    private const string CompareAndSetScript = """
        local v = redis.call('HGET', KEYS[1], 'v')
        if v == false then
          if ARGV[1] ~= '-1' then return {0} end
        elseif v ~= ARGV[1] then
          return {0, v, redis.call('HGET', KEYS[1], 'd')}
        end
        redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
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
    public async ValueTask<CompareAndSetResult> CompareAndSetAsync(string name, int expectedVersion, RecordState next, CancellationToken cancellationToken)
    {
        var result = (RedisResult[])(await Database.ScriptEvaluateAsync(CompareAndSetScript, [KeyOf(name)],
            [expectedVersion, next.Version, next.Data]).WaitAsync(cancellationToken).ConfigureAwait(false))!;
        if ((int)result[0] == 1)
        {
            return new CompareAndSetResult(true, null);
        }
        return result.Length < 3
            ? new CompareAndSetResult(false, null)
            : new CompareAndSetResult(false, new RecordState((int)result[1], (byte[])result[2]!));
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
