using SharpFuzz;
using StateMesh.Fuzz;

// StateMesh.Fuzz <target>             under fuzz/driver's libFuzzer driver (SharpFuzz's libFuzzer protocol)
// StateMesh.Fuzz <target> --afl       under afl-fuzz (SharpFuzz's persistent mode)
// StateMesh.Fuzz replay <target> <file or directory>...   runs inputs once each, says which fail and why
// StateMesh.Fuzz measure <target> <file or directory>...  replay, printing what each input made the parser allocate
// StateMesh.Fuzz seed <corpus directory>                  writes the seed corpora from real frames
// StateMesh.Fuzz list                                     the targets
// Instrumented code counts edges into SharpFuzz's map as soon as it runs; until a fuzzer hands over its shared map
// (Fuzzer.Run replaces this pointer), the counts go to a scratch map of the same size.
unsafe
{
    SharpFuzz.Common.Trace.SharedMem = (byte*)System.Runtime.InteropServices.NativeMemory.AllocZeroed(1 << 16);
}
if (args.Length == 0)
{
    Console.Error.WriteLine("usage: StateMesh.Fuzz <target> [--afl] | replay <target> <paths>... | measure <target> <paths>... | seed <dir> | list");
    return 2;
}
switch (args[0])
{
    case "list":
        foreach (var t in FuzzTarget.All)
        {
            Console.WriteLine($"{t.Name,-18} {t.Description}");
        }
        return 0;
    case "seed":
        Seeds.Write(args.Length > 1 ? args[1] : "fuzz/corpus");
        return 0;
    case "replay" or "measure" when args.Length >= 3:
        return Replay.Run(Target(args[1]), args[2..], measure: args[0] == "measure");
}
var target = Target(args[0]);
if (args.Length > 1 && args[1] == "--afl")
{
    var buffer = new byte[1 << 20];
    Fuzzer.Run(stream =>
    {
        var length = 0;
        int read;
        while (length < buffer.Length && (read = stream.Read(buffer, length, buffer.Length - length)) > 0)
        {
            length += read;
        }
        target.Run(buffer.AsSpan(0, length));
    });
    return 0;
}
if (Environment.GetEnvironmentVariable("__LIBFUZZER_SHM_ID") is null)
{
    Console.Error.WriteLine($"{target.Name} runs under fuzz/driver (see fuzz/run.sh); use 'replay {target.Name} <file>' to run one input");
    return 2;
}
Fuzzer.LibFuzzer.Run(input => target.Run(input));
return 0;

static FuzzTarget Target(string name) => FuzzTarget.Find(name)
    ?? throw new ArgumentException($"no target '{name}'; the targets are {string.Join(", ", FuzzTarget.All.Select(t => t.Name))}");

internal static class Replay
{
    public static int Run(FuzzTarget target, string[] paths, bool measure)
    {
        var files = paths.SelectMany(p => Directory.Exists(p) ? Directory.GetFiles(p).Order(StringComparer.Ordinal) : (IEnumerable<string>)[p]).ToList();
        var failed = 0;
        foreach (var file in files)
        {
            var input = File.ReadAllBytes(file);
            try
            {
                target.Run(input);
                if (measure)
                {
                    // Once more: the first run pays for statics and caches the parser sets up once per process.
                    AllocationBound.Largest = 0;
                    target.Run(input);
                    Console.WriteLine($"{AllocationBound.Largest,9} B allocated for {input.Length,6} B ({(double)AllocationBound.Largest / Math.Max(1, input.Length),7:F1} per byte; bound {AllocationBound.Limit(input.Length)})  {file}");
                }
            }
            catch (Exception ex)
            {
                failed++;
                Console.WriteLine($"FAIL {file} ({input.Length} bytes: {Convert.ToHexString(input.AsSpan(0, Math.Min(input.Length, 256)))}{(input.Length > 256 ? "..." : "")})");
                Console.WriteLine(ex);
            }
        }
        Console.WriteLine($"{target.Name}: replayed {files.Count} inputs, {failed} of them failed");
        return failed == 0 ? 0 : 1;
    }
}
