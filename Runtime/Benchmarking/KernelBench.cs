using System.Diagnostics;
using System.Text.Json.Serialization;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Torch;
using ModelGen.Masks;
using ModelGen.Rope;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Benchmarking;

/// <summary>The shapes one benchmark run uses (the same on every backend of the run, and for the PyTorch peer).</summary>
/// <param name="Heads">Attention and RoPE heads.</param>
/// <param name="HeadDim">Head dimension.</param>
/// <param name="RopeSeq">Sequence length of the RoPE tensor [1, Heads, RopeSeq, HeadDim].</param>
/// <param name="NormTokens">Rows of the RMSNorm input.</param>
/// <param name="NormWidth">Width of the RMSNorm input.</param>
/// <param name="AttentionSeqs">Window lengths of the attention cases.</param>
/// <param name="MeanDocument">Mean document length of the log-normal layouts (σ = 1).</param>
/// <param name="Gemm">M = N = K of the GEMM.</param>
/// <param name="TileMapSeq">Window length of the tile-map case.</param>
public sealed record BenchShapes(int Heads, int HeadDim, int RopeSeq, int NormTokens, int NormWidth, int[] AttentionSeqs,
    int MeanDocument, int Gemm, int TileMapSeq)
{
    /// <summary>Small enough for the CPU backends (ILGPU's CPU accelerator is an emulator).</summary>
    public static BenchShapes Small { get; } = new(2, 64, 1024, 128, 512, [256], 64, 128, 4096);

    /// <summary>The H200 shapes: RoPE [1, 32, 65536, 128], attention H = 32, D = 128.</summary>
    public static BenchShapes H200 { get; } = new(32, 128, 65536, 16384, 4096, [8192, 16384], 1024, 8192, 65536);

    /// <summary>A named profile: small or h200.</summary>
    public static BenchShapes Parse(string name) => name switch
    {
        "small" => Small,
        "h200" => H200,
        _ => throw new ArgumentException($"--shapes '{name}' is not one of small, h200"),
    };
}

/// <summary>One measured case.</summary>
/// <param name="Kernel">rope, rmsnorm, attention-causal, attention-intradoc, attention-anchor, gemm, tilemap, tilemap+upload.</param>
/// <param name="Shape">The shape, as text (the key that matches the PyTorch peer's case).</param>
/// <param name="Backend">torch-cpu, ilgpu-cpu, ilgpu-cuda, or a PyTorch peer's name.</param>
/// <param name="MedianMs">Median time of one call, milliseconds.</param>
/// <param name="MinMs">Fastest call.</param>
/// <param name="Repeats">Timed calls (after warm-up).</param>
/// <param name="Work">Bytes moved (bandwidth cases) or floating-point operations (compute cases); 0 for time-only cases.</param>
/// <param name="Unit">GB/s, TFLOP/s or ms.</param>
public sealed record BenchResult(string Kernel, string Shape, string Backend, double MedianMs, double MinMs, int Repeats, double Work, string Unit)
{
    /// <summary>Effective rate in <see cref="Unit"/> (GB/s or TFLOP/s) from the median; the median itself for time-only cases.</summary>
    [JsonIgnore]
    public double Rate => Unit switch
    {
        "GB/s" => Work / (MedianMs * 1e-3) / 1e9,
        "TFLOP/s" => Work / (MedianMs * 1e-3) / 1e12,
        _ => MedianMs,
    };

    /// <summary>The rate for JSON output.</summary>
    [JsonPropertyName("rate")]
    public double RateValue => Rate;
}

/// <summary>
/// Runs each kernel — RoPE, RMSNorm, attention per mask kind, GEMM, tile map — on one backend with warm-up and repeated
/// timed calls (each call synchronized), reporting medians and effective GB/s or TFLOP/s.
/// </summary>
public static class KernelBench
{
    /// <summary>The backends this machine has: torch-cpu and ilgpu-cpu always, ilgpu-cuda when a CUDA GPU opens.</summary>
    public static IReadOnlyList<string> AvailableBackends()
    {
        var list = new List<string> { "torch-cpu", "ilgpu-cpu" };
        try
        {
            using var d = GpuDevice.Open(GpuKind.Cuda);
            list.Add("ilgpu-cuda");
        }
        catch (GpuUnavailableException)
        {
        }
        return list;
    }

