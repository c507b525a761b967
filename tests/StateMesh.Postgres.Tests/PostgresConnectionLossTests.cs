using System.Text;
using Npgsql;
using StateMesh.Postgres.Tests.Support;
using StateMesh.Storage;

namespace StateMesh.Postgres.Tests;

/// <summary>The writer's connection killed, and the whole server gone and back: writes fail or retry, then go on.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresConnectionLossTests(PostgresServer server, Xunit.Abstractions.ITestOutputHelper output)
{
    private static RecordState State(int version) => new(version, Encoding.UTF8.GetBytes($"{{\"v\":{version}}}"));

    private PostgresRecordStorage Create() =>
        new(new PostgresStorageOptions { ConnectionString = server.ConnectionString, Table = Outside.NewTable() });

    private async Task TerminateAsync(int pid)
    {
        await using var admin = await Outside.ConnectAsync(server.ConnectionString);
        Assert.True(await admin.ScalarAsync<bool>("SELECT pg_terminate_backend($1, 10000)", pid), $"backend {pid} did not end");
    }

    [Fact]
    public async Task Writes_after_the_writer_connection_is_killed_mid_stream_succeed()
    {
        var storage = Create();
        await storage.SetAsync("warm-up", State(1), default);
        const int Writers = 8;
        var acknowledged = new int[Writers];
        var attempted = new int[Writers];
        var failures = new List<Exception>();
        var killed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var afterKill = 0;
        var killedPid = 0;
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            for (var v = 1; Volatile.Read(ref afterKill) < 400; v++)
            {
                attempted[w] = v;
                var wasKilled = killed.Task.IsCompleted;
                try
                {
                    await storage.SetAsync($"stream/{w}", State(v), default);
                    acknowledged[w] = v;
                    if (wasKilled)
                    {
                        Interlocked.Increment(ref afterKill);
                    }
                }
                catch (NpgsqlException ex)
                {
                    lock (failures)
                    {
                        failures.Add(ex);
                    }
                }
                if (w == 0 && v == 100)
                {
                    // Mid-stream: the other writers are committing while their connection is killed.
                    killedPid = storage.WriterProcessId ?? 0;
                    await TerminateAsync(killedPid);
                    killed.TrySetResult();
                }
            }
        })).ToArray();
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(60));

        output.WriteLine($"{failures.Count} writes failed when the connection was killed; {afterKill} succeeded after; commits {storage.Commits}");
        Assert.True(afterKill >= 400, $"only {afterKill} writes succeeded after the kill");
        // Only what was on its way when the connection died may fail: at most one write per writer.
        Assert.True(failures.Count <= Writers, $"{failures.Count} writes failed: {string.Join("; ", failures.Take(3).Select(f => f.Message))}");
        Assert.NotEqual(killedPid, storage.WriterProcessId);
        for (var w = 0; w < Writers; w++)
        {
            // Every acknowledged write is stored; a write that failed during its COMMIT may or may not be.
            var stored = (await storage.GetAsync($"stream/{w}", default))!.Value.Version;
            Assert.InRange(stored, acknowledged[w], attempted[w]);
        }
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task A_writer_connection_killed_while_idle_costs_no_write()
    {
        var storage = Create();
        await storage.SetAsync("before", State(1), default);
        var pid = storage.WriterProcessId!.Value;
        await TerminateAsync(pid);
        // The batch finds its connection dead before COMMIT, so it cannot have been committed: tried again, not failed.
        await storage.SetAsync("after", State(2), default);
        Assert.Equal(2, (await storage.GetAsync("after", default))!.Value.Version);
        Assert.NotEqual(pid, storage.WriterProcessId);
        await storage.DisposeAsync();
    }

    [Fact]
    public async Task Writes_fail_while_the_server_is_down_and_succeed_once_it_is_back()
    {
        var storage = Create();
        await storage.SetAsync("up", State(1), default);
        await server.StopAsync();
        try
        {
            var write = storage.SetAsync("down", State(1), default).AsTask();
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => write.WaitAsync(TimeSpan.FromSeconds(30)));
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => storage.GetAsync("up", default).AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            await server.StartAsync();
        }
        await storage.SetAsync("back", State(3), default);
        Assert.Equal(3, (await storage.GetAsync("back", default))!.Value.Version);
        Assert.Equal(1, (await storage.GetAsync("up", default))!.Value.Version);
        Assert.Null(await storage.GetAsync("down", default));
        await storage.DisposeAsync();
    }
}
