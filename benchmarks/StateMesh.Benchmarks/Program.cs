// dotnet run -c Release --project benchmarks/StateMesh.Benchmarks -- --filter '*'
BenchmarkDotNet.Running.BenchmarkSwitcher.FromAssembly(typeof(StateMesh.Benchmarks.NativeCodecBenchmarks).Assembly).Run(args);
