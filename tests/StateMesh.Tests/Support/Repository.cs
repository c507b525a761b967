using System.Diagnostics;

namespace StateMesh.Tests.Support;

/// <summary>The repository the tests run in, and a way to run its tools.</summary>
internal static class Repository
{
    /// <summary>The folder that holds StateMesh.sln.</summary>
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "StateMesh.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("StateMesh.sln not found above the test binaries");
    }

    /// <summary>
    /// Runs a program to its end (killed after <paramref name="timeout"/>) and returns its exit code and output. With
    /// <paramref name="answer"/>, the program can ask the test to act: each line it writes on stdout is passed to
    /// <paramref name="answer"/>, and what that returns (unless null) is written to the program's stdin as a line.
    /// </summary>
    public static async Task<(int Code, string Output)> RunAsync(
        string file, IEnumerable<string> args, string workingDirectory, TimeSpan timeout, Func<string, Task<string?>>? answer = null)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = answer is not null,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException($"'{file}' could not be started; is it installed? (Node.js 20 and npm are needed by these tests.)", ex);
        }
        using (process)
        {
            var stdout = new System.Text.StringBuilder();
            var reading = ReadLinesAsync(process, stdout, answer);
            var stderr = process.StandardError.ReadToEndAsync();
            try
            {
                await process.WaitForExitAsync().WaitAsync(timeout);
            }
            catch (TimeoutException)
            {
                process.Kill(entireProcessTree: true);
                string sofar;
                lock (stdout)
                {
                    sofar = stdout.ToString();
                }
                throw new TimeoutException($"{file} {string.Join(' ', args)} did not end within {timeout.TotalSeconds}s; its output so far:\n{sofar}");
            }
            await reading;
            return (process.ExitCode, stdout + await stderr);
        }
    }

    private static async Task ReadLinesAsync(Process process, System.Text.StringBuilder output, Func<string, Task<string?>>? answer)
    {
        while (await process.StandardOutput.ReadLineAsync() is { } line)
        {
            lock (output)
            {
                output.Append(line).Append('\n');
            }
            if (answer is not null && await answer(line) is { } reply)
            {
                try
                {
                    await process.StandardInput.WriteLineAsync(reply);
                    await process.StandardInput.FlushAsync();
                }
                catch (IOException)
                {
                    // It ended meanwhile; its exit code and output say why.
                }
            }
        }
    }

    /// <summary>npm ci in a folder of the repository when its packages are not installed yet.</summary>
    public static async Task EnsureNpmPackagesAsync(string folder)
    {
        var directory = Path.Combine(Root, folder);
        if (Directory.Exists(Path.Combine(directory, "node_modules")))
        {
            return;
        }
        var (code, output) = await RunAsync("npm", ["ci", "--no-audit", "--no-fund"], directory, TimeSpan.FromMinutes(5));
        Assert.True(code == 0, $"npm ci in {folder} failed (Node.js and npm are required):\n{output}");
    }
}
