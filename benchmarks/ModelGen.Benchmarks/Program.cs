using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using System.Globalization;

namespace ModelGen.Benchmarks;

/// <summary>ModelGen's benchmarks. Each prints its baseline and the ratio, measured in the same process.</summary>
public static class Program
{
    /// <summary>
    /// <c>training-step [--seq 4096,8192] [--repeats 3] [--mean-doc 1024]</c>: anchor vs full causal training step on the CPU.
    /// </summary>
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "kernels")
        {
            // BenchmarkDotNet: CPU kernels on TorchSharp (baseline) and ILGPU's CPU accelerator; extra args go to it. In
            // process: the benchmark project's assembly name (modelgen-bench) differs from its project name, and the
            // native libraries (libtorch, patched for Debian 12) are already in place next to this assembly.
            var config = DefaultConfig.Instance.AddJob(Job.ShortRun
                .WithToolchain(BenchmarkDotNet.Toolchains.InProcess.Emit.InProcessEmitToolchain.Instance));
            BenchmarkDotNet.Running.BenchmarkRunner.Run<CpuKernelBenchmarks>(config, args[1..]);
            return 0;
        }
        if (args.Length == 0 || args[0] != "training-step")
        {
            Console.Error.WriteLine("usage: modelgen-bench training-step [--seq 4096,8192] [--repeats 3] [--mean-doc 1024] | kernels [BenchmarkDotNet options, e.g. --filter '*Rope*']");
            return 2;
        }
        int[] lengths = [4096, 8192];
        int repeats = 3;
        double meanDoc = 1024;
        for (int i = 1; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--seq": lengths = args[i + 1].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(); break;
                case "--repeats": repeats = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--mean-doc": meanDoc = double.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
            }
        }
        TrainingStepBenchmark.Run(lengths, repeats, meanDoc);
        return 0;
    }
}
