using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Masks;

namespace ModelGen.Benchmarking;

/// <summary>One attention case: a mask (with an optional sliding window) on a window of <see cref="Seq"/> tokens.</summary>
/// <param name="MaskName">causal, intradoc or anchor, with <c>:wN</c> for a sliding window of N.</param>
/// <param name="Mask">The mask.</param>
/// <param name="Seq">Window length.</param>
/// <param name="MeanDocument">Mean log-normal document length; 0 for causal (one document, no anchor).</param>
/// <param name="Layout">The documents of the window.</param>
public sealed record AttentionCase(string MaskName, AttentionMask Mask, int Seq, int MeanDocument, DocumentLayout Layout)
{
    /// <summary>The mask names the benchmark and its PyTorch peer understand.</summary>
    public static AttentionMask ParseMask(string name)
    {
        var parts = name.Split(":w");
        var kind = parts[0] switch
        {
            "causal" => MaskKind.Causal,
            "intradoc" => MaskKind.IntraDocument,
            "anchor" => MaskKind.Anchor,
            _ => throw new ArgumentException($"mask '{name}' is not one of causal, intradoc, anchor (each optionally with :wN, a sliding window of N tokens)"),
        };
        if (parts.Length == 1) return new AttentionMask(kind);
        if (parts.Length != 2 || !int.TryParse(parts[1], out int window) || window < 1)
            throw new ArgumentException($"mask '{name}': the sliding window must be ':w' and a positive number of tokens, e.g. causal:w4096");
        return new AttentionMask(kind, window);
    }

    /// <summary>Whether the mask looks at documents (then each mean document length is a separate case).</summary>
    public bool UsesDocuments => Mask.Kind != MaskKind.Causal;

    /// <summary>The key that matches our rows with the peer's.</summary>
    public string Shape(int heads, int kvHeads, int headDim) =>
        $"{MaskName}{(UsesDocuments ? $" doc{MeanDocument}" : "")} H{heads}{(kvHeads != heads ? $"/{kvHeads}" : "")} S{Seq} D{headDim}";

    /// <summary>Forward FLOPs counting only allowed pairs: 4·H·D per pair (QKᵀ and PV).</summary>
    public double ForwardFlops(int heads, int headDim) => 4.0 * heads * headDim * Mask.AllowedPairs(Layout);

    /// <summary>The cases of <paramref name="options"/>: every length × mask × (mean document, for document masks).</summary>
    public static List<AttentionCase> All(AttentionBenchOptions options)
    {
        var cases = new List<AttentionCase>();
        foreach (int seq in options.Seqs)
            foreach (var name in options.Masks)
            {
                var mask = ParseMask(name);
                if (mask.Kind == MaskKind.Causal) cases.Add(new AttentionCase(name, mask, seq, 0, DocumentLayout.Single(seq)));
                else
                    foreach (int mean in options.MeanDocuments)
                        cases.Add(new AttentionCase(name, mask, seq, mean, KernelBench.Layout(seq, mean)));
            }
        return cases;
    }
}

/// <summary>What <see cref="AttentionBench"/> runs.</summary>
public sealed record AttentionBenchOptions
{
    /// <summary>Window lengths.</summary>
    public int[] Seqs { get; init; } = [8192, 16384, 32768, 65536];
    /// <summary>Mask names (<see cref="AttentionCase.ParseMask"/>).</summary>
    public string[] Masks { get; init; } = ["causal", "anchor"];
    /// <summary>Mean document lengths of the log-normal layouts (document masks).</summary>
    public int[] MeanDocuments { get; init; } = [1024, 4096];
    /// <summary>Query heads.</summary>
    public int Heads { get; init; } = 32;
    /// <summary>Key/value heads (GQA when fewer than <see cref="Heads"/>).</summary>
    public int KvHeads { get; init; } = 32;
    /// <summary>Head dimension (a generated flash kernel must exist).</summary>
    public int HeadDim { get; init; } = 128;
    /// <summary>Tensor-core instruction set of the kernels.</summary>
    public FlashKernelSet Kernels { get; init; } = FlashKernelSet.Auto;
    /// <summary>Untimed calls per measurement.</summary>
    public int Warmup { get; init; } = 2;
    /// <summary>Timed calls per measurement.</summary>
    public int Repeats { get; init; } = 5;
    /// <summary>Lengths whose outputs and gradients are written for the PyTorch check.</summary>
    public int[] CheckSeqs { get; init; } = [];
    /// <summary>
    /// When set, the inputs of every length are written to <c>S{seq}/</c> under it (for the peer to time the same
    /// values), and each checked case's outputs to a folder named by <see cref="AttentionBench.CheckName"/>.
    /// </summary>
    public string? DataDirectory { get; init; }