    /// <summary>Times <paramref name="call"/>: <paramref name="warmup"/> untimed calls, then <paramref name="repeats"/> timed ones.</summary>
    public static (double MedianMs, double MinMs) Time(Action call, Action synchronize, int warmup, int repeats)
    {
        for (int i = 0; i < warmup; i++) call();
        synchronize();
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            call();
            synchronize();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        Array.Sort(times);
        return (times[repeats / 2], times[0]);
    }

    /// <summary>The anchored, log-normal layout every backend and the peer use for window length <paramref name="seq"/>.</summary>
    public static DocumentLayout Layout(int seq, int meanDocument) => LogNormalLayouts.Create(seq, meanDocument, new Random(seq));

    /// <summary>The attention cases: mask kind and its CLI name.</summary>
    public static readonly (MaskKind Kind, string Name)[] AttentionMasks =
        [(MaskKind.Causal, "causal"), (MaskKind.IntraDocument, "intradoc"), (MaskKind.Anchor, "anchor")];

    /// <summary>Shape key of an attention case.</summary>
    public static string AttentionShape(BenchShapes s, int seq) => $"B1 H{s.Heads} S{seq} D{s.HeadDim} doc{s.MeanDocument}";

    /// <summary>Runs every case on <paramref name="backend"/>.</summary>
    public static List<BenchResult> Run(string backend, BenchShapes shapes, int warmup, int repeats, Action<string>? log = null) =>
        backend switch
        {
            "torch-cpu" => RunTorch(shapes, warmup, repeats, log),
            "ilgpu-cpu" => RunIlgpu(GpuKind.Cpu, backend, shapes, warmup, repeats, log),
            "ilgpu-cuda" => RunIlgpu(GpuKind.Cuda, backend, shapes, warmup, repeats, log),
            _ => throw new ArgumentException($"backend '{backend}' is not one of torch-cpu, ilgpu-cpu, ilgpu-cuda"),
        };

    private static string RopeShape(BenchShapes s) => $"1x{s.Heads}x{s.RopeSeq}x{s.HeadDim}";
    private static string NormShape(BenchShapes s) => $"{s.NormTokens}x{s.NormWidth}";
    private static string GemmShape(BenchShapes s) => $"{s.Gemm}^3";
    /// <summary>Useful attention FLOPs of a forward pass: 4·H·D per allowed (q, k) pair of <paramref name="layout"/>.</summary>
    public static double AttentionFlops(BenchShapes s, DocumentLayout layout, MaskKind kind) =>
        4.0 * s.Heads * s.HeadDim * new AttentionMask(kind).AllowedPairs(layout);

