using StateMesh.Permissions;

namespace StateMesh.Tests.Permissions;

/// <summary>A permissions file: deepstream's shape, validation with a reason, and which path decides for a name.</summary>
public sealed class PermissionRulesTests
{
    private const string Minimal = """
        presence: { "*": { allow: true } }
        event: { "*": { publish: true, subscribe: true, listen: true } }
        rpc: { "*": { provide: true, request: true } }
        """;

    private static PermissionRules Parse(string record) => PermissionRules.Parse(Minimal + "\nrecord:\n" + record, yaml: true, "test.yml");

    [Fact]
    public void The_longest_matching_path_that_defines_the_rule_type_decides()
    {
        var rules = Parse("""
              "*": { read: true, write: false }
              "profile/*": { read: false }
              "profile/$userid": { write: "user.id === $userid" }
              "profile/$userid/avatar": { read: true }
            """);
        Assert.Equal("profile/*", rules.Find(PermissionSection.Record, RuleType.Read, "profile/ana")!.Value.Path);
        var write = rules.Find(PermissionSection.Record, RuleType.Write, "profile/ana")!.Value;
        Assert.Equal(("profile/$userid", "ana"), (write.Path, write.Variables.Single()));
        Assert.Equal("profile/$userid/avatar", rules.Find(PermissionSection.Record, RuleType.Read, "profile/ana/avatar")!.Value.Path);
        // $userid is one segment: profile/ana/avatar does not match profile/$userid, so "*" decides its write.
        Assert.Equal("*", rules.Find(PermissionSection.Record, RuleType.Write, "profile/ana/avatar")!.Value.Path);
        Assert.Null(rules.Find(PermissionSection.Record, RuleType.Delete, "profile/ana")); // no path defines delete: denied
    }

    [Fact]
    public void Of_two_paths_as_long_the_last_in_the_file_decides()
    {
        var rules = Parse("""
              "*": { read: true }
              "a/$x": { read: false }
              "a/$y": { read: "true" }
            """);
        Assert.Equal("a/$y", rules.Find(PermissionSection.Record, RuleType.Read, "a/1")!.Value.Path);
    }

    [Fact]
    public void Regex_characters_in_a_path_are_themselves()
    {
        var rules = Parse("""
              "*": { read: false }
              "a.b/*": { read: true }
            """);
        Assert.True(rules.Find(PermissionSection.Record, RuleType.Read, "a.b/1")!.Value.Rule.Constant);
        Assert.False(rules.Find(PermissionSection.Record, RuleType.Read, "axb/1")!.Value.Rule.Constant);
    }

    [Fact]
    public void The_same_file_as_json_reads_the_same()
    {
        var json = """
            { "presence": { "*": { "allow": true } }, "event": { "*": { "publish": true } }, "rpc": { "*": { "request": true } },
              "record": { "*": { "read": "user.id === 'ana'" } } }
            """;
        var rules = PermissionRules.Parse(json, yaml: false, "test.json");
        Assert.Equal("user.id === 'ana'", rules.Find(PermissionSection.Record, RuleType.Read, "x")!.Value.Rule.Expression!.Text);
    }

    [Theory]
    [InlineData("record: { \"*\": { read: true } }", "missing section \"event\"")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: true } }\nrpc: { \"*\": { request: true } }\nrecord: { \"a\": { read: true } }", "no root path \"*\"")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: true } }\nrpc: { \"*\": { request: true } }\nrecord: { \"*\": { read: true } }\nfile: {}", "unexpected section \"file\"")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: true } }\nrpc: { \"*\": { request: true } }\nrecord: { \"*\": { publish: true } }", "unknown rule type \"publish\"")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: true } }\nrpc: { \"*\": { request: true } }\nrecord: { \"*\": { read: \"data.x\" } }", "rule read for record does not support data")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: \"oldData.x\" } }\nrpc: { \"*\": { request: true } }\nrecord: { \"*\": { read: true } }", "rule publish for event does not support oldData")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: true } }\nrpc: { \"*\": { request: true } }\nrecord: { \"*\": { read: 1 } }", "must be true, false or a string")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: true } }\nrpc: { \"*\": { request: true } }\nrecord: { \"*\": { read: true }, \"/x\": { read: true } }", "can't start with /")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: true } }\nrpc: { \"*\": { request: true } }\nrecord: { \"*\": { read: true }, \"a/$\": { read: true } }", "invalid variable name")]
    [InlineData("presence: { \"*\": { allow: true } }\nevent: { \"*\": { publish: true } }\nrpc: { \"*\": { request: true } }\nrecord: { \"*\": { read: \"new Date()\" } }", "record \"*\" read: a rule can't contain the new keyword")]
    [InlineData("record: [", "not valid YAML at line 2, column")]
    public void A_bad_file_is_refused_with_where_and_why(string text, string reason)
    {
        var ex = Assert.Throws<PermissionsException>(() => PermissionRules.Parse(text, yaml: true, "permissions.yml"));
        Assert.StartsWith("permissions.yml: ", ex.Message, StringComparison.Ordinal);
        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_permissions_file_in_the_readme_loads_and_means_what_it_says()
    {
        var readme = File.ReadAllText(Path.Combine(Support.Repository.Root, "README.md"));
        var section = readme[readme.IndexOf("## Permissions", StringComparison.Ordinal)..];
        var start = section.IndexOf("```yaml\n", StringComparison.Ordinal) + "```yaml\n".Length;
        var yaml = section[start..section.IndexOf("```", start, StringComparison.Ordinal)];
        var rules = PermissionRules.Parse(yaml, yaml: true, "README.md");
        Assert.Equal(("profile/$owner", "ana"), (rules.Find(PermissionSection.Record, RuleType.Write, "profile/ana")!.Value.Path, rules.Find(PermissionSection.Record, RuleType.Write, "profile/ana")!.Value.Variables[0]));
        Assert.False(rules.Find(PermissionSection.Record, RuleType.Write, "notes/1")!.Value.Rule.Constant);
        Assert.True(rules.Find(PermissionSection.Record, RuleType.Write, "order/1")!.Value.Rule.Expression!.UsesLookup);
        Assert.Equal("user.data.role === 'admin'", rules.Find(PermissionSection.Event, RuleType.Publish, "announcements/today")!.Value.Rule.Expression!.Text);
    }

    [Fact]
    public void The_complex_rule_set_of_the_conformance_tests_loads()
    {
        var rules = PermissionRules.Load(Path.Combine(Support.Repository.Root, "tests", "conformance", "permissions", "complex.yml"));
        Assert.Equal("profile/$owner", rules.Find(PermissionSection.Record, RuleType.Write, "profile/ana")!.Value.Path);
        Assert.True(rules.Find(PermissionSection.Record, RuleType.Write, "order/1")!.Value.Rule.Expression!.UsesLookup);
    }
}
