using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace StateMesh.Permissions;

/// <summary>The sections of a permissions file, as deepstream names them.</summary>
internal enum PermissionSection { Record, Event, Rpc, Presence }

/// <summary>The rule types, each checked for some actions of its section (deepstream's table).</summary>
internal enum RuleType { Create, Read, Write, Delete, Listen, Notify, Publish, Subscribe, Provide, Request, Allow }

/// <summary>One rule of one path: a constant, or an expression.</summary>
internal sealed class PermissionRule(bool? constant, RuleExpression? expression)
{
    public bool? Constant { get; } = constant;

    public RuleExpression? Expression { get; } = expression;
}

/// <summary>The rules that apply to one name, and the values its path's <c>$variables</c> took.</summary>
internal readonly record struct RuleMatch(PermissionRule Rule, string[] Variables, string Path);

/// <summary>
/// A permissions file, validated and compiled: per section, the paths (name patterns with <c>*</c> and <c>$variables</c>)
/// and their rules. The longest matching path that defines a rule type decides for it; a name no path matches is
/// denied. Matches are cached per name, up to a bound.
/// </summary>
internal sealed class PermissionRules
{
    private const int CacheCapacity = 10_000;

    private static readonly Dictionary<PermissionSection, RuleType[]> Schema = new()
    {
        [PermissionSection.Record] = [RuleType.Create, RuleType.Read, RuleType.Write, RuleType.Delete, RuleType.Listen, RuleType.Notify],
        [PermissionSection.Event] = [RuleType.Publish, RuleType.Subscribe, RuleType.Listen],
        [PermissionSection.Rpc] = [RuleType.Provide, RuleType.Request],
        [PermissionSection.Presence] = [RuleType.Allow],
    };

    private static readonly HashSet<RuleType> WithData = [RuleType.Write, RuleType.Publish, RuleType.Subscribe, RuleType.Request];
    private static readonly HashSet<RuleType> WithOldData = [RuleType.Read, RuleType.Write, RuleType.Delete];

    private readonly Dictionary<(PermissionSection, RuleType), PathRules[]> _byType = [];
    private readonly ConcurrentDictionary<(PermissionSection, RuleType, string), RuleMatch?> _cache = new();

    private PermissionRules(string source) => Source = source;

    /// <summary>Where the rules came from (a file path, or "code").</summary>
    public string Source { get; }

    public int PathCount { get; private set; }

    private sealed class PathRules(string path, Regex? regex, string[] variables, Dictionary<RuleType, PermissionRule> rules)
    {
        public string Path { get; } = path;

        public string[] VariableNames { get; } = variables;

        public Dictionary<RuleType, PermissionRule> Rules { get; } = rules;

        /// <summary>Null when the path is "*" (matches everything) or has no pattern characters (matches itself).</summary>
        public Regex? Regex { get; } = regex;

        public bool MatchesAll => Path == "*";

        public bool TryMatch(string name, out string[] values)
        {
            values = [];
            if (MatchesAll)
            {
                return true;
            }
            if (Regex is null)
            {
                return string.Equals(Path, name, StringComparison.Ordinal);
            }
            var match = Regex.Match(name);
            if (!match.Success)
            {
                return false;
            }
            if (VariableNames.Length > 0)
            {
                values = new string[VariableNames.Length];
                for (var i = 0; i < values.Length; i++)
                {
                    values[i] = match.Groups[i + 1].Value;
                }
            }
            return true;
        }
    }

    public static string SectionName(PermissionSection section) => section switch
    {
        PermissionSection.Record => "record",
        PermissionSection.Event => "event",
        PermissionSection.Rpc => "rpc",
        _ => "presence",
    };

    public static string RuleName(RuleType type) => type.ToString().ToLowerInvariant();

    /// <summary>The rules that decide <paramref name="type"/> for <paramref name="name"/>, or null: denied.</summary>
    public RuleMatch? Find(PermissionSection section, RuleType type, string name)
    {
        var key = (section, type, name);
        if (_cache.TryGetValue(key, out var cached))
        {
            return cached;
        }
        RuleMatch? found = null;
        if (_byType.TryGetValue((section, type), out var paths))
        {
            foreach (var path in paths)
            {
                if (path.TryMatch(name, out var values))
                {
                    found = new RuleMatch(path.Rules[type], values, path.Path);
                    break;
                }
            }
        }
        if (_cache.Count >= CacheCapacity)
        {
            _cache.Clear();
        }
        _cache.TryAdd(key, found);
        return found;
    }

