using System.ComponentModel;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Benchmarking;
using Spectre.Console.Cli;

namespace ModelGen.Cli;

/// <summary>
/// <c>modelgen bench-wgmma</c>: Hopper's warpgroup MMA from ILGPU on the GPU. Checks both MMA forms against an fp64
/// product, then times the tensor cores with operands resident in shared memory and whole GEMMs against cuBLAS
/// (<c>cublasGemmEx</c>, bf16 in, fp32 compute) on the same shapes in the same process.
/// </summary>
public sealed class BenchWgmmaCommand : Command<BenchWgmmaCommand.Settings>
{
    /// <summary>Arguments of <c>bench-wgmma</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>M = N = K of the timed GEMMs.</summary>
        [CommandOption("--size <N>")]
        [DefaultValue(8192)]
        public int Size { get; init; } = 8192;

        /// <summary>M = N = K of the checked GEMMs.</summary>
        [CommandOption("--check-size <N>")]
        [DefaultValue(512)]
        public int CheckSize { get; init; } = 512;

        /// <summary>Timed calls per case (after one warm-up).</summary>
        [CommandOption("--repeats <N>")]
        [DefaultValue(10)]
        public int Repeats { get; init; } = 10;
    }

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        foreach (var (name, value) in new[] { ("--size", settings.Size), ("--check-size", settings.CheckSize) })
            if (value <= 0 || value % WarpgroupGemmKernels.Tile != 0) throw new ArgumentException($"{name} {value} is not a positive multiple of {WarpgroupGemmKernels.Tile}");
        if (settings.Repeats < 1) throw new ArgumentException($"--repeats {settings.Repeats} must be at least 1");
        using var device = GpuDevice.Open(GpuKind.Cuda);
        Console.WriteLine($"bench-wgmma: {device.Description}");
        bool ok = true;
        var random = new Random(7);
        foreach (bool nt in new[] { true, false })
        {
            int s = settings.CheckSize;
            ushort[] Values() => Enumerable.Range(0, s * s).Select(_ => Bf16.FromFloat((float)(random.NextDouble() * 2 - 1))).ToArray();
            var (a, b) = (Values(), Values());
            var c = WarpgroupGemm.Multiply(device, a, b, s, s, s, nt);
            double worst = 0;
            Parallel.For(0, s, () => 0.0, (i, _, local) =>
            {
                var row = new double[s];
                for (int p = 0; p < s; p++)
                {
                    double x = Bf16.ToFloat(a[i * s + p]);
                    for (int j = 0; j < s; j++) row[j] += x * Bf16.ToFloat(nt ? b[j * s + p] : b[p * s + j]);
                }
                for (int j = 0; j < s; j++) local = Math.Max(local, Math.Abs(c[i * s + j] - row[j]));
                return local;
            }, local => { lock (random) worst = Math.Max(worst, local); });
            bool pass = worst < 2e-3;
            ok &= pass;
            Console.WriteLine($"check {Mode(nt)} {s}³: max |error| {worst:E2} against fp64 (bound 2e-3) — {(pass ? "pass" : "FAIL")}");
        }

        int n = settings.Size;
        using var da = device.Allocate<ushort>((long)n * n, "A");
        using var db = device.Allocate<ushort>((long)n * n, "B");
        using var dc = device.Allocate<float>((long)n * n, "C");
        using var dy = device.Allocate<ushort>((long)n * n, "cuBLAS output");
        var fill = Enumerable.Range(0, n).Select(_ => Bf16.FromFloat((float)(random.NextDouble() * 2 - 1))).ToArray();
        for (long row = 0; row < n; row++)
        {
            da.View.SubView(row * n, n).CopyFromCPU(fill);
            db.View.SubView(row * n, n).CopyFromCPU(fill);
        }
        // Median of the timed calls after one warm-up, each synchronized (the attention benchmark's timer).
        double Time(Action call) => KernelBench.Time(call, device.Stream.Synchronize, 1, settings.Repeats).MedianMs;
        void Report(string name, double ms, double flops, double? baseline = null) =>
            Console.WriteLine($"  {name}: {ms:F3} ms, {flops / (ms * 1e-3) / 1e12:F1} TFLOP/s" + (baseline is double b ? $", {b / ms:F2}× cuBLAS" : ""));

        // Tensor cores alone: one K step per group loaded once, multiplied 64 times (C = 64·A·B).
        const int resident = 64;
        Console.WriteLine($"wgmma m64n128k16, operands resident in shared memory ({n}×{n} output, K = 128, {resident} times):");
        foreach (bool nt in new[] { true, false })
            Report($"{Mode(nt)}", Time(() => WarpgroupGemm.Launch(device, da.View, db.View, dc.View, n, n, WarpgroupGemmKernels.Tile, nt, resident)),
                2.0 * n * n * WarpgroupGemmKernels.Tile * resident);

        double flopsGemm = 2.0 * n * n * n;
        using var cublas = new Cublas(((ILGPU.Runtime.Cuda.CudaStream)device.Stream).StreamPtr);
        double cublasMs = Time(() => cublas.LinearNT(da.NativePtr, db.NativePtr, dy.NativePtr, n, n, n, bf16: true));
        Console.WriteLine($"GEMM {n}³ (bf16 in, fp32 accumulation):");
        Report("cuBLAS cublasGemmEx, C = A·Bᵀ", cublasMs, flopsGemm);
        foreach (bool nt in new[] { true, false })
            Report($"ours {Mode(nt)}", Time(() => WarpgroupGemm.Launch(device, da.View, db.View, dc.View, n, n, n, nt)), flopsGemm, cublasMs);
        return ok ? 0 : 1;
    }

    private static string Mode(bool nt) => nt ? "A·Bᵀ (A, B K-major in shared memory)" : "A·B (A from registers, B N-major in shared memory)";
}
