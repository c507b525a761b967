using System.Text.Json;
using StateMesh.Permissions;

namespace StateMesh.Tests.Permissions;

/// <summary>deepstream's rule language: JavaScript's semantics on the subset rules use, and what is refused at load.</summary>
public sealed class RuleExpressionTests
{
    private static RuleScope Scope(string? data = null, string? oldData = null, string user = """{"id":"ana","isAuthenticated":true,"data":{"role":"admin"}}""", string name = "x", string[]? variables = null) => new()
    {
        User = RuleValue.Of(JsonDocument.Parse(user).RootElement),
        Data = data is null ? RuleValue.Undefined : RuleValue.Of(JsonDocument.Parse(data).RootElement),
        OldData = oldData is null ? RuleValue.Null : RuleValue.Of(JsonDocument.Parse(oldData).RootElement),
        Name = name,
        Now = 1_700_000_000_000,
        Action = 18,
        Variables = variables ?? [],
    };

    private static RuleValue Run(string rule, RuleScope? scope = null, string[]? variableNames = null) =>
        RuleExpression.Parse(rule, variableNames ?? []).Evaluate(scope ?? Scope());

    [Theory]
    [InlineData("user.id === 'ana'", true)]
    [InlineData("user.id === \"bob\"", false)]
    [InlineData("user.isAuthenticated && user.data.role === 'admin'", true)]
    [InlineData("data.value > 10", true)]
    [InlineData("data.value > '9'", true)]
    [InlineData("'10' < '9'", true)]
    [InlineData("data.value == '12'", true)]
    [InlineData("data.value === '12'", false)]
    [InlineData("null == undefined", true)]
    [InlineData("null === undefined", false)]
    [InlineData("!oldData || data.value > oldData.value", true)]
    [InlineData("typeof data.name === 'string' && typeof data.missing === 'undefined'", true)]
    [InlineData("typeof data.tags === 'object' && data.tags.length === 2", true)]
    [InlineData("data.tags[1] === 'b' && data.tags.indexOf('a') === 0 && data.tags.includes('b')", true)]
    [InlineData("['admin', 'editor'].indexOf(user.data.role) > -1", true)]
    [InlineData("data.name.startsWith('Eg') && data.name.endsWith('on') && data.name.includes('go')", true)]
    [InlineData("data.name.toUpperCase() === 'EGON' && ' x '.trim() === 'x'", true)]
    [InlineData("data.email.match(/@example\\.com$/) !== null", true)]
    [InlineData("data.email.match('^egon')[0] === 'egon'", true)]
    [InlineData("data.email.match(/^EGON/i) !== null", true)]
    [InlineData("data.value % 5 === 2 && data.value / 4 === 3 && data.value - 2 * 6 === 0", true)]
    [InlineData("'item/' + data.value === 'item/12'", true)]
    [InlineData("1 + 2 + '3' === '33'", true)]
    [InlineData("data.missing ? false : true", true)]
    [InlineData("(data.missing ?? 7) === 7 && data.missing?.deeper === undefined", true)]
    [InlineData("data.missing?.deeper.deepest === undefined && data.missing?.list[0] === undefined", true)]
    [InlineData("now > 0 && action === 18 && name === 'x'", true)]
    [InlineData("data.name.length === 4", true)]
    [InlineData("!!data.name", true)]
    [InlineData("0.5 < 1 && 1e3 === 1000 && 0x10 === 16", true)]
    public void Rules_compute_as_javascript_does(string rule, bool expected)
    {
        var scope = Scope(data: """{"value":12,"name":"Egon","tags":["a","b"],"email":"egon@example.com"}""", oldData: null);
        Assert.Equal(expected, Run(rule, scope).IsTruthy);
    }

    [Theory]
    [InlineData("1e-7 + ''", "1e-7")]
    [InlineData("0.000001 + ''", "0.000001")]
    [InlineData("1e21 + ''", "1e+21")]
    [InlineData("123456789012 + ''", "123456789012")]
    [InlineData("123.456 + ''", "123.456")]
    [InlineData("-0 + ''", "0")]
    [InlineData("1 / 3 + ''", "0.3333333333333333")]
    [InlineData("-1.5e-9 + ''", "-1.5e-9")]
    [InlineData("'item/' + 0.5", "item/0.5")]
    public void Numbers_become_strings_as_javascript_writes_them(string rule, string expected) => Assert.Equal(expected, Run(rule).ToJsString());

    [Fact]
    public void A_user_without_server_data_has_an_empty_object_so_a_role_check_denies_instead_of_failing()
    {
        var scope = Scope();
        scope.User = PermissionGate.UserValue("bob", null);
        Assert.False(Run("user.data.role === 'admin'", scope).IsTruthy);
        Assert.True(Run("user.isAuthenticated && user.id === 'bob'", scope).IsTruthy);
        scope.User = PermissionGate.UserValue(StateMesh.Auth.OpenAuthenticationHandler.AnonymousId, null);
        Assert.False(Run("user.isAuthenticated", scope).IsTruthy);
    }

