using System.Diagnostics;
using StateMesh.Tests.Support;

namespace StateMesh.Tests.Integration;

/// <summary>The chat sample, run as two processes the way a newcomer runs it in two terminals.</summary>
public class ChatSampleTests
{
    private static Process StartChat(string name, string address, Action<string> onLine)
    {
        var dll = ServerProcess.ServerDll.Replace(Path.Combine("src", "StateMesh.Server"), Path.Combine("samples", "Chat"), StringComparison.Ordinal)
            .Replace("StateMesh.Server.dll", "Chat.dll", StringComparison.Ordinal);
        var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(dll);
        start.ArgumentList.Add(name);
        start.ArgumentList.Add(address);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { onLine(e.Data); } };
        process.BeginOutputReadLine();
        return process;
    }

    [Fact]
    public async Task A_line_typed_in_one_chat_appears_in_the_other()
    {
        await using var server = await ServerProcess.StartAsync();
        var address = $"tcp://127.0.0.1:{server.Port}";
        var anaReady = new TaskCompletionSource();
        var bobReady = new TaskCompletionSource();
        var bobSaw = new TaskCompletionSource<string>();
        using var ana = StartChat("ana", address, line => { if (line.StartsWith("Connected", StringComparison.Ordinal)) { anaReady.TrySetResult(); } });
        using var bob = StartChat("bob", address, line =>
        {
            if (line.StartsWith("Connected", StringComparison.Ordinal)) { bobReady.TrySetResult(); }
            if (line.StartsWith("ana: hello", StringComparison.Ordinal)) { bobSaw.TrySetResult(line); }
        });
        try
        {
            await Task.WhenAll(anaReady.Task, bobReady.Task).WaitAsync(TimeSpan.FromSeconds(30));
            await ana.StandardInput.WriteLineAsync("hello bob");
            await ana.StandardInput.FlushAsync();
            Assert.Equal("ana: hello bob", await bobSaw.Task.WaitAsync(TimeSpan.FromSeconds(10)));
            ana.StandardInput.Close();
            await ana.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(0, ana.ExitCode);
        }
        finally
        {
            foreach (var p in new[] { ana, bob })
            {
                if (!p.HasExited)
                {
                    p.Kill();
                }
            }
        }
    }
}
