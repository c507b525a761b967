using System.Globalization;
using System.Text.Json.Nodes;

namespace StateMesh.Records;

/// <summary>One step of a record path: a property name or an array index.</summary>
internal readonly record struct PathToken(string? Property, int Index)
{
    public bool IsIndex => Property is null;

    public override string ToString() => IsIndex ? $"[{Index}]" : Property!;
}

/// <summary>
/// Paths into record data, as deepstream writes them: <c>a.b[2].c</c>. Setting creates what is missing (an array
/// when the next step is an index, else an object) and grows arrays with nulls; erasing removes a property or
/// nulls an array element. The names <c>__proto__</c>, <c>constructor</c> and <c>prototype</c> are refused.
/// </summary>
internal static class RecordPath
{
    public const int MaxTokens = 64;
    public const int MaxIndex = 100_000;

    private static readonly HashSet<string> Forbidden = new(StringComparer.Ordinal) { "__proto__", "constructor", "prototype" };

    public static bool TryParse(string? path, out PathToken[] tokens, out string error)
    {
        tokens = [];
        error = "";
        if (string.IsNullOrEmpty(path))
        {
            error = "the path is empty";
            return false;
        }
        var list = new List<PathToken>();
        var i = 0;
        var expectName = true;
        while (i < path.Length)
        {
            if (path[i] == '[')
            {
                var close = path.IndexOf(']', i + 1);
                if (close < 0)
                {
                    error = $"'[' at {i} has no ']'";
                    return false;
                }
                var digits = path.AsSpan(i + 1, close - i - 1);
                if (digits.Length == 0 || digits.Length > 9 || !IsDigits(digits) || !int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                {
                    error = $"'{digits}' is not an array index";
                    return false;
                }
                if (index > MaxIndex)
                {
                    error = $"array index {index} is larger than {MaxIndex}";
                    return false;
                }
                list.Add(new PathToken(null, index));
                i = close + 1;
                expectName = false;
                if (i < path.Length && path[i] == '.')
                {
                    i++;
                    expectName = true;
                    if (i == path.Length)
                    {
                        error = "the path ends with '.'";
                        return false;
                    }
                }
                else if (i < path.Length && path[i] != '[')
                {
                    error = $"unexpected '{path[i]}' at {i}";
                    return false;
                }
                continue;
            }
            if (!expectName)
            {
                error = $"unexpected '{path[i]}' at {i}";
                return false;
            }
            var end = i;
            while (end < path.Length && path[end] is not ('.' or '[' or ']'))
            {
                end++;
            }
            if (end == i)
            {
                error = $"an empty name at {i}";
                return false;
            }
            var name = path[i..end];
            if (Forbidden.Contains(name))
            {
                error = $"'{name}' may not be used in a path";
                return false;
            }
            list.Add(new PathToken(name, 0));
            i = end;
            expectName = false;
            if (i < path.Length)
            {
                if (path[i] == ']')
                {
                    error = $"unexpected ']' at {i}";
                    return false;
                }
                if (path[i] == '.')
                {
                    i++;
                    expectName = true;
                    if (i == path.Length)
                    {
                        error = "the path ends with '.'";
                        return false;
                    }
                }
            }
        }
        if (list.Count > MaxTokens)
        {
            error = $"a path may have at most {MaxTokens} steps";
            return false;
        }
        tokens = [.. list];
        return true;
    }

    private static bool IsDigits(ReadOnlySpan<char> s)
    {
        foreach (var c in s)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The value at the path, or null when any step is missing (a JSON null also reads as null).</summary>
    public static JsonNode? Get(JsonNode? root, ReadOnlySpan<PathToken> tokens)
    {
        var node = root;
        foreach (var token in tokens)
        {
            node = Child(node, token);
            if (node is null)
            {
                return null;
            }
        }
        return node;
    }

    public static bool Exists(JsonNode? root, ReadOnlySpan<PathToken> tokens)
    {
        var node = root;
        for (var t = 0; t < tokens.Length; t++)
        {
            var token = tokens[t];
            switch (node)
            {
                case JsonObject obj:
                    if (!obj.TryGetPropertyValue(Key(token), out var next)) { return false; }
                    node = next;
                    break;
                case JsonArray array when token.IsIndex:
                    if (token.Index >= array.Count) { return false; }
                    node = array[token.Index];
                    break;
                default:
                    return false;
            }
        }
        return true;
    }

    private static JsonNode? Child(JsonNode? node, PathToken token) => node switch
    {
        JsonObject obj => obj.TryGetPropertyValue(Key(token), out var v) ? v : null,
        JsonArray array when token.IsIndex && token.Index < array.Count => array[token.Index],
        _ => null,
    };

    private static string Key(PathToken token) => token.Property ?? token.Index.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// Sets the value at the path, creating what is missing. False (with a reason) when the path cannot apply to this
    /// data, or when it would grow arrays by more than the allowed number of elements in all: that is checked before
    /// anything grows, so a short path cannot make anyone allocate much.
    /// </summary>
    public static bool TrySet(JsonNode root, ReadOnlySpan<PathToken> tokens, JsonNode? value, out string error) =>
        TrySet(root, tokens, value, DefaultMaxGrowth, out error);

    /// <summary>The growth allowed where no record size bounds it (a client applying its own or a node's patch).</summary>
    public const int DefaultMaxGrowth = 1 << 20;

    /// <summary>
    /// The most elements one write may add to arrays (setting <c>a[5000]</c> on an empty array adds 5,001): the work a
    /// short path can cause stays a small multiple of the message.
    /// </summary>
    public const int MaxGrowthPerWrite = 1000;

    /// <summary>
    /// Sets the value at the path, creating what is missing; arrays grow by at most <paramref name="maxGrowth"/> elements.
    /// </summary>
    public static bool TrySet(JsonNode root, ReadOnlySpan<PathToken> tokens, JsonNode? value, int maxGrowth, out string error)
    {
        error = "";
        var growth = GrowthOf(root, tokens);
        if (growth > maxGrowth)
        {
            error = $"the path would add {growth} array elements; at most {maxGrowth} fit in a record";
            return false;
        }
        var node = root;
        for (var t = 0; t < tokens.Length - 1; t++)
        {
            var token = tokens[t];
            var child = Child(node, token);
            if (child is JsonObject or JsonArray)
            {
                node = child;
                continue;
            }
            JsonNode created = tokens[t + 1].IsIndex ? new JsonArray() : new JsonObject();
            if (!TryAssign(node, token, created, out error))
            {
                return false;
            }
            node = created;
        }
        return TryAssign(node, tokens[^1], value, out error);
    }

    /// <summary>How many elements setting the path would add to arrays (new ones included), without changing anything.</summary>
    internal static long GrowthOf(JsonNode root, ReadOnlySpan<PathToken> tokens)
    {
        long growth = 0;
        // The container at this step; null when it does not exist yet and setting would create it.
        JsonNode? node = root;
        foreach (var token in tokens)
        {
            if (token.IsIndex && node is JsonArray or null)
            {
                var existing = node is JsonArray array ? array.Count : 0;
                growth += Math.Max(0, token.Index + 1 - existing);
            }
            var child = node is null ? null : Child(node, token);
            node = child is JsonObject or JsonArray ? child : null;
        }
        return growth;
    }

    private static bool TryAssign(JsonNode node, PathToken token, JsonNode? value, out string error)
    {
        error = "";
        switch (node)
        {
            case JsonObject obj:
                obj[Key(token)] = value;
                return true;
            case JsonArray array when token.IsIndex:
                while (array.Count < token.Index)
                {
                    array.Add(null);
                }
                if (token.Index == array.Count)
                {
                    array.Add(value);
                }
                else
                {
                    array[token.Index] = value;
                }
                return true;
            case JsonArray:
                error = $"cannot set property '{token.Property}' on an array";
                return false;
            default:
                error = "cannot set a path inside a value that is not an object or an array";
                return false;
        }
    }

    /// <summary>Erases the value at the path: a property is removed, an array element becomes null. Missing paths are left as they are.</summary>
    public static void Erase(JsonNode root, ReadOnlySpan<PathToken> tokens)
    {
        var parent = tokens.Length == 1 ? root : Get(root, tokens[..^1]);
        var last = tokens[^1];
        switch (parent)
        {
            case JsonObject obj:
                obj.Remove(Key(last));
                break;
            case JsonArray array when last.IsIndex && last.Index < array.Count:
                array[last.Index] = null;
                break;
        }
    }
}
