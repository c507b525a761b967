using System.Runtime.InteropServices;

namespace StateMesh.LoadTest;

/// <summary>
/// The process's limit on open files (RLIMIT_NOFILE). Each held connection is one socket, so thousands of idle
/// connections need the soft limit raised; the tool raises it itself, up to the hard limit, as a server would.
/// </summary>
internal static class FileDescriptors
{
    // RLIMIT_NOFILE on Linux (x86-64 and arm64).
    private const int RlimitNofile = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int getrlimit(int resource, out RLimit limit);

    [DllImport("libc", SetLastError = true)]
    private static extern int setrlimit(int resource, in RLimit limit);

    /// <summary>Raises the soft limit to the hard limit. Returns (soft before, soft after, hard); nulls off Linux.</summary>
    public static (ulong Before, ulong After, ulong Hard)? RaiseToHardLimit()
    {
        if (!OperatingSystem.IsLinux() || getrlimit(RlimitNofile, out var limit) != 0)
        {
            return null;
        }
        var before = limit.Current;
        if (limit.Current < limit.Maximum)
        {
            var raised = limit with { Current = limit.Maximum };
            if (setrlimit(RlimitNofile, raised) == 0)
            {
                limit = raised;
            }
        }
        return (before, limit.Current, limit.Maximum);
    }
}
