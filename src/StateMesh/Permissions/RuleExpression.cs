using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace StateMesh.Permissions;

/// <summary>A rule that cannot be used: its text, and what is wrong with it.</summary>
internal sealed class RuleSyntaxException(string message) : Exception(message);

/// <summary>A rule failed while it ran (a property of undefined, a regex that took too long, a limit reached).</summary>
internal sealed class RuleRuntimeException(string message) : Exception(message);

/// <summary>
/// What a rule sees while it runs, and what it spent. One scope serves one check; the rule is shared by all.
/// </summary>
internal sealed class RuleScope
{
    public RuleValue User;
    public RuleValue Data;
    public RuleValue OldData;
    public double Now;
    public int Action;
    public string Name = "";
    public string[] Variables = [];

    /// <summary>Another record's current data: null when it is not loaded yet (the check loads it and runs again).</summary>
    public Func<string, RuleValue?>? Lookup;

    /// <summary>Records a run asked for that were not loaded.</summary>
    public List<string>? Missing;

    public int Steps;
    public int MaxSteps = 10_000;
    public int Lookups;
    public int MaxLookups = 32;

    public void Spend(int steps = 1)
    {
        Steps += steps;
        if (Steps > MaxSteps)
        {
            throw new RuleRuntimeException($"the rule did more than {MaxSteps} steps of work");
        }
    }
}

/// <summary>
/// A permission rule: deepstream's JavaScript expression subset, parsed once into a tree that runs on
/// <see cref="RuleValue"/>s. No script engine, no I/O, no loops: a rule's cost is bounded by its size and
/// <see cref="RuleScope.MaxSteps"/>.
/// </summary>
internal sealed class RuleExpression
{
    /// <summary>The functions a rule may call, as deepstream allows them (<c>_</c> reads another record).</summary>
    public static readonly IReadOnlySet<string> Functions = new HashSet<string>(StringComparer.Ordinal)
    {
        "_", "startsWith", "endsWith", "includes", "indexOf", "match", "toUpperCase", "toLowerCase", "trim",
    };

    private static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(50);
    private const int MaxLength = 10_000;
    private const int MaxDepth = 64;

    private readonly Node _root;

    private RuleExpression(string text, Node root, bool usesData, bool usesOldData, bool usesLookup)
    {
        Text = text;
        _root = root;
        UsesData = usesData;
        UsesOldData = usesOldData;
        UsesLookup = usesLookup;
    }

    public string Text { get; }

    public bool UsesData { get; }

    public bool UsesOldData { get; }

    /// <summary>Whether the rule calls <c>_()</c>.</summary>
    public bool UsesLookup { get; }

    /// <summary>Parses a rule. <paramref name="variables"/> are the path's <c>$names</c>, in order.</summary>
    /// <exception cref="RuleSyntaxException">The rule is not valid; the message says why.</exception>
    public static RuleExpression Parse(string text, IReadOnlyList<string> variables)
    {
        if (text.Length == 0)
        {
            throw new RuleSyntaxException("a rule can't be empty");
        }
        if (text.Length > MaxLength)
        {
            throw new RuleSyntaxException($"a rule may be at most {MaxLength} characters long");
        }
        var parser = new Parser(text, variables);
        var root = parser.ParseAll();
        return new RuleExpression(text, root, parser.UsesData, parser.UsesOldData, parser.UsesLookup);
    }

    /// <summary>Runs the rule: its value, as JavaScript would compute it.</summary>
    public RuleValue Evaluate(RuleScope scope) => _root.Evaluate(scope);

    // ---- the tree ----

    private abstract class Node
    {
        public abstract RuleValue Evaluate(RuleScope scope);
    }

    private sealed class Constant(RuleValue value) : Node
    {
        public RuleValue Value { get; } = value;

        public override RuleValue Evaluate(RuleScope scope) => Value;
    }

    private enum Variable { User, Data, OldData, Now, Action, Name }