    private static List<BenchResult> RunIlgpu(GpuKind kind, string backend, BenchShapes s, int warmup, int repeats, Action<string>? log)
    {
        var results = new List<BenchResult>();
        // The CPU accelerator runs 4-lane warps: every emulated lane is an OS thread (see GpuDevice.Open).
        using var device = GpuDevice.Open(kind, cpuWarpSize: 4);
        log?.Invoke($"{backend}: {device.Description}");
        // The CPU accelerator computes in fp32 (bf16 emulation adds nothing there); CUDA runs bf16 storage, fp32 math.
        var dtype = kind == GpuKind.Cuda ? GpuDType.BF16 : GpuDType.F32;
        int elem = GpuTensor.SizeOf(dtype);
        using var ops = new GpuOps(device, dtype);
        var random = new Random(0);
        float[] Randn(long n) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)(random.NextDouble() * 2 - 1); return a; }
        void Add(string k, string shape, (double Median, double Min) t, double work, string unit) =>
            results.Add(new BenchResult(k, shape, backend, t.Median, t.Min, repeats, work, unit));

        // RoPE on [1, H, S, D] (the layout attention libraries use), positions 0..S-1, fp32 tables.
        {
            long n = (long)s.Heads * s.RopeSeq * s.HeadDim;
            using var x = GpuTensor.FromHost(device, dtype, "x", Randn(n), 1, s.Heads, s.RopeSeq, s.HeadDim);
            using var positions = device.Allocate<int>(s.RopeSeq, "positions");
            positions.View.CopyFromCPU(Enumerable.Range(0, s.RopeSeq).ToArray());
            using var table = new GpuRopeTable(device, new RopeFrequencies(new RopeConfig { Theta = 500_000 }, s.HeadDim, s.RopeSeq));
            table.Prepare(s.RopeSeq - 1);
            var layout = HeadLayout.Bhsd(s.Heads, s.RopeSeq, s.HeadDim);
            var t = Time(() => ops.Rope(x, layout, s.RopeSeq, positions.View, table, bf16Rotation: false, s.RopeSeq - 1), device.Synchronize, warmup, repeats);
            Add("rope", RopeShape(s), t, 2.0 * n * elem, "GB/s");
        }
        // RMSNorm.
        {
            long n = (long)s.NormTokens * s.NormWidth;
            using var x = GpuTensor.FromHost(device, dtype, "x", Randn(n), s.NormTokens, s.NormWidth);
            using var w = GpuTensor.FromHost(device, dtype, "w", Randn(s.NormWidth), s.NormWidth);
            using var y = GpuTensor.Allocate(device, dtype, "y", s.NormTokens, s.NormWidth);
            var t = Time(() => ops.RmsNorm(x, w, y, 1e-5f), device.Synchronize, warmup, repeats);
            Add("rmsnorm", NormShape(s), t, 2.0 * n * elem, "GB/s");
        }
        // Attention per mask kind on log-normal layouts: GpuOps.Attention (FlashAttention for bf16 on CUDA, the portable kernel otherwise).
        foreach (int seq in s.AttentionSeqs)
        {
            var docs = Layout(seq, s.MeanDocument);
            long width = (long)s.Heads * s.HeadDim;
            using var q = GpuTensor.FromHost(device, dtype, "q", Randn(seq * width), seq, width);
            using var k = GpuTensor.FromHost(device, dtype, "k", Randn(seq * width), seq, width);
            using var v = GpuTensor.FromHost(device, dtype, "v", Randn(seq * width), seq, width);
            using var o = GpuTensor.Allocate(device, dtype, "o", seq, width);
            using var batch = new GpuBatch(device, 1, seq);
            batch.Upload(new int[seq], docs.PositionIds(false).Select(p => (int)p).ToArray(), [docs], vocab: 1);
            var hl = HeadLayout.Packed(seq, (int)width, 0, s.Heads, s.HeadDim);
            foreach (var (maskKind, name) in AttentionMasks)
            {
                var mask = new AttentionMask(maskKind);
                batch.BuildTileMap(mask);
                var t = Time(() => mask.Apply<bool, AttentionCall>(new AttentionCall(ops, q, k, v, o, hl, s.HeadDim, batch)),
                    device.Synchronize, Math.Min(warmup, 1), Math.Min(repeats, 3));
                results.Add(new BenchResult($"attention-{name}", AttentionShape(s, seq), backend, t.MedianMs, t.MinMs, Math.Min(repeats, 3),
                    AttentionFlops(s, docs, maskKind), "TFLOP/s"));
            }
        }
        // GEMM: cuBLAS on CUDA (bf16 in, fp32 accumulate), the portable kernel on the CPU accelerator.
        {
            long n = (long)s.Gemm * s.Gemm;
            using var a = GpuTensor.FromHost(device, dtype, "a", Randn(n), s.Gemm, s.Gemm);
            using var b = GpuTensor.FromHost(device, dtype, "b", Randn(n), s.Gemm, s.Gemm);
            using var c = GpuTensor.Allocate(device, dtype, "c", s.Gemm, s.Gemm);
            var t = Time(() => ops.Linear(a, b, null, c), device.Synchronize, warmup, repeats);
            Add("gemm", GemmShape(s), t, 2.0 * n * s.Gemm, "TFLOP/s");
        }
        // Tile map of the anchor mask for a log-normal window: the GPU kernel alone, and with the per-batch layout upload.
        {
            int seq = s.TileMapSeq;
            var docs = Layout(seq, s.MeanDocument);
            using var batch = new GpuBatch(device, 1, seq);
            var ids = new int[seq];
            var positions = docs.PositionIds(false).Select(p => (int)p).ToArray();
            batch.Upload(ids, positions, [docs], vocab: 1);
            var mask = new AttentionMask(MaskKind.Anchor);
            string shape = $"S{seq} tile64 doc{s.MeanDocument}";
            Add("tilemap", shape, Time(() => batch.BuildTileMap(mask), device.Synchronize, warmup, repeats), 0, "ms");
            Add("tilemap+upload", shape, Time(() => { batch.Upload(ids, positions, [docs], vocab: 1); batch.BuildTileMap(mask); },
                device.Synchronize, warmup, repeats), 0, "ms");
        }
        return results;
    }

    private readonly struct AttentionCall(GpuOps ops, GpuTensor q, GpuTensor k, GpuTensor v, GpuTensor o, HeadLayout layout, int headDim, GpuBatch batch)
        : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask
        {
            ops.Attention(q, layout, k, layout, v, layout, headDim, batch, mask, o);
            return true;
        }
    }

    private static List<BenchResult> RunTorch(BenchShapes s, int warmup, int repeats, Action<string>? log)
    {
        var results = new List<BenchResult>();
        log?.Invoke($"torch-cpu: TorchSharp {typeof(torch).Assembly.GetName().Version}, {torch.get_num_threads()} threads, fp32");
        static void None() { }
        using var scope = NewDisposeScope();
        manual_seed(0);
        void Add(string k, string shape, (double Median, double Min) t, double work, string unit) =>
            results.Add(new BenchResult(k, shape, "torch-cpu", t.Median, t.Min, repeats, work, unit));

        {
            var x = randn(1, s.Heads, s.RopeSeq, s.HeadDim);
            var rope = new RopeTable(new RopeConfig { Theta = 500_000 }, s.HeadDim, s.RopeSeq);
            var (cos, sin) = rope.CosSin(arange(s.RopeSeq, dtype: ScalarType.Int64).unsqueeze(0));
            var t = Time(() => { using var _ = NewDisposeScope(); RotaryEmbedding.Apply(x, x, cos, sin, RopePrecision.Fp32); }, None, warmup, repeats);
            // Apply rotates q and k: count both.
            Add("rope", RopeShape(s), (t.MedianMs / 2, t.MinMs / 2), 2.0 * x.numel() * 4, "GB/s");
        }
        {
            var x = randn(s.NormTokens, s.NormWidth);
            using var norm = new RmsNorm(s.NormWidth, 1e-5);
            var t = Time(() => { using var _ = NewDisposeScope(); norm.forward(x); }, None, warmup, repeats);
            Add("rmsnorm", NormShape(s), t, 2.0 * x.numel() * 4, "GB/s");
        }
        foreach (int seq in s.AttentionSeqs)
        {
            var docs = Layout(seq, s.MeanDocument);
            var q = randn(1, s.Heads, seq, s.HeadDim);
            var k = randn(1, s.Heads, seq, s.HeadDim);
            var v = randn(1, s.Heads, seq, s.HeadDim);
            foreach (var (maskKind, name) in AttentionMasks)
            {
                var inputs = AttentionInputs.Packed([docs], new AttentionMask(maskKind));
                var t = Time(() => { using var _ = NewDisposeScope(); PackedAttention.Forward(q, k, v, inputs); }, None, Math.Min(warmup, 1), Math.Min(repeats, 3));
                results.Add(new BenchResult($"attention-{name}", AttentionShape(s, seq), "torch-cpu", t.MedianMs, t.MinMs, Math.Min(repeats, 3),
                    AttentionFlops(s, docs, maskKind), "TFLOP/s"));
            }
        }
        {
            var a = randn(s.Gemm, s.Gemm);
            var b = randn(s.Gemm, s.Gemm);
            var t = Time(() => { using var _ = NewDisposeScope(); nn.functional.linear(a, b); }, None, warmup, repeats);
            Add("gemm", GemmShape(s), t, 2.0 * s.Gemm * s.Gemm * (double)s.Gemm, "TFLOP/s");
        }
        {
            var docs = Layout(s.TileMapSeq, s.MeanDocument);
            var t = Time(() => TileMap.Build(docs, new AttentionMask(MaskKind.Anchor), 64, 64), None, warmup, repeats);
            Add("tilemap", $"S{s.TileMapSeq} tile64 doc{s.MeanDocument}", t, 0, "ms");
        }
        return results;
    }
}
