using System.Globalization;
using System.Text.Json;

namespace StateMesh.Permissions;

/// <summary>The kinds of value a rule computes with: JavaScript's, as deepstream's rules see them.</summary>
internal enum RuleKind : byte
{
    Undefined,
    Null,
    Boolean,
    Number,
    String,
    /// <summary>A JSON object or array from the data, the record or the user's server data.</summary>
    Json,
    /// <summary>An array written in the rule (<c>['admin', 'editor']</c>) or returned by <c>match</c>.</summary>
    List,
}

/// <summary>
/// One value in a rule, with JavaScript's semantics for truth, equality, comparison and <c>+</c>. Objects and arrays
/// stay <see cref="JsonElement"/>s of the parsed document: nothing is copied into another object model.
/// </summary>
internal readonly struct RuleValue
{
    private readonly double _number;
    private readonly object? _ref;

    private RuleValue(RuleKind kind, double number, object? reference)
    {
        Kind = kind;
        _number = number;
        _ref = reference;
    }

    public RuleKind Kind { get; }

    public static readonly RuleValue Undefined = default;
    public static readonly RuleValue Null = new(RuleKind.Null, 0, null);
    public static readonly RuleValue True = new(RuleKind.Boolean, 1, null);
    public static readonly RuleValue False = new(RuleKind.Boolean, 0, null);

    public static RuleValue Of(bool value) => value ? True : False;

    public static RuleValue Of(double value) => new(RuleKind.Number, value, null);

    public static RuleValue Of(string? value) => value is null ? Null : new(RuleKind.String, 0, value);

    public static RuleValue Of(IReadOnlyList<RuleValue> items) => new(RuleKind.List, 0, items);

    /// <summary>A JSON value: scalars become numbers, strings, booleans or null; objects and arrays stay elements.</summary>
    public static RuleValue Of(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object or JsonValueKind.Array => new(RuleKind.Json, 0, new JsonBox(element)),
        JsonValueKind.String => Of(element.GetString()),
        JsonValueKind.Number => Of(element.GetDouble()),
        JsonValueKind.True => True,
        JsonValueKind.False => False,
        JsonValueKind.Null => Null,
        _ => Undefined,
    };

    public bool Boolean => _number != 0;

    public double Number => _number;

    public string String => (string)_ref!;

    public JsonElement Json => ((JsonBox)_ref!).Element;

    public IReadOnlyList<RuleValue> List => (IReadOnlyList<RuleValue>)_ref!;

    public bool IsNullish => Kind is RuleKind.Undefined or RuleKind.Null;

    public bool IsArray => Kind == RuleKind.List || (Kind == RuleKind.Json && Json.ValueKind == JsonValueKind.Array);

    /// <summary>JavaScript's truthiness.</summary>
    public bool IsTruthy => Kind switch
    {
        RuleKind.Undefined or RuleKind.Null => false,
        RuleKind.Boolean => Boolean,
        RuleKind.Number => _number != 0 && !double.IsNaN(_number),
        RuleKind.String => String.Length > 0,
        _ => true,
    };

    public string TypeOf => Kind switch
    {
        RuleKind.Undefined => "undefined",
        RuleKind.Boolean => "boolean",
        RuleKind.Number => "number",
        RuleKind.String => "string",
        _ => "object",
    };

    /// <summary>JavaScript's ToNumber (objects: NaN, as a rule has no use for valueOf).</summary>
    public double ToNumber() => Kind switch
    {
        RuleKind.Undefined => double.NaN,
        RuleKind.Null => 0,
        RuleKind.Boolean or RuleKind.Number => _number,
        RuleKind.String => StringToNumber(String),
        _ => IsArray && Count == 0 ? 0 : IsArray && Count == 1 ? Item(0).ToNumber() : double.NaN,
    };

    private static double StringToNumber(string text)
    {
        var trimmed = text.Trim();
        if (trimmed.Length == 0)
        {
            return 0;
        }
        if (trimmed.StartsWith("0x", StringComparison.OrdinalIgnoreCase) && long.TryParse(trimmed.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var hex))
        {
            return hex;
        }
        return double.TryParse(trimmed, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) ? value : double.NaN;
    }

    /// <summary>JavaScript's ToString, as string concatenation and method calls on non-strings need it.</summary>
    public string ToJsString() => Kind switch
    {
        RuleKind.Undefined => "undefined",
        RuleKind.Null => "null",
        RuleKind.Boolean => Boolean ? "true" : "false",
        RuleKind.Number => NumberToString(_number),
        RuleKind.String => String,
        _ when IsArray => string.Join(',', Items().Select(i => i.IsNullish ? "" : i.ToJsString())),
        _ => "[object Object]",
    };

    public static string NumberToString(double value)
    {
        if (double.IsNaN(value))
        {
            return "NaN";
        }
        if (double.IsInfinity(value))
        {
            return value > 0 ? "Infinity" : "-Infinity";
        }
        if (value == 0)
        {
            return "0"; // -0 too
        }
        // JavaScript's Number::toString: the shortest digits that round-trip, in plain notation for 1e-7 < |x| < 1e21.
        var roundTrip = value.ToString("R", CultureInfo.InvariantCulture);
        var (digits, exponent) = Decompose(roundTrip);
        var sign = value < 0 ? "-" : "";
        var n = exponent + 1; // the position of the decimal point after the first digit, as in the specification
        var k = digits.Length;
        if (k <= n && n <= 21)
        {
            return sign + digits + new string('0', n - k);
        }
        if (0 < n && n <= 21)
        {
            return sign + digits[..n] + "." + digits[n..];
        }
        if (-6 < n && n <= 0)
        {
            return sign + "0." + new string('0', -n) + digits;
        }
        var e = n - 1;
        var mantissa = k == 1 ? digits : digits[..1] + "." + digits[1..];
        return sign + mantissa + "e" + (e >= 0 ? "+" : "-") + Math.Abs(e).ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>The significant digits of a round-trip number text, and the power of ten of its first digit.</summary>
    private static (string Digits, int Exponent) Decompose(string text)
    {
        text = text.TrimStart('-');
        var exponent = 0;
        var e = text.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(text.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            text = text[..e];
        }
        var point = text.IndexOf('.', StringComparison.Ordinal);
        var integer = point < 0 ? text : text[..point];
        var fraction = point < 0 ? "" : text[(point + 1)..];
        var all = (integer + fraction).TrimStart('0');
        var leadingZeros = (integer + fraction).Length - all.Length;
        exponent += integer.Length - 1 - leadingZeros;
        all = all.TrimEnd('0');
        return (all.Length == 0 ? "0" : all, exponent);
    }

    public int Count => Kind == RuleKind.List ? List.Count : Json.GetArrayLength();

    public RuleValue Item(int index) => Kind == RuleKind.List
        ? (index >= 0 && index < List.Count ? List[index] : Undefined)
        : (index >= 0 && index < Json.GetArrayLength() ? Of(Json[index]) : Undefined);

    public IEnumerable<RuleValue> Items()
    {
        if (Kind == RuleKind.List)
        {
            return List;
        }
        return Json.EnumerateArray().Select(Of);
    }

    /// <summary><c>===</c>. Two objects are the same only when they are the same element of the same document.</summary>
    public static bool StrictEquals(RuleValue a, RuleValue b)
    {
        if (a.Kind != b.Kind)
        {
            return false;
        }
        return a.Kind switch
        {
            RuleKind.Undefined or RuleKind.Null => true,
            RuleKind.Boolean or RuleKind.Number => a._number == b._number,
            RuleKind.String => string.Equals(a.String, b.String, StringComparison.Ordinal),
            RuleKind.Json => ((JsonBox)a._ref!).Same((JsonBox)b._ref!),
            _ => ReferenceEquals(a._ref, b._ref),
        };
    }

    /// <summary><c>==</c>: null and undefined are equal to each other; numbers, strings and booleans compare as numbers.</summary>
    public static bool LooseEquals(RuleValue a, RuleValue b)
    {
        if (a.Kind == b.Kind)
        {
            return StrictEquals(a, b);
        }
        if (a.IsNullish || b.IsNullish)
        {
            return a.IsNullish && b.IsNullish;
        }
        if (a.Kind is RuleKind.Json or RuleKind.List || b.Kind is RuleKind.Json or RuleKind.List)
        {
            var (obj, other) = a.Kind is RuleKind.Json or RuleKind.List ? (a, b) : (b, a);
            return other.Kind is RuleKind.Json or RuleKind.List ? false : LooseEquals(Of(obj.ToJsString()), other);
        }
        return a.ToNumber() == b.ToNumber();
    }

    public override string ToString() => Kind == RuleKind.Json ? Json.GetRawText() : ToJsString();

    /// <summary>Boxes an element, so that a value stays small; a box is one object as JavaScript's identity sees it.</summary>
    private sealed class JsonBox(JsonElement element)
    {
        public JsonElement Element { get; } = element;

        public bool Same(JsonBox other) => ReferenceEquals(this, other);
    }
}
