using StateMesh.Client;

namespace StateMesh.Tests.Client;

public class ReconnectDelayTests
{
    [Fact]
    public void Reconnects_follow_the_schedule_plus_a_random_extra_of_up_to_the_jitter()
    {
        var options = new StateMeshClientOptions
        {
            ReconnectIntervalIncrement = TimeSpan.FromSeconds(4), MaxReconnectInterval = TimeSpan.FromSeconds(10), ReconnectJitter = TimeSpan.FromSeconds(1),
        };
        Assert.Equal(
            [TimeSpan.Zero, TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(10)],
            Enumerable.Range(0, 4).Select(a => StateMeshClient.ReconnectDelay(options, a, 0)));
        Assert.Equal(TimeSpan.FromSeconds(4.5), StateMeshClient.ReconnectDelay(options, 1, 0.5));
        Assert.True(StateMeshClient.ReconnectDelay(options, 3, 0.999_999) < TimeSpan.FromSeconds(11));
    }

    [Fact]
    public void A_thousand_clients_of_a_restarted_node_spread_their_first_reconnect_over_the_jitter()
    {
        var options = new StateMeshClientOptions();
        var random = new Random(7);
        var firstAttempts = Enumerable.Range(0, 1000).Select(_ => StateMeshClient.ReconnectDelay(options, 0, random.NextDouble())).ToList();
        Assert.All(firstAttempts, d => Assert.InRange(d, TimeSpan.Zero, options.ReconnectJitter));
        // In 100 ms slots, no slot holds more than a fifth of the clients (all at once would be 1000 in one).
        Assert.True(firstAttempts.GroupBy(d => (int)(d.TotalMilliseconds / 100)).Max(g => g.Count()) < 200);
    }

    [Fact]
    public void The_jitter_never_exceeds_one_increment()
    {
        var options = new StateMeshClientOptions { ReconnectIntervalIncrement = TimeSpan.FromMilliseconds(200), ReconnectJitter = TimeSpan.FromSeconds(5) };
        Assert.Equal(TimeSpan.FromMilliseconds(300), StateMeshClient.ReconnectDelay(options, 1, 0.5));
    }
}
