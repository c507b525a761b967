using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using StateMesh.Records;

namespace StateMesh.Tests.Records;

/// <summary>A well-formed path, as text, for property tests.</summary>
public sealed record GeneratedPath(string Text)
{
    public override string ToString() => Text;
}

public class RecordPathTests
{
    private static readonly string[] Names = ["a", "b", "title", "x_1", "ü", "0", "with space", "$var"];

    /// <summary>Paths built from names and small indexes, always starting with a name (records are objects).</summary>
    public static Arbitrary<GeneratedPath> Paths() =>
        Gen.Choose(1, 5).SelectMany(length =>
            Gen.ArrayOf(Gen.OneOf(
                Gen.Elements(Names).Select(n => new PathToken(n, 0)),
                Gen.Choose(0, 6).Select(i => new PathToken(null, i))), length)
            .SelectMany(rest => Gen.Elements(Names).Select(first => new GeneratedPath(Format([new PathToken(first, 0), .. rest.Skip(1)])))))
        .ToArbitrary();

    private static PathToken[] Parse(GeneratedPath path)
    {
        Assert.True(RecordPath.TryParse(path.Text, out var tokens, out var error), error);
        return tokens;
    }

    private static string Format(PathToken[] tokens)
    {
        var text = new System.Text.StringBuilder();
        foreach (var t in tokens)
        {
            if (t.IsIndex)
            {
                text.Append('[').Append(t.Index).Append(']');
            }
            else
            {
                if (text.Length > 0) { text.Append('.'); }
                text.Append(t.Property);
            }
        }
        return text.ToString();
    }

    [Property(Arbitrary = [typeof(RecordPathTests)])]
    public bool Parsing_then_formatting_gives_the_same_text(GeneratedPath path) => Format(Parse(path)) == path.Text;

    [Property(Arbitrary = [typeof(RecordPathTests)])]
    public bool A_value_set_at_a_path_reads_back_there(GeneratedPath path, int value)
    {
        var tokens = Parse(path);
        var root = new JsonObject();
        return RecordPath.TrySet(root, tokens, JsonValue.Create(value), out _)
            && RecordPath.Get(root, tokens)!.GetValue<int>() == value;
    }

    [Property(Arbitrary = [typeof(RecordPathTests)])]
    public bool Setting_one_path_leaves_a_sibling_property_alone(GeneratedPath path)
    {
        var tokens = Parse(path);
        var root = JsonNode.Parse("{\"untouched\":{\"deep\":[1,2,3]}}")!;
        if (tokens[0].Property == "untouched")
        {
            return true;
        }
        RecordPath.TrySet(root, tokens, JsonValue.Create("v"), out _);
        return root["untouched"]!.ToJsonString() == "{\"deep\":[1,2,3]}";
    }

    [Property(Arbitrary = [typeof(RecordPathTests)])]
    public bool After_an_erase_the_path_is_gone_or_null(GeneratedPath path)
    {
        var tokens = Parse(path);
        var root = new JsonObject();
        RecordPath.TrySet(root, tokens, JsonValue.Create(1), out _);
        RecordPath.Erase(root, tokens);
        return RecordPath.Get(root, tokens) is null;
    }

    [Property(Arbitrary = [typeof(RecordPathTests)])]
    public bool Setting_the_same_value_twice_changes_nothing_the_second_time(GeneratedPath path)
    {
        var tokens = Parse(path);
        var root = new JsonObject();
        RecordPath.TrySet(root, tokens, JsonValue.Create("x"), out _);
        var once = root.ToJsonString();
        RecordPath.TrySet(root, tokens, JsonValue.Create("x"), out _);
        return root.ToJsonString() == once;
    }

    [Property]
    public bool Arbitrary_strings_never_throw_and_forbidden_names_never_parse(NonNull<string> text)
    {
        var ok = RecordPath.TryParse(text.Get, out var tokens, out var error);
        return ok
            ? tokens.Length > 0 && tokens.All(t => t.Property is not ("__proto__" or "constructor" or "prototype"))
            : error.Length > 0;
    }

    [Theory]
    [InlineData("__proto__")]
    [InlineData("a.__proto__.b")]
    [InlineData("constructor")]
    [InlineData("a[0].prototype")]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("a.")]
    [InlineData(".a")]
    [InlineData("a..b")]
    [InlineData("a[")]
    [InlineData("a[]")]
    [InlineData("a[-1]")]
    [InlineData("a[1x]")]
    [InlineData("a]")]
    [InlineData("a[0]b")]
    [InlineData("a[100001]")]
    public void Bad_paths_are_refused(string path)
    {
        Assert.False(RecordPath.TryParse(path, out _, out var error));
        Assert.NotEmpty(error);
    }

    [Fact]
    public void Arrays_grow_with_nulls_and_missing_parents_are_created_by_the_next_step()
    {
        var root = new JsonObject();
        Assert.True(RecordPath.TryParse("a.b[2].c", out var tokens, out _));
        Assert.True(RecordPath.TrySet(root, tokens, JsonValue.Create("x"), out _));
        Assert.Equal("{\"a\":{\"b\":[null,null,{\"c\":\"x\"}]}}", root.ToJsonString());
    }

    [Fact]
    public void Erasing_an_array_element_nulls_it_and_a_property_is_removed()
    {
        var root = JsonNode.Parse("{\"l\":[1,2,3],\"p\":{\"q\":1,\"r\":2}}")!;
        RecordPath.TryParse("l[1]", out var element, out _);
        RecordPath.TryParse("p.q", out var property, out _);
        RecordPath.Erase(root, element);
        RecordPath.Erase(root, property);
        Assert.Equal("{\"l\":[1,null,3],\"p\":{\"r\":2}}", root.ToJsonString());
    }

    [Fact]
    public void A_property_cannot_be_set_on_an_array()
    {
        var root = JsonNode.Parse("{\"l\":[1]}")!;
        RecordPath.TryParse("l.name", out var tokens, out _);
        Assert.False(RecordPath.TrySet(root, tokens, JsonValue.Create(1), out var error));
        Assert.Contains("array", error, StringComparison.Ordinal);
        Assert.Equal("{\"l\":[1]}", root.ToJsonString());
    }

    [Fact]
    public void A_scalar_in_the_way_is_replaced_as_deepstream_does()
    {
        var root = JsonNode.Parse("{\"a\":5}")!;
        RecordPath.TryParse("a.b", out var tokens, out _);
        Assert.True(RecordPath.TrySet(root, tokens, JsonValue.Create(1), out _));
        Assert.Equal("{\"a\":{\"b\":1}}", root.ToJsonString());
    }
}
