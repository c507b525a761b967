using System.Text.Json;
using Microsoft.Extensions.Logging;
using StateMesh.Protocol;
using StateMesh.Server;
using StateMesh.Storage;

namespace StateMesh.Permissions;

/// <summary>What a check decided.</summary>
internal enum PermissionOutcome { Allowed, Denied, Failed }

internal readonly record struct Verdict(PermissionOutcome Outcome, string? Reason = null)
{
    public static readonly Verdict Allowed = new(PermissionOutcome.Allowed);

    public bool IsAllowed => Outcome == PermissionOutcome.Allowed;
}

/// <summary>
/// The node's permissions: the rules in force (null: everything is allowed), swapped whole when the file changes, and
/// the checks every topic asks for. A check runs on the connection's own path, never under a lock another connection
/// needs; the records a rule reads with <c>_()</c> (and a record's <c>oldData</c>) are loaded first, outside any lock,
/// and the rule runs again with them, up to <see cref="PermissionOptions.MaxRuleIterations"/> times.
/// </summary>
internal sealed class PermissionGate : IDisposable
{
    private readonly PermissionOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private volatile PermissionRules? _rules;
    private FileSystemWatcher? _watcher;
    private ITimer? _reloadTimer;
    private int _reloads;

    public PermissionGate(PermissionOptions options, ILogger logger, TimeProvider time)
    {
        _options = options;
        _logger = logger;
        _time = time;
        if (options.Path is { Length: > 0 } path)
        {
            _rules = PermissionRules.Load(Path.GetFullPath(path));
        }
        else if (options.Rules is { Length: > 0 } text)
        {
            _rules = PermissionRules.Parse(text, yaml: true, "StateMesh:Permissions:Rules");
        }
    }

    /// <summary>Reads a record's current data for a rule (the cluster's, through the record store); null when it does not exist.</summary>
    public Func<string, ValueTask<RecordState?>>? ReadRecord { get; set; }

    /// <summary>No rules: every action is allowed and nothing is checked.</summary>
    public bool IsOpen => _rules is null;

    public PermissionRules? Rules => _rules;

    /// <summary>How many times the file was reloaded successfully.</summary>
    public int Reloads => Volatile.Read(ref _reloads);

    /// <summary>Starts watching the permissions file: a change is read after a short pause; a bad file is refused and logged.</summary>
    public void Watch()
    {
        if (_options.Path is not { Length: > 0 } path || !_options.Reload)
        {
            return;
        }
        var full = Path.GetFullPath(path);
        _reloadTimer = _time.CreateTimer(_ => Reload(full), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _watcher = new FileSystemWatcher(Path.GetDirectoryName(full)!, Path.GetFileName(full))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.FileName | NotifyFilters.CreationTime,
        };
        FileSystemEventHandler changed = (_, _) => _reloadTimer.Change(TimeSpan.FromMilliseconds(200), Timeout.InfiniteTimeSpan);
        _watcher.Changed += changed;
        _watcher.Created += changed;
        _watcher.Renamed += (_, _) => _reloadTimer.Change(TimeSpan.FromMilliseconds(200), Timeout.InfiniteTimeSpan);
        _watcher.EnableRaisingEvents = true;
    }

    /// <summary>Reads the file again: the new rules apply to the next action; a bad file leaves the old rules in force.</summary>
    public bool Reload(string path)
    {
        try
        {
            var rules = PermissionRules.Load(path);
            _rules = rules;
            Interlocked.Increment(ref _reloads);
            PermissionLog.Reloaded(_logger, path, rules.PathCount);
            return true;
        }
        catch (PermissionsException ex)
        {
            PermissionLog.ReloadRefused(_logger, ex.Message);
            return false;
        }
    }

    /// <summary>Puts rules in force at once (tests, and hosts that build rules in code).</summary>
    public void Use(PermissionRules? rules) => _rules = rules;

    public void Dispose()
    {
        _watcher?.Dispose();
        _reloadTimer?.Dispose();
    }

    // ---- checks ----

    /// <summary>
    /// Checks one action on one name. <paramref name="data"/>: the payload a rule sees as <c>data</c> (JSON);
    /// <paramref name="oldData"/>: the record's current state when the caller has it, else it is read when the rule
    /// needs it.
    /// </summary>
    public ValueTask<Verdict> CheckAsync(RuleValue user, PermissionSection section, RuleType type, int action, string name, ReadOnlyMemory<byte>? data = null, RecordState? oldData = null, bool oldDataKnown = false)
    {
        if (Decided(section, type, name, out var match) is { } decided)
        {
            return ValueTask.FromResult(decided);
        }
        var expression = match.Rule.Expression!;
        if (!expression.UsesLookup && (!expression.UsesOldData || oldDataKnown))
        {
            using var run = new Run(this, user, match, action, name, data, oldData);
            return ValueTask.FromResult(run.Evaluate(null));
        }
        return CheckSlowAsync(user, match, action, name, data, oldData, oldDataKnown);
    }