    [Fact]
    public void A_global_regex_match_gives_every_match()
    {
        var scope = Scope(data: """{"text":"a1 b22 c333"}""");
        Assert.True(Run("data.text.match(/[0-9]+/g).length === 3 && data.text.match(/[0-9]+/g)[2] === '333'", scope).IsTruthy);
        Assert.True(Run("data.text.match(/[0-9]+/)[0] === '1'", scope).IsTruthy);
    }

    [Fact]
    public void A_cross_reference_to_a_name_built_from_a_missing_value_reads_nothing()
    {
        var scope = Scope(data: """{"item":"apple"}""");
        var asked = new List<string>();
        scope.Lookup = name => { asked.Add(name); return RuleValue.Null; };
        Assert.False(Run("_('stock/' + data.missing) !== undefined", scope).IsTruthy);
        Assert.False(Run("_(data.count) !== undefined", scope).IsTruthy);
        Assert.Empty(asked);
        Assert.Null(scope.Missing);
    }

    [Fact]
    public void Path_variables_are_the_values_the_name_gave_them()
    {
        var scope = Scope(variables: ["ana", "Miller"]);
        Assert.True(Run("$userid === user.id && $lastname.toLowerCase() === 'miller'", scope, ["$userid", "$lastname"]).IsTruthy);
    }

    [Fact]
    public void A_cross_reference_names_the_record_it_needs_and_reads_it_once_loaded()
    {
        var rule = RuleExpression.Parse("_('item/' + data.itemId).stock > 0", []);
        Assert.True(rule.UsesLookup);
        var scope = Scope(data: """{"itemId":"apple"}""");
        Run("true", scope); // nothing asked
        Assert.Null(scope.Missing);
        Assert.Throws<RuleRuntimeException>(() => rule.Evaluate(scope)); // undefined.stock: the record is not loaded yet
        Assert.Equal(["item/apple"], scope.Missing);
        var stock = JsonDocument.Parse("""{"stock":3}""").RootElement;
        scope.Missing = null;
        scope.Lookup = name => name == "item/apple" ? RuleValue.Of(stock) : null;
        Assert.True(rule.Evaluate(scope).IsTruthy);
        Assert.Null(scope.Missing);
    }

    [Theory]
    [InlineData("new Date()", "new keyword")]
    [InlineData("(function() { return true })()", "user functions")]
    [InlineData("(() => true)()", "user functions")]
    [InlineData("data.x = 1", "assign")]
    [InlineData("eval('1')", "'eval' can't be used")]
    [InlineData("data.toString()", "function toString is not supported")]
    [InlineData("Math.max(1, 2)", "unknown name Math")]
    [InlineData("process.exit()", "'process' can't be used")]
    [InlineData("data.constructor", "'constructor' can't be used")]
    [InlineData("user.id === ", "ends too early")]
    [InlineData("'open", "not closed")]
    [InlineData("$owner === user.id", "$owner is not a variable of this path")]
    [InlineData("{ a: 1 }", "object literals")]
    [InlineData("`x${1}`", "template strings")]
    [InlineData("a; b", "unknown name a")]
    [InlineData("", "can't be empty")]
    public void Rules_deepstream_refuses_are_refused_at_load_with_the_reason(string rule, string reason)
    {
        var ex = Assert.Throws<RuleSyntaxException>(() => RuleExpression.Parse(rule, []));
        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_property_of_undefined_is_a_rule_error_not_a_denial()
    {
        var ex = Assert.Throws<RuleRuntimeException>(() => Run("oldData.value > 1"));
        Assert.Contains("cannot read 'value' of null", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_rule_that_does_too_much_work_is_cut_off()
    {
        var rule = string.Join(" + ", Enumerable.Repeat("user.id", 900));
        var scope = Scope();
        scope.MaxSteps = 1000;
        var ex = Assert.Throws<RuleRuntimeException>(() => Run(rule, scope));
        Assert.Contains("more than 1000 steps", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_rule_that_reads_too_many_records_is_cut_off()
    {
        var rule = string.Join(" && ", Enumerable.Range(0, 40).Select(i => $"_('r/{i}')"));
        var scope = Scope();
        scope.Lookup = _ => RuleValue.True;
        var ex = Assert.Throws<RuleRuntimeException>(() => Run(rule, scope));
        Assert.Contains("more than 32 records", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_regex_that_backtracks_forever_is_cut_off_by_its_timeout()
    {
        var scope = Scope(data: $$"""{"text":"{{new string('a', 40)}}!"}""");
        var ex = Assert.Throws<RuleRuntimeException>(() => Run("data.text.match(/^(a+)+$/) === null", scope));
        Assert.Contains("took longer than", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Deep_nesting_is_refused_at_load()
    {
        var rule = new string('(', 200) + "true" + new string(')', 200);
        var ex = Assert.Throws<RuleSyntaxException>(() => RuleExpression.Parse(rule, []));
        Assert.Contains("nests deeper", ex.Message, StringComparison.Ordinal);
    }
}