    /// <summary>A clear error for options that cannot run, or null.</summary>
    public string? Validate()
    {
        if (Seqs.Length == 0 || Seqs.Any(s => s < 1)) return "--seqs needs positive lengths";
        if (Heads < 1 || KvHeads < 1 || Heads % KvHeads != 0) return $"--heads {Heads} must be a positive multiple of --kv-heads {KvHeads}";
        if (!FlashAttention.Supports(HeadDim)) return $"--head-dim {HeadDim}: flash kernels exist for {string.Join(", ", FlashKernels.HeadDims)}";
        if (MeanDocuments.Any(m => m < 1)) return "--docs needs positive mean document lengths";
        if (Warmup < 0 || Repeats < 1) return "--warmup must be ≥ 0 and --repeats ≥ 1";
        foreach (var m in Masks)
        {
            try { AttentionCase.ParseMask(m); }
            catch (ArgumentException e) { return e.Message; }
        }
        if (CheckSeqs.Length > 0 && DataDirectory is null) return "checks need a folder for their files";
        return null;
    }
}

/// <summary>
/// Times ModelGen's flash attention on the GPU for each <see cref="AttentionCase"/>: forward, backward and both, with
/// the per-batch tile map and tile lists counted in (backend <c>ilgpu-flash</c>) and without them
/// (<c>ilgpu-flash-kernel</c>). Work is counted in allowed pairs only; the backward pass does 2.5× the forward's FLOPs.
/// With <see cref="AttentionBenchOptions.DataDirectory"/>, inputs (and, for <see cref="AttentionBenchOptions.CheckSeqs"/>,
/// outputs and gradients) are written as raw little-endian bf16/fp32, token-major, with a <c>meta.json</c>, for
/// <c>tools/bench_attention_peer.py</c> to time PyTorch on the same values and check ours against an fp32 reference.
/// </summary>
public static class AttentionBench
{
    /// <summary>Backend name of our rows that include the tile map and lists.</summary>
    public const string Backend = "ilgpu-flash";

    /// <summary>Backend name of our rows that time the kernels alone (tile map built before).</summary>
    public const string KernelBackend = "ilgpu-flash-kernel";