    private async ValueTask<Verdict> CheckSlowAsync(RuleValue user, RuleMatch match, int action, string name, ReadOnlyMemory<byte>? data, RecordState? oldData, bool oldDataKnown)
    {
        if (match.Rule.Expression!.UsesOldData && !oldDataKnown)
        {
            try
            {
                oldData = await ReadAsync(name).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                return new Verdict(PermissionOutcome.Failed, $"the record '{name}' could not be read for the rule: {ex.Message}");
            }
        }
        using var run = new Run(this, user, match, action, name, data, oldData);
        var loaded = new Dictionary<string, RuleValue>(StringComparer.Ordinal);
        for (var iteration = 0; ; iteration++)
        {
            var verdict = run.Evaluate(loaded);
            if (run.Missing is not { Count: > 0 } missing)
            {
                return verdict;
            }
            if (iteration + 1 >= _options.MaxRuleIterations)
            {
                return new Verdict(PermissionOutcome.Failed, $"the rule still read records it had not loaded after {_options.MaxRuleIterations} runs");
            }
            foreach (var record in missing.Distinct(StringComparer.Ordinal).ToArray())
            {
                try
                {
                    loaded[record] = run.Parse(await ReadAsync(record).ConfigureAwait(false));
                }
                catch (Exception ex)
                {
                    return new Verdict(PermissionOutcome.Failed, $"the record '{record}' could not be read for the rule: {ex.Message}");
                }
            }
        }
    }

    /// <summary>
    /// The verdict when no rule needs to run: open (allowed), no path (denied), or a constant; else null, with the
    /// rule to run in <paramref name="match"/>.
    /// </summary>
    private Verdict? Decided(PermissionSection section, RuleType type, string name, out RuleMatch match)
    {
        match = default;
        if (_rules is not { } rules)
        {
            return Verdict.Allowed;
        }
        if (rules.Find(section, type, name) is not { } found)
        {
            return new Verdict(PermissionOutcome.Denied);
        }
        match = found;
        return found.Rule.Constant is { } constant ? (constant ? Verdict.Allowed : new Verdict(PermissionOutcome.Denied)) : null;
    }

    /// <summary>
    /// Checks a rule synchronously with the records already loaded (the write path, which holds its record's lock):
    /// <paramref name="missing"/> names the records to load first (<see cref="ParseRecord"/>), outside the lock,
    /// before it asks again.
    /// </summary>
    public Verdict CheckLoaded(RuleValue user, PermissionSection section, RuleType type, int action, string name, ReadOnlyMemory<byte>? data, RecordState? oldData, Dictionary<string, RuleValue> loaded, out string[]? missing)
    {
        missing = null;
        if (Decided(section, type, name, out var match) is { } decided)
        {
            return decided;
        }
        using var run = new Run(this, user, match, action, name, data, oldData);
        var verdict = run.Evaluate(loaded);
        missing = run.Missing is { Count: > 0 } m ? [.. m.Distinct(StringComparer.Ordinal)] : null;
        return verdict;
    }

    /// <summary>A record as a rule reads it with <c>_()</c>; its document lives as long as the value is used.</summary>
    public static RuleValue ParseRecord(RecordState? state) =>
        state is { } s ? RuleValue.Of(JsonDocument.Parse(s.Data, new JsonDocumentOptions { MaxDepth = 64 }).RootElement) : RuleValue.Null;

    /// <summary>The user as rules see it: <c>{ id, isAuthenticated, data }</c>, data being the login's serverData.</summary>
    public static RuleValue UserValue(string? id, System.Text.Json.Nodes.JsonNode? serverData)
    {
        var user = new System.Text.Json.Nodes.JsonObject
        {
            ["id"] = id,
            ["isAuthenticated"] = id is not null && id != Auth.OpenAuthenticationHandler.AnonymousId,
            // No serverData is an empty object, so that user.data.role is undefined (a denial), not an error.
            ["data"] = serverData?.DeepClone() ?? new System.Text.Json.Nodes.JsonObject(),
        };
        // Kept as long as the value is used (a session's life): rules read it on every check.
        return RuleValue.Of(JsonDocument.Parse(user.ToJsonString()).RootElement);
    }

    /// <summary>Reads a record for a rule, as it may be shown (durable).</summary>
    public async ValueTask<RecordState?> ReadAsync(string name)
    {
        var read = ReadRecord ?? throw new InvalidOperationException("no record reader");
        return await read(name).ConfigureAwait(false);
    }

