namespace StateMesh.Fuzz;

/// <summary>
/// Findings already reported whose fix belongs to another change (fuzz/README.md lists them). Inputs that meet one are
/// counted and left out, so that a run goes on to find new ones; <c>STATEMESH_FUZZ_KNOWN_ISSUES=fail</c> makes them
/// crashes again (to check a fix).
/// </summary>
internal static class KnownIssues
{
    public static bool Skip { get; } = Environment.GetEnvironmentVariable("STATEMESH_FUZZ_KNOWN_ISSUES") != "fail";

    private static readonly Dictionary<string, long> Counts = [];

    public static void Report(string target, string issue, Exception? example)
    {
        var key = $"{target}: {issue}";
        Counts[key] = Counts.GetValueOrDefault(key) + 1;
        if (Counts[key] == 1)
        {
            Console.Error.WriteLine($"known issue (left out, counted): {key}{(example is null ? "" : $" ({example.GetType().Name}: {example.Message})")}");
        }
    }
}