    /// <summary>Runs every case on <paramref name="device"/>.</summary>
    public static List<BenchResult> Run(GpuDevice device, AttentionBenchOptions options, Action<string>? log = null)
    {
        if (options.Validate() is { } error) throw new ArgumentException(error);
        var results = new List<BenchResult>();
        var flash = new FlashAttention(device) { Kernels = options.Kernels };
        log?.Invoke($"kernels: {(flash.UsesWgmma(options.HeadDim) ? "warpgroup MMA (wgmma)" : "mma.sync")}");
        var random = device.Kernel<RandomArgs>(RandomKernels.RandomNormalBf16);
        int heads = options.Heads, kvHeads = options.KvHeads, d = options.HeadDim;
        foreach (var group in AttentionCase.All(options).GroupBy(c => c.Seq))
        {
            int seq = group.Key;
            long qWidth = (long)heads * d, kvWidth = (long)kvHeads * d;
            using var q = device.Allocate<ushort>(seq * qWidth, "q");
            using var k = device.Allocate<ushort>(seq * kvWidth, "k");
            using var v = device.Allocate<ushort>(seq * kvWidth, "v");
            using var o = device.Allocate<ushort>(seq * qWidth, "o");
            using var dO = device.Allocate<ushort>(seq * qWidth, "dO");
            using var dq = device.Allocate<ushort>(seq * qWidth, "dq");
            using var dk = device.Allocate<ushort>(seq * kvWidth, "dk");
            using var dv = device.Allocate<ushort>(seq * kvWidth, "dv");
            using var lse = device.Allocate<float>((long)seq * heads, "lse");
            using var batch = new GpuBatch(device, 1, seq);
            using var scratch = device.Allocate<float>(FlashAttention.BackwardScratchLength(batch, heads, d), "flash scratch");
            ulong seed = (ulong)seq * 16;
            foreach (var (buffer, i) in new[] { q, k, v, dO }.Select((b, i) => (b, i)))
                random(device.Stream, (int)buffer.Length, new RandomArgs { Output = buffer.View, Seed = seed + (ulong)i, Scale = 1f });
            if (options.DataDirectory is { } data)
            {
                string folder = Path.Combine(data, InputsName(seq));
                Directory.CreateDirectory(folder);
                foreach (var (name, buffer) in new[] { ("q", q), ("k", k), ("v", v), ("do", dO) }) Write(Path.Combine(folder, name + ".bin"), buffer);
            }
            var qOp = new FlashOperand(q.View, HeadLayout.Packed(seq, (int)qWidth, 0, heads, d));
            var kOp = new FlashOperand(k.View, HeadLayout.Packed(seq, (int)kvWidth, 0, kvHeads, d));
            var vOp = new FlashOperand(v.View, HeadLayout.Packed(seq, (int)kvWidth, 0, kvHeads, d));
            var oOp = new FlashOperand(o.View, HeadLayout.Packed(seq, (int)qWidth, 0, heads, d));
            var dOOp = new FlashOperand(dO.View, HeadLayout.Packed(seq, (int)qWidth, 0, heads, d));
            foreach (var c in group)
            {
                string shape = c.Shape(heads, kvHeads, d);
                log?.Invoke($"{shape}: {c.Layout.Documents.Count} documents");
                batch.Upload(new int[seq], c.Layout.PositionIds(false).Select(p => (int)p).ToArray(), [c.Layout], vocab: 1);
                // The map; the kernels' lists follow in the first call after it (the anchor mask's run apart: the intra-document part's).
                void Map() => batch.BuildTileMap(c.Mask);
                void Forward() => flash.Forward(qOp, kOp, vOp, oOp, d, batch, c.Mask, lse.View);
                void Backward() => flash.Backward(qOp, kOp, vOp, oOp, dOOp, lse.View, dq.View, dk.View, dv.View, d, batch, c.Mask, scratch.View);
                double flops = c.ForwardFlops(heads, d);
                void Add(string kernel, string backend, Action call, double work)
                {
                    var t = KernelBench.Time(call, device.Synchronize, options.Warmup, options.Repeats);
                    var row = new BenchResult(kernel, shape, backend, t.MedianMs, t.MinMs, options.Repeats, work, "TFLOP/s");
                    log?.Invoke($"  {kernel} {backend}: {row.MedianMs:F3} ms, {row.Rate:F1} TFLOP/s");
                    results.Add(row);
                }
                Add("attention-fwd", Backend, () => { Map(); Forward(); }, flops);
                Add("attention-fwd", KernelBackend, Forward, flops);
                Add("attention-bwd", KernelBackend, Backward, 2.5 * flops);
                Add("attention-fwd+bwd", Backend, () => { Map(); Forward(); Backward(); }, 3.5 * flops);
                Add("attention-fwd+bwd", KernelBackend, () => { Forward(); Backward(); }, 3.5 * flops);
                if (options.CheckSeqs.Contains(seq))
                {
                    Map();
                    Forward();
                    Backward();
                    device.Synchronize();
                    string folder = Path.Combine(options.DataDirectory!, CheckName(c));
                    Directory.CreateDirectory(folder);
                    foreach (var (name, buffer) in new[] { ("o", o), ("dq", dq), ("dk", dk), ("dv", dv) }) Write(Path.Combine(folder, name + ".bin"), buffer);
                    Write(Path.Combine(folder, "lse.bin"), lse);
                    File.WriteAllText(Path.Combine(folder, "meta.json"), JsonSerializer.Serialize(new
                    {
                        shape, inputs = Path.GetFullPath(Path.Combine(options.DataDirectory!, InputsName(seq))),
                        layout = "token-major [seq, heads*headDim] bf16; lse fp32 [heads, seq], natural log",
                    }));
                }
            }
        }
        return results;
    }

    /// <summary>Folder name of a case's check files.</summary>
    public static string CheckName(AttentionCase c) =>
        $"{c.MaskName.Replace(':', '-')}{(c.UsesDocuments ? $"-doc{c.MeanDocument}" : "")}-S{c.Seq}";

    /// <summary>Folder name of a length's inputs.</summary>
    public static string InputsName(int seq) => $"S{seq}";

    private static void Write<T>(string path, MemoryBuffer1D<T, Stride1D.Dense> buffer) where T : unmanaged
    {
        var values = buffer.GetAsArray1D();
        using var file = File.Create(path);
        file.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }
}