    /// <summary>Reads a permissions file: YAML (.yml, .yaml) or JSON (.json), in deepstream's shape.</summary>
    /// <exception cref="PermissionsException">The file cannot be read or is not valid; the message says where and why.</exception>
    public static PermissionRules Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new PermissionsException($"{path}: cannot be read: {ex.Message}");
        }
        var yaml = !path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
        return Parse(text, yaml, path);
    }

    /// <summary>Parses permissions from text. <paramref name="yaml"/>: YAML (JSON is YAML too), else strict JSON.</summary>
    public static PermissionRules Parse(string text, bool yaml, string source)
    {
        JsonDocument document;
        try
        {
            document = yaml ? YamlToJson.Convert(text) : JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, MaxDepth = 16 });
        }
        catch (YamlDotNet.Core.YamlException ex)
        {
            throw new PermissionsException($"{source}: not valid YAML at line {ex.Start.Line}, column {ex.Start.Column}: {ex.Message}");
        }
        catch (Exception ex) when (ex is JsonException or FormatException)
        {
            throw new PermissionsException($"{source}: not valid {(yaml ? "YAML" : "JSON")}: {ex.Message}");
        }
        using (document)
        {
            return FromJson(document.RootElement, source);
        }
    }

    /// <summary>Builds the rules from deepstream's shape: <c>{ record|event|rpc|presence: { path: { rule: true|false|"expression" } } }</c>.</summary>
    public static PermissionRules FromJson(JsonElement root, string source)
    {
        string Where(string what) => $"{source}: {what}";
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new PermissionsException(Where($"the permissions must be an object with the sections record, event, rpc and presence, not {root.ValueKind}"));
        }
        var rules = new PermissionRules(source);
        var seen = new HashSet<PermissionSection>();
        foreach (var section in root.EnumerateObject())
        {
            if (!TryParseSection(section.Name, out var kind))
            {
                throw new PermissionsException(Where($"unexpected section \"{section.Name}\" (the sections are record, event, rpc and presence)"));
            }
            seen.Add(kind);
            if (section.Value.ValueKind != JsonValueKind.Object || !section.Value.EnumerateObject().Any())
            {
                throw new PermissionsException(Where($"section \"{section.Name}\" must hold at least the path \"*\""));
            }
            var hasRoot = false;
            foreach (var path in section.Value.EnumerateObject())
            {
                var at = $"{section.Name} \"{path.Name}\"";
                var (regex, variables) = ParsePath(path.Name, Where(at));
                hasRoot |= path.Name == "*";
                if (path.Value.ValueKind != JsonValueKind.Object)
                {
                    throw new PermissionsException(Where($"{at} must map rule types to true, false or an expression"));
                }
                var byType = new Dictionary<RuleType, PermissionRule>();
                foreach (var rule in path.Value.EnumerateObject())
                {
                    if (!TryParseRuleName(rule.Name, out var type) || !Schema[kind].Contains(type))
                    {
                        throw new PermissionsException(Where($"{at}: unknown rule type \"{rule.Name}\" (section {section.Name} has {string.Join(", ", Schema[kind].Select(RuleName))})"));
                    }
                    byType[type] = rule.Value.ValueKind switch
                    {
                        JsonValueKind.True => new PermissionRule(true, null),
                        JsonValueKind.False => new PermissionRule(false, null),
                        JsonValueKind.String => Compile(rule.Value.GetString()!, variables, kind, type, Where($"{at} {rule.Name}")),
                        _ => throw new PermissionsException(Where($"{at} {rule.Name}: a rule must be true, false or a string expression, not {rule.Value.ValueKind}")),
                    };
                }
                foreach (var (type, rule) in byType)
                {
                    var list = rules._byType.TryGetValue((kind, type), out var existing) ? existing.ToList() : [];
                    list.Add(new PathRules(path.Name, regex, variables, byType));
                    rules._byType[(kind, type)] = [.. list];
                }
                rules.PathCount++;
            }
            if (!hasRoot)
            {
                throw new PermissionsException(Where($"section \"{section.Name}\" has no root path \"*\" (it decides for names no other path matches)"));
            }
        }
        foreach (var section in Schema.Keys)
        {
            if (!seen.Contains(section))
            {
                throw new PermissionsException(Where($"missing section \"{SectionName(section)}\" (every file has record, event, rpc and presence)"));
            }
        }
        // The longest path wins; of paths as long, the last in the file (as in deepstream). Tried longest first.
        foreach (var key in rules._byType.Keys.ToArray())
        {
            rules._byType[key] = [.. rules._byType[key].AsEnumerable().Reverse().OrderByDescending(p => p.Path.Length)];
        }
        return rules;
    }

    private static bool TryParseSection(string name, out PermissionSection section)
    {
        switch (name)
        {
            case "record": section = PermissionSection.Record; return true;
            case "event": section = PermissionSection.Event; return true;
            case "rpc": section = PermissionSection.Rpc; return true;
            case "presence": section = PermissionSection.Presence; return true;
            default: section = default; return false;
        }
    }

    private static bool TryParseRuleName(string name, out RuleType type)
    {
        foreach (var candidate in Enum.GetValues<RuleType>())
        {
            if (RuleName(candidate) == name)
            {
                type = candidate;
                return true;
            }
        }
        type = default;
        return false;
    }

    private static PermissionRule Compile(string text, string[] variables, PermissionSection section, RuleType type, string where)
    {
        RuleExpression expression;
        try
        {
            expression = RuleExpression.Parse(text, variables);
        }
        catch (RuleSyntaxException ex)
        {
            throw new PermissionsException($"{where}: {ex.Message}");
        }
        if (expression.UsesData && !WithData.Contains(type))
        {
            throw new PermissionsException($"{where}: rule {RuleName(type)} for {SectionName(section)} does not support data");
        }
        if (expression.UsesOldData && !WithOldData.Contains(type))
        {
            throw new PermissionsException($"{where}: rule {RuleName(type)} for {SectionName(section)} does not support oldData");
        }
        return new PermissionRule(null, expression);
    }

    /// <summary>
    /// <c>*</c> is any run of characters, <c>$name</c> one path segment (no <c>/</c>); everything else is itself (regex
    /// characters in a path are taken literally).
    /// </summary>
    private static (Regex? Regex, string[] Variables) ParsePath(string path, string where)
    {
        if (path.Length == 0)
        {
            throw new PermissionsException($"{where}: a path can't be empty");
        }
        if (path[0] == '/')
        {
            throw new PermissionsException($"{where}: a path can't start with /");
        }
        if (path == "*" || (!path.Contains('*', StringComparison.Ordinal) && !path.Contains('$', StringComparison.Ordinal)))
        {
            return (null, []);
        }
        var variables = new List<string>();
        var pattern = new System.Text.StringBuilder("^");
        for (var i = 0; i < path.Length;)
        {
            var c = path[i];
            if (c == '*')
            {
                pattern.Append(".*");
                i++;
            }
            else if (c == '$')
            {
                var start = i++;
                while (i < path.Length && char.IsAsciiLetterOrDigit(path[i]))
                {
                    i++;
                }
                if (i == start + 1)
                {
                    throw new PermissionsException($"{where}: invalid variable name {path[start..Math.Min(path.Length, start + 2)]} (a variable is $ and letters or digits)");
                }
                var name = path[start..i];
                if (variables.Contains(name))
                {
                    throw new PermissionsException($"{where}: the variable {name} appears twice");
                }
                variables.Add(name);
                pattern.Append("([^/]+)");
            }
            else
            {
                pattern.Append(Regex.Escape(c.ToString()));
                i++;
            }
        }
        pattern.Append('$');
        return (new Regex(pattern.ToString(), RegexOptions.CultureInvariant | RegexOptions.Singleline | RegexOptions.NonBacktracking), [.. variables]);
    }
}

/// <summary>A permissions file that cannot be used; the message names the file, the place and the problem.</summary>
public sealed class PermissionsException(string message) : Exception(message);