    private sealed class VariableNode(Variable variable) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            scope.Spend();
            return variable switch
            {
                Variable.User => scope.User,
                Variable.Data => scope.Data,
                Variable.OldData => scope.OldData,
                Variable.Now => RuleValue.Of(scope.Now),
                Variable.Action => RuleValue.Of(scope.Action),
                _ => RuleValue.Of(scope.Name),
            };
        }
    }

    private sealed class PathVariable(int index) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            scope.Spend();
            return index < scope.Variables.Length ? RuleValue.Of(scope.Variables[index]) : RuleValue.Undefined;
        }
    }

    private sealed class ListNode(Node[] items) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            scope.Spend(1 + items.Length);
            var values = new RuleValue[items.Length];
            for (var i = 0; i < items.Length; i++)
            {
                values[i] = items[i].Evaluate(scope);
            }
            return RuleValue.Of(values);
        }
    }

    /// <summary>
    /// What a property read or call is made on: false when it is null or undefined in an optional chain (the chain is
    /// undefined); an error when it is null or undefined elsewhere, as in JavaScript.
    /// </summary>
    private static bool Target(Node target, RuleScope scope, bool optional, out RuleValue value, Func<string> what, string text)
    {
        scope.Spend();
        value = target.Evaluate(scope);
        if (!value.IsNullish)
        {
            return true;
        }
        return optional ? false : throw new RuleRuntimeException($"{what()} of {value.ToJsString()} ({text})");
    }

    private sealed class Member(Node target, Node key, bool optional, string text) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            if (!Target(target, scope, optional, out var value, () => $"cannot read '{KeyText(scope)}'", text))
            {
                return RuleValue.Undefined;
            }
            return Get(value, key.Evaluate(scope), scope);
        }

        private string KeyText(RuleScope scope) => key is Constant c ? c.Value.ToJsString() : "a property";

        public static RuleValue Get(RuleValue value, RuleValue key, RuleScope scope)
        {
            switch (value.Kind)
            {
                case RuleKind.String:
                    if (key.Kind == RuleKind.String && key.String == "length")
                    {
                        return RuleValue.Of(value.String.Length);
                    }
                    if (TryIndex(key, out var charIndex))
                    {
                        return charIndex < value.String.Length ? RuleValue.Of(value.String[charIndex].ToString()) : RuleValue.Undefined;
                    }
                    return RuleValue.Undefined;
                case RuleKind.List:
                case RuleKind.Json when value.IsArray:
                    if (key.Kind == RuleKind.String && key.String == "length")
                    {
                        return RuleValue.Of(value.Count);
                    }
                    return TryIndex(key, out var index) ? value.Item(index) : RuleValue.Undefined;
                case RuleKind.Json:
                    scope.Spend();
                    return value.Json.TryGetProperty(key.ToJsString(), out var property) ? RuleValue.Of(property) : RuleValue.Undefined;
                default:
                    return RuleValue.Undefined;
            }
        }

        private static bool TryIndex(RuleValue key, out int index)
        {
            var number = key.Kind == RuleKind.Number ? key.Number : key.Kind == RuleKind.String && int.TryParse(key.String, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) ? parsed : -1;
            index = number >= 0 && number <= int.MaxValue && number == Math.Floor(number) ? (int)number : -1;
            return index >= 0;
        }
    }

    private sealed class Lookup(Node argument) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            scope.Spend();
            var value = argument.Evaluate(scope);
            // As in deepstream: a name that is not a string, or that has "undefined" in it (built from a missing value),
            // reads nothing, so that a rule cannot be led to a record an attacker made under such a name.
            if (value.Kind != RuleKind.String || value.String.Contains("undefined", StringComparison.Ordinal))
            {
                return RuleValue.Undefined;
            }
            var name = value.String;
            if (++scope.Lookups > scope.MaxLookups)
            {
                throw new RuleRuntimeException($"the rule read more than {scope.MaxLookups} records with _()");
            }
            if (scope.Lookup?.Invoke(name) is { } found)
            {
                return found;
            }
            (scope.Missing ??= []).Add(name);
            return RuleValue.Undefined;
        }
    }

    private sealed class MethodCall(Node target, string method, Node[] arguments, bool optional, string text) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            if (!Target(target, scope, optional, out var value, () => $"cannot call '{method}'", text))
            {
                return RuleValue.Undefined;
            }
            var args = new RuleValue[arguments.Length];
            for (var i = 0; i < arguments.Length; i++)
            {
                args[i] = arguments[i].Evaluate(scope);
            }
            RuleValue Arg(int i) => i < args.Length ? args[i] : RuleValue.Undefined;
            if (value.Kind == RuleKind.String)
            {
                var s = value.String;
                scope.Spend(1 + s.Length / 64);
                switch (method)
                {
                    case "startsWith":
                        return RuleValue.Of(s.AsSpan(Math.Clamp(Position(Arg(1), 0), 0, s.Length)).StartsWith(Arg(0).ToJsString(), StringComparison.Ordinal));
                    case "endsWith":
                        return RuleValue.Of(s.EndsWith(Arg(0).ToJsString(), StringComparison.Ordinal));
                    case "includes":
                        return RuleValue.Of(s.Contains(Arg(0).ToJsString(), StringComparison.Ordinal));
                    case "indexOf":
                        return RuleValue.Of(s.IndexOf(Arg(0).ToJsString(), Math.Clamp(Position(Arg(1), 0), 0, s.Length), StringComparison.Ordinal));
                    case "toUpperCase":
                        return RuleValue.Of(s.ToUpperInvariant());
                    case "toLowerCase":
                        return RuleValue.Of(s.ToLowerInvariant());
                    case "trim":
                        return RuleValue.Of(s.Trim());
                    case "match":
                        return Match(s, Arg(0), scope);
                }
            }
            else if (value.IsArray)
            {
                scope.Spend(1 + value.Count);
                switch (method)
                {
                    case "includes":
                        var wanted = Arg(0);
                        return RuleValue.Of(value.Items().Any(item => RuleValue.StrictEquals(item, wanted) || (item.Kind == RuleKind.Number && wanted.Kind == RuleKind.Number && double.IsNaN(item.Number) && double.IsNaN(wanted.Number))));
                    case "indexOf":
                        var i = 0;
                        foreach (var item in value.Items())
                        {
                            if (RuleValue.StrictEquals(item, Arg(0)))
                            {
                                return RuleValue.Of(i);
                            }
                            i++;
                        }
                        return RuleValue.Of(-1);
                }
            }
            throw new RuleRuntimeException($"{method} is not a function of a {value.TypeOf} ({text})");
        }

        private static int Position(RuleValue value, int fallback) => value.Kind == RuleKind.Undefined ? fallback : (int)Math.Min(int.MaxValue, Math.Max(0, double.IsNaN(value.ToNumber()) ? 0 : value.ToNumber()));

        private static RuleValue Match(string input, RuleValue pattern, RuleScope scope)
        {
            var holder = pattern.Kind == RuleKind.List ? pattern.List as RegexHolder : null;
            var regex = holder?.Regex ?? Patterns.Get(pattern.ToJsString());
            try
            {
                if (holder is { Global: true })
                {
                    var all = regex.Matches(input).Select(m => RuleValue.Of(m.Value)).ToArray();
                    scope.Spend(1 + all.Length);
                    return all.Length == 0 ? RuleValue.Null : RuleValue.Of(all);
                }
                var match = regex.Match(input);
                if (!match.Success)
                {
                    return RuleValue.Null;
                }
                var groups = new RuleValue[match.Groups.Count];
                for (var g = 0; g < groups.Length; g++)
                {
                    groups[g] = match.Groups[g].Success ? RuleValue.Of(match.Groups[g].Value) : RuleValue.Undefined;
                }
                scope.Spend(groups.Length);
                return RuleValue.Of(groups);
            }
            catch (RegexMatchTimeoutException)
            {
                throw new RuleRuntimeException($"the regular expression /{regex}/ took longer than {RegexTimeout.TotalMilliseconds} ms");
            }
        }
    }

    /// <summary>A regex literal travels as a value of kind List whose list is this holder (a rule cannot see it).</summary>
    private sealed class RegexHolder(Regex regex, bool global) : List<RuleValue>
    {
        public Regex Regex { get; } = regex;

        /// <summary>The g flag: match gives every match, not the first with its groups.</summary>
        public bool Global { get; } = global;
    }

    /// <summary>Regexes built from strings at run time, kept for reuse up to a bound.</summary>
    private static class Patterns
    {
        private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Regex> Cache = new(StringComparer.Ordinal);

        public static Regex Get(string pattern)
        {
            if (Cache.TryGetValue(pattern, out var regex))
            {
                return regex;
            }
            try
            {
                regex = new Regex(pattern, RegexOptions.CultureInvariant, RegexTimeout);
            }
            catch (ArgumentException ex)
            {
                throw new RuleRuntimeException($"'{pattern}' is not a regular expression: {ex.Message}");
            }
            if (Cache.Count < 256)
            {
                Cache.TryAdd(pattern, regex);
            }
            return regex;
        }
    }

    private sealed class Unary(string op, Node operand) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            scope.Spend();
            var value = operand.Evaluate(scope);
            return op switch
            {
                "!" => RuleValue.Of(!value.IsTruthy),
                "-" => RuleValue.Of(-value.ToNumber()),
                "+" => RuleValue.Of(value.ToNumber()),
                _ => RuleValue.Of(value.TypeOf),
            };
        }
    }

    private sealed class Logical(string op, Node left, Node right) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            scope.Spend();
            var l = left.Evaluate(scope);
            return op switch
            {
                "&&" => l.IsTruthy ? right.Evaluate(scope) : l,
                "||" => l.IsTruthy ? l : right.Evaluate(scope),
                _ => l.IsNullish ? right.Evaluate(scope) : l,
            };
        }
    }

    private sealed class Conditional(Node test, Node then, Node otherwise) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            scope.Spend();
            return test.Evaluate(scope).IsTruthy ? then.Evaluate(scope) : otherwise.Evaluate(scope);
        }
    }

    private sealed class Binary(string op, Node left, Node right) : Node
    {
        public override RuleValue Evaluate(RuleScope scope)
        {
            scope.Spend();
            var l = left.Evaluate(scope);
            var r = right.Evaluate(scope);
            switch (op)
            {
                case "===": return RuleValue.Of(RuleValue.StrictEquals(l, r));
                case "!==": return RuleValue.Of(!RuleValue.StrictEquals(l, r));
                case "==": return RuleValue.Of(RuleValue.LooseEquals(l, r));
                case "!=": return RuleValue.Of(!RuleValue.LooseEquals(l, r));
                case "+":
                    if (l.Kind is RuleKind.String or RuleKind.Json or RuleKind.List || r.Kind is RuleKind.String or RuleKind.Json or RuleKind.List)
                    {
                        var text = string.Concat(l.ToJsString(), r.ToJsString());
                        scope.Spend(text.Length / 64);
                        if (text.Length > 1_000_000)
                        {
                            throw new RuleRuntimeException("the rule built a string of more than 1,000,000 characters");
                        }
                        return RuleValue.Of(text);
                    }
                    return RuleValue.Of(l.ToNumber() + r.ToNumber());
                case "-": return RuleValue.Of(l.ToNumber() - r.ToNumber());
                case "*": return RuleValue.Of(l.ToNumber() * r.ToNumber());
                case "/": return RuleValue.Of(l.ToNumber() / r.ToNumber());
                case "%": return RuleValue.Of(l.ToNumber() % r.ToNumber());
                default: return RuleValue.Of(Compare(op, l, r));
            }
        }

        private static bool Compare(string op, RuleValue l, RuleValue r)
        {
            if (l.Kind == RuleKind.String && r.Kind == RuleKind.String)
            {
                var c = string.CompareOrdinal(l.String, r.String);
                return op switch { "<" => c < 0, ">" => c > 0, "<=" => c <= 0, _ => c >= 0 };
            }
            var a = l.ToNumber();
            var b = r.ToNumber();
            return op switch { "<" => a < b, ">" => a > b, "<=" => a <= b, _ => a >= b };
        }
    }

    // ---- the parser ----

    private enum TokenKind { Number, String, Regex, Name, Punct, End }

    private readonly record struct Token(TokenKind Kind, string Text, int Position, double Number = 0, Regex? Regex = null, bool Global = false);

    private sealed class Parser
    {
        private static readonly string[] Puncts =
        [
            "===", "!==", "...", "**=", "<<=", ">>=", ">>>",
            "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "=>", "++", "--", "+=", "-=", "*=", "/=", "%=", "**", "<<", ">>",
            "+", "-", "*", "/", "%", "<", ">", "!", "?", ":", ".", ",", "(", ")", "[", "]", "{", "}", "=", ";", "&", "|", "^", "~", "`",
        ];

        private static readonly HashSet<string> Forbidden = new(StringComparer.Ordinal)
        {
            "new", "function", "this", "delete", "void", "class", "var", "let", "const", "return", "if", "for", "while", "do",
            "yield", "await", "async", "import", "export", "with", "throw", "try", "instanceof", "in", "eval", "arguments",
            "constructor", "prototype", "__proto__", "globalThis", "window", "process", "require", "Function",
        };

        private readonly string _text;
        private readonly IReadOnlyList<string> _variables;
        private readonly List<Token> _tokens = [];
        private int _next;
        private int _depth;

        public Parser(string text, IReadOnlyList<string> variables)
        {
            _text = text;
            _variables = variables;
            Tokenize();
        }

        public bool UsesData { get; private set; }

        public bool UsesOldData { get; private set; }

        public bool UsesLookup { get; private set; }

        public Node ParseAll()
        {
            // Said first, wherever they are in the rule: the two things a rule may never do.
            foreach (var token in _tokens)
            {
                if (token.Kind == TokenKind.Punct && token.Text == "=>")
                {
                    throw Error("a rule can't contain user functions", token);
                }
                if (token.Kind == TokenKind.Punct && token.Text is "=" or "+=" or "-=" or "*=" or "/=" or "%=" or "**=" or "<<=" or ">>=" or "++" or "--")
                {
                    throw Error("a rule can't assign", token);
                }
            }
            var node = Expression();
            if (Peek.Kind != TokenKind.End)
            {
                throw Error($"unexpected '{Peek.Text}'", Peek);
            }
            return node;
        }

        private Token Peek => _tokens[_next];

        private Token Take() => _tokens[_next++];

        private bool TakeIf(string punct)
        {
            if (Peek.Kind == TokenKind.Punct && Peek.Text == punct)
            {
                _next++;
                return true;
            }
            return false;
        }

        private void Expect(string punct)
        {
            if (!TakeIf(punct))
            {
                throw Error(Peek.Kind == TokenKind.End ? $"'{punct}' expected at the end" : $"'{punct}' expected, found '{Peek.Text}'", Peek);
            }
        }

        private RuleSyntaxException Error(string what, Token at) => new($"{what} (at character {at.Position + 1} of \"{_text}\")");

        private Node Expression()
        {
            if (++_depth > MaxDepth)
            {
                throw Error($"the rule nests deeper than {MaxDepth}", Peek);
            }
            var node = Conditional();
            _depth--;
            return node;
        }

        private Node Conditional()
        {
            var test = Nullish();
            if (!TakeIf("?"))
            {
                return test;
            }
            var then = Expression();
            Expect(":");
            var otherwise = Expression();
            return new Conditional(test, then, otherwise);
        }

        // Binary operators by precedence, loosest first; each level is left-associative, as in JavaScript.
        private static readonly string[][] Levels =
        [
            ["??"], ["||"], ["&&"], ["===", "!==", "==", "!="], ["<", ">", "<=", ">="], ["+", "-"], ["*", "/", "%"],
        ];

        private Node Nullish() => Level(0);

        private Node Level(int level)
        {
            if (level == Levels.Length)
            {
                return UnaryExpression();
            }
            var left = Level(level + 1);
            while (Peek.Kind == TokenKind.Punct && Array.IndexOf(Levels[level], Peek.Text) >= 0)
            {
                var op = Take().Text;
                var right = Level(level + 1);
                left = op is "??" or "||" or "&&" ? new Logical(op, left, right) : new Binary(op, left, right);
            }
            return left;
        }

        private Node UnaryExpression()
        {
            if (Peek.Kind == TokenKind.Punct && Peek.Text is "!" or "-" or "+")
            {
                var op = Take().Text;
                if (++_depth > MaxDepth)
                {
                    throw Error($"the rule nests deeper than {MaxDepth}", Peek);
                }
                var operand = UnaryExpression();
                _depth--;
                return new Unary(op, operand);
            }
            if (Peek.Kind == TokenKind.Name && Peek.Text == "typeof")
            {
                Take();
                var operand = UnaryExpression();
                return new Unary("typeof", operand);
            }
            return Postfix(Primary());
        }

        private Node Postfix(Node node)
        {
            // Once a chain has a ?., a null or undefined anywhere after it ends the chain as undefined (a?.b.c with a null).
            var chained = false;
            while (true)
            {
                var at = Peek;
                var link = TakeIf("?.");
                chained |= link;
                var optional = chained;
                if (link || TakeIf("."))
                {
                    if (Peek.Kind == TokenKind.Punct && Peek.Text is "(" or "[")
                    {
                        if (!link)
                        {
                            throw Error($"a name expected after '.', found '{Peek.Text}'", Peek);
                        }
                        if (TakeIf("["))
                        {
                            var key = Expression();
                            Expect("]");
                            node = new Member(node, key, optional: true, Slice(at));
                            continue;
                        }
                        throw Error("calls through '?.(' are not supported", Peek);
                    }
                    var name = Take();
                    if (name.Kind != TokenKind.Name)
                    {
                        throw Error($"a name expected after '.', found '{name.Text}'", name);
                    }
                    if (name.Text is "constructor" or "prototype" or "__proto__")
                    {
                        throw Error($"'{name.Text}' can't be used in a rule", name);
                    }
                    if (Peek.Kind == TokenKind.Punct && Peek.Text == "(")
                    {
                        if (!Functions.Contains(name.Text) || name.Text == "_")
                        {
                            throw Error($"function {name.Text} is not supported (a rule may call {string.Join(", ", Functions)})", name);
                        }
                        Take();
                        node = new MethodCall(node, name.Text, Arguments(), optional, Slice(at));
                        continue;
                    }
                    node = new Member(node, new Constant(RuleValue.Of(name.Text)), optional, Slice(at));
                    continue;
                }
                if (TakeIf("["))
                {
                    var key = Expression();
                    Expect("]");
                    node = new Member(node, key, optional: chained, Slice(at));
                    continue;
                }
                if (Peek.Kind == TokenKind.Punct && Peek.Text == "(")
                {
                    throw Error("only _() and the string and array methods " + string.Join(", ", Functions.Where(f => f != "_")) + " can be called", Peek);
                }
                return node;
            }
        }

        private string Slice(Token from) => _text[from.Position..Math.Min(_text.Length, Peek.Position)].Trim();

        private Node[] Arguments()
        {
            var args = new List<Node>();
            if (!TakeIf(")"))
            {
                do
                {
                    args.Add(Expression());
                }
                while (TakeIf(","));
                Expect(")");
            }
            return [.. args];
        }

        private Node Primary()
        {
            var token = Take();
            switch (token.Kind)
            {
                case TokenKind.Number:
                    return new Constant(RuleValue.Of(token.Number));
                case TokenKind.String:
                    return new Constant(RuleValue.Of(token.Text));
                case TokenKind.Regex:
                    return new Constant(RuleValue.Of(new RegexHolder(token.Regex!, token.Global)));
                case TokenKind.Punct when token.Text == "(":
                    var inner = Expression();
                    Expect(")");
                    return inner;
                case TokenKind.Punct when token.Text == "[":
                    var items = new List<Node>();
                    if (!TakeIf("]"))
                    {
                        do
                        {
                            items.Add(Expression());
                        }
                        while (TakeIf(","));
                        Expect("]");
                    }
                    return new ListNode([.. items]);
                case TokenKind.Name:
                    return NameNode(token);
                case TokenKind.End:
                    throw Error("the rule ends too early", token);
                default:
                    throw Error(token.Text switch
                    {
                        "=>" => "a rule can't contain user functions",
                        "=" or "+=" or "-=" or "*=" or "/=" or "%=" => "a rule can't assign",
                        "++" or "--" => "a rule can't assign",
                        "{" => "object literals are not supported in rules",
                        "`" => "template strings are not supported in rules",
                        _ => $"unexpected '{token.Text}'",
                    }, token);
            }
        }

        private Node NameNode(Token token)
        {
            var name = token.Text;
            if (name == "new")
            {
                throw Error("a rule can't contain the new keyword", token);
            }
            if (name == "function")
            {
                throw Error("a rule can't contain user functions", token);
            }
            if (Forbidden.Contains(name))
            {
                throw Error($"'{name}' can't be used in a rule", token);
            }
            switch (name)
            {
                case "true": return new Constant(RuleValue.True);
                case "false": return new Constant(RuleValue.False);
                case "null": return new Constant(RuleValue.Null);
                case "undefined": return new Constant(RuleValue.Undefined);
                case "NaN": return new Constant(RuleValue.Of(double.NaN));
                case "Infinity": return new Constant(RuleValue.Of(double.PositiveInfinity));
                case "user": return new VariableNode(Variable.User);
                case "data":
                    UsesData = true;
                    return new VariableNode(Variable.Data);
                case "oldData":
                    UsesOldData = true;
                    return new VariableNode(Variable.OldData);
                case "now": return new VariableNode(Variable.Now);
                case "action": return new VariableNode(Variable.Action);
                case "name": return new VariableNode(Variable.Name);
                case "_":
                    if (!TakeIf("("))
                    {
                        throw Error("_ must be called: _('record name')", token);
                    }
                    UsesLookup = true;
                    var args = Arguments();
                    if (args.Length != 1)
                    {
                        throw Error("_() takes one record name", token);
                    }
                    return new Lookup(args[0]);
            }
            if (name.StartsWith('$'))
            {
                for (var i = 0; i < _variables.Count; i++)
                {
                    if (_variables[i] == name)
                    {
                        return new PathVariable(i);
                    }
                }
                throw Error($"{name} is not a variable of this path", token);
            }
            if (Peek.Kind == TokenKind.Punct && Peek.Text == "(")
            {
                throw Error($"function {name} is not supported (a rule may call {string.Join(", ", Functions)})", token);
            }
            throw Error($"unknown name {name} (a rule sees user, data, oldData, now, action, name, _() and the path's $variables)", token);
        }

        // ---- the lexer ----

        private void Tokenize()
        {
            var i = 0;
            while (true)
            {
                while (i < _text.Length && char.IsWhiteSpace(_text[i]))
                {
                    i++;
                }
                if (i >= _text.Length)
                {
                    _tokens.Add(new Token(TokenKind.End, "", i));
                    return;
                }
                var c = _text[i];
                var start = i;
                if (char.IsDigit(c) || (c == '.' && i + 1 < _text.Length && char.IsDigit(_text[i + 1])))
                {
                    i = ReadNumber(i);
                    continue;
                }
                if (c is '\'' or '"')
                {
                    _tokens.Add(new Token(TokenKind.String, ReadString(ref i, c), start));
                    continue;
                }
                if (char.IsLetter(c) || c is '_' or '$')
                {
                    while (i < _text.Length && (char.IsLetterOrDigit(_text[i]) || _text[i] is '_' or '$'))
                    {
                        i++;
                    }
                    _tokens.Add(new Token(TokenKind.Name, _text[start..i], start));
                    continue;
                }
                if (c == '/' && RegexAllowed())
                {
                    _tokens.Add(ReadRegex(ref i));
                    continue;
                }
                var punct = Puncts.FirstOrDefault(p => string.CompareOrdinal(_text, i, p, 0, p.Length) == 0);
                if (punct is null)
                {
                    throw Error($"unexpected character '{c}'", new Token(TokenKind.Punct, c.ToString(), i));
                }
                // "?." followed by a digit is a conditional and a number (a ? .5 : 1), as in JavaScript.
                if (punct == "?." && i + 2 < _text.Length && char.IsDigit(_text[i + 2]))
                {
                    punct = "?";
                }
                _tokens.Add(new Token(TokenKind.Punct, punct, start));
                i += punct.Length;
            }
        }

        /// <summary>A '/' starts a regex where an operand is expected (at the start, after an operator or '(' or ',').</summary>
        private bool RegexAllowed()
        {
            if (_tokens.Count == 0)
            {
                return true;
            }
            var last = _tokens[^1];
            return last.Kind == TokenKind.Punct && last.Text is not (")" or "]" or "}")
                || last.Kind == TokenKind.Name && last.Text == "typeof";
        }

        private int ReadNumber(int i)
        {
            var start = i;
            if (_text[i] == '0' && i + 1 < _text.Length && _text[i + 1] is 'x' or 'X')
            {
                i += 2;
                while (i < _text.Length && Uri.IsHexDigit(_text[i]))
                {
                    i++;
                }
                var hex = _text[(start + 2)..i];
                if (hex.Length == 0 || !long.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var h))
                {
                    throw Error("a bad hexadecimal number", new Token(TokenKind.Number, _text[start..i], start));
                }
                _tokens.Add(new Token(TokenKind.Number, _text[start..i], start, h));
                return i;
            }
            while (i < _text.Length && (char.IsDigit(_text[i]) || _text[i] == '.'))
            {
                i++;
            }
            if (i < _text.Length && _text[i] is 'e' or 'E')
            {
                i++;
                if (i < _text.Length && _text[i] is '+' or '-')
                {
                    i++;
                }
                while (i < _text.Length && char.IsDigit(_text[i]))
                {
                    i++;
                }
            }
            var text = _text[start..i];
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                throw Error($"'{text}' is not a number", new Token(TokenKind.Number, text, start));
            }
            if (i < _text.Length && (char.IsLetter(_text[i]) || _text[i] is '_' or '$'))
            {
                throw Error($"'{_text[start..(i + 1)]}' is not a number", new Token(TokenKind.Number, text, start));
            }
            _tokens.Add(new Token(TokenKind.Number, text, start, value));
            return i;
        }

        private string ReadString(ref int i, char quote)
        {
            var start = i;
            var builder = new StringBuilder();
            i++;
            while (true)
            {
                if (i >= _text.Length || _text[i] is '\n' or '\r')
                {
                    throw Error("a string is not closed", new Token(TokenKind.String, "", start));
                }
                var c = _text[i++];
                if (c == quote)
                {
                    return builder.ToString();
                }
                if (c != '\\')
                {
                    builder.Append(c);
                    continue;
                }
                if (i >= _text.Length)
                {
                    throw Error("a string is not closed", new Token(TokenKind.String, "", start));
                }
                var e = _text[i++];
                switch (e)
                {
                    case 'n': builder.Append('\n'); break;
                    case 't': builder.Append('\t'); break;
                    case 'r': builder.Append('\r'); break;
                    case 'b': builder.Append('\b'); break;
                    case 'f': builder.Append('\f'); break;
                    case 'v': builder.Append('\v'); break;
                    case '0': builder.Append('\0'); break;
                    case 'u' when i + 4 <= _text.Length && int.TryParse(_text.AsSpan(i, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code):
                        builder.Append((char)code);
                        i += 4;
                        break;
                    case 'x' when i + 2 <= _text.Length && int.TryParse(_text.AsSpan(i, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var x):
                        builder.Append((char)x);
                        i += 2;
                        break;
                    default: builder.Append(e); break;
                }
            }
        }

        private Token ReadRegex(ref int i)
        {
            var start = i;
            i++;
            var inClass = false;
            var pattern = new StringBuilder();
            while (true)
            {
                if (i >= _text.Length || _text[i] is '\n' or '\r')
                {
                    throw Error("a regular expression is not closed", new Token(TokenKind.Regex, "", start));
                }
                var c = _text[i++];
                if (c == '\\' && i < _text.Length)
                {
                    pattern.Append(c).Append(_text[i++]);
                    continue;
                }
                if (c == '[')
                {
                    inClass = true;
                }
                else if (c == ']')
                {
                    inClass = false;
                }
                else if (c == '/' && !inClass)
                {
                    break;
                }
                pattern.Append(c);
            }
            var options = RegexOptions.CultureInvariant;
            var global = false;
            while (i < _text.Length && char.IsLetter(_text[i]))
            {
                global |= _text[i] == 'g';
                options |= _text[i++] switch
                {
                    'i' => RegexOptions.IgnoreCase,
                    'm' => RegexOptions.Multiline,
                    's' => RegexOptions.Singleline,
                    'g' or 'u' or 'y' or 'd' => RegexOptions.None,
                    var f => throw Error($"unknown regular expression flag '{f}'", new Token(TokenKind.Regex, "", start)),
                };
            }
            try
            {
                return new Token(TokenKind.Regex, _text[start..i], start, Regex: new Regex(pattern.ToString(), options, RegexTimeout), Global: global);
            }
            catch (ArgumentException ex)
            {
                throw Error($"a bad regular expression: {ex.Message}", new Token(TokenKind.Regex, "", start));
            }
        }
    }
}
