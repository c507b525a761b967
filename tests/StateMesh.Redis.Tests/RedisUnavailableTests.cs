using StateMesh.Redis.Tests.Support;

namespace StateMesh.Redis.Tests;

/// <summary>Without redis-server the fixture makes the tests fail, saying why and how to fix it.</summary>
public sealed class RedisUnavailableTests
{
    [Fact]
    public async Task Without_redis_server_asking_for_the_configuration_fails_with_the_fix()
    {
        await using var server = new RedisServer(() => null);
        await server.InitializeAsync();

        var error = Assert.Throws<InvalidOperationException>(() => server.Configuration);
        Assert.Equal(server.UnavailableReason, error.Message);
        Assert.Contains("apt-get install -y redis-server", error.Message);
        Assert.Contains("STATEMESH_REDIS_BIN", error.Message);
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.StartAgainAsync());
    }

    [Fact]
    public void The_reason_names_STATEMESH_REQUIRE_SERVICES_only_when_it_is_set()
    {
        Assert.Contains("STATEMESH_REQUIRE_SERVICES=1", RedisProcess.UnavailableMessage("redis-server", servicesRequired: true));
        Assert.DoesNotContain("STATEMESH_REQUIRE_SERVICES", RedisProcess.UnavailableMessage("redis-server", servicesRequired: false));
    }
}