    /// <summary>Tells the client its action was denied or failed, in deepstream's shape; logs a failure.</summary>
    public void Refuse(Session session, Message request, string? name, Verdict verdict)
    {
        var failed = verdict.Outcome == PermissionOutcome.Failed;
        if (failed)
        {
            PermissionLog.RuleFailed(_logger, PermissionRules.SectionName(SectionOf(request.Topic)), name ?? "", verdict.Reason ?? "");
        }
        var action = (failed, request.Topic) switch
        {
            (false, Topic.Record) => (int)RecordAction.MessageDenied,
            (true, Topic.Record) => (int)RecordAction.MessagePermissionError,
            (false, Topic.Event) => (int)EventAction.MessageDenied,
            (true, Topic.Event) => (int)EventAction.MessagePermissionError,
            (false, Topic.Rpc) => (int)RpcAction.MessageDenied,
            (true, Topic.Rpc) => (int)RpcAction.MessagePermissionError,
            (false, _) => (int)PresenceAction.MessageDenied,
            (true, _) => (int)PresenceAction.MessagePermissionError,
        };
        // The reason stays in the node's log: it may name rules, paths and records the client has no business knowing.
        session.SendRefusal(request, action, name, null);
    }

    private static PermissionSection SectionOf(Topic topic) => topic switch
    {
        Topic.Record => PermissionSection.Record,
        Topic.Event => PermissionSection.Event,
        Topic.Rpc => PermissionSection.Rpc,
        _ => PermissionSection.Presence,
    };

    /// <summary>One evaluation context: the documents it parsed live until it is disposed.</summary>
    private sealed class Run : IDisposable
    {
        private readonly PermissionGate _gate;
        private readonly RuleMatch _match;
        private readonly RuleScope _scope;
        private List<JsonDocument>? _documents;
        private Dictionary<string, RuleValue>? _loaded;

        public Run(PermissionGate gate, RuleValue user, RuleMatch match, int action, string name, ReadOnlyMemory<byte>? data, RecordState? oldData)
        {
            _gate = gate;
            _match = match;
            var expression = match.Rule.Expression!;
            _scope = new RuleScope
            {
                User = user,
                Now = gate._time.GetUtcNow().ToUnixTimeMilliseconds(),
                Action = action,
                Name = name,
                Variables = match.Variables,
                MaxSteps = gate._options.MaxSteps,
                MaxLookups = gate._options.MaxRecordReads,
                Lookup = record => _loaded is not null && _loaded.TryGetValue(record, out var value) ? value : null,
            };
            DataError = null;
            if (expression.UsesData && data is { } bytes)
            {
                try
                {
                    _scope.Data = ParseJson(bytes);
                }
                catch (JsonException ex)
                {
                    DataError = $"the data is not JSON: {ex.Message}";
                }
            }
            if (expression.UsesOldData)
            {
                _scope.OldData = Parse(oldData);
            }
        }

        private string? DataError { get; }

        public List<string>? Missing => _scope.Missing;

        public RuleValue Parse(RecordState? state) => state is { } s ? ParseJson(s.Data) : RuleValue.Null;

        private RuleValue ParseJson(ReadOnlyMemory<byte> bytes)
        {
            var document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 64 });
            (_documents ??= []).Add(document);
            return RuleValue.Of(document.RootElement);
        }

        public Verdict Evaluate(Dictionary<string, RuleValue>? loaded)
        {
            if (DataError is not null)
            {
                return new Verdict(PermissionOutcome.Failed, DataError);
            }
            _loaded = loaded;
            _scope.Missing = null;
            _scope.Steps = 0;
            _scope.Lookups = 0;
            try
            {
                var result = _match.Rule.Expression!.Evaluate(_scope);
                return _scope.Missing is not null ? new Verdict(PermissionOutcome.Failed, "records not loaded yet")
                    : result.IsTruthy ? Verdict.Allowed : new Verdict(PermissionOutcome.Denied);
            }
            catch (RuleRuntimeException ex)
            {
                return new Verdict(PermissionOutcome.Failed, $"the rule of \"{_match.Path}\": {ex.Message}");
            }
            catch (Exception ex) when (ex is InvalidOperationException or FormatException or ArgumentException or OverflowException or JsonException)
            {
                // Data the rule could not read (a string with a lone surrogate, say): a failed rule, never a dropped connection.
                return new Verdict(PermissionOutcome.Failed, $"the rule of \"{_match.Path}\" could not read its data: {ex.Message}");
            }
        }

        public void Dispose()
        {
            if (_documents is null)
            {
                return;
            }
            foreach (var document in _documents)
            {
                document.Dispose();
            }
            _documents = null;
        }
    }
}

internal static partial class PermissionLog
{
    [LoggerMessage(EventId = 600, EventName = "PermissionsReloaded", Level = LogLevel.Information, Message = "Permissions reloaded from {Path}: {Paths} paths in force")]
    public static partial void Reloaded(ILogger logger, string path, int paths);

    [LoggerMessage(EventId = 601, EventName = "PermissionsRefused", Level = LogLevel.Error, Message = "Permissions not reloaded, the rules in force stay: {Problem}")]
    public static partial void ReloadRefused(ILogger logger, string problem);

    [LoggerMessage(EventId = 602, EventName = "PermissionRuleFailed", Level = LogLevel.Warning, Message = "A rule of section {Section} failed for '{Name}' (MESSAGE_PERMISSION_ERROR): {Reason}")]
    public static partial void RuleFailed(ILogger logger, string section, string name, string reason);
}
