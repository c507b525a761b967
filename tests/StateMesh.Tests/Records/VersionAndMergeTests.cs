using System.Text.Json.Nodes;
using StateMesh.Client;
using StateMesh.Records;

namespace StateMesh.Tests.Records;

public class VersionAndMergeTests
{
    [Theory]
    [InlineData(0, 1, "Next", 1)]
    [InlineData(5, 6, "Next", 6)]
    [InlineData(5, -1, "Next", 6)]
    [InlineData(0, -1, "Next", 1)]
    [InlineData(5, 5, "Exists", 5)]
    [InlineData(5, 1, "Exists", 1)]
    [InlineData(5, 0, "Exists", 0)]
    [InlineData(5, 7, "Gap", 7)]
    [InlineData(0, 100, "Gap", 100)]
    public void A_write_is_next_exists_or_a_gap(int current, int requested, string expected, int resolved)
    {
        Assert.Equal(expected, RecordVersions.Check(current, requested, out var version).ToString());
        Assert.Equal(resolved, version);
    }

    private static readonly JsonNode Local = JsonNode.Parse("{\"n\":1,\"mine\":true}")!;
    private static readonly JsonNode Remote = JsonNode.Parse("{\"n\":2}")!;

    [Fact]
    public void Remote_wins_returns_the_remote_data()
    {
        var merged = MergeStrategy.RemoteWins.Merge(new MergeContext("r", Local, Remote, 3));
        Assert.True(JsonNode.DeepEquals(Remote, merged));
        Assert.NotSame(Remote, merged);
    }

    [Fact]
    public void Local_wins_returns_the_local_data()
    {
        var merged = MergeStrategy.LocalWins.Merge(new MergeContext("r", Local, Remote, 3));
        Assert.True(JsonNode.DeepEquals(Local, merged));
    }

    [Fact]
    public void A_custom_strategy_sees_both_sides_and_the_remote_version()
    {
        MergeContext? seen = null;
        var strategy = MergeStrategy.Custom(c =>
        {
            seen = c;
            return new JsonObject { ["n"] = c.Local!["n"]!.GetValue<int>() + c.Remote!["n"]!.GetValue<int>() };
        });
        var merged = strategy.Merge(new MergeContext("r", Local, Remote, 3));
        Assert.Equal(3, merged!["n"]!.GetValue<int>());
        Assert.Equal(("r", 3), (seen!.Name, seen.RemoteVersion));
    }
}
