using ILGPU;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Masks;

namespace ModelGen.Tests.Ilgpu;

/// <summary>The CPU accelerator with four 32-lane warps per group, as the flash kernels launch.</summary>
public sealed class FlashCpuFixture : IDisposable
{
    /// <summary>The device.</summary>
    public GpuDevice Device { get; } = GpuDevice.Open(GpuKind.Cpu, cpuWarpSize: 32, cpuWarpsPerGroup: 8);

    /// <inheritdoc/>
    public void Dispose() => Device.Dispose();
}

/// <summary>
/// The generated flash-attention kernels on the CPU accelerator (the tensor-core intrinsics run as warp-collective
/// emulations with the PTX fragment layouts) against an fp64 reference computed from the same bf16 inputs: outputs,
/// log-sum-exp and the three gradients, with GQA, tails that are not multiples of the 64-token tile, and the masks.
/// </summary>
public class FlashAttentionTests(FlashCpuFixture cpu) : IClassFixture<FlashCpuFixture>
{
    [Fact]
    public void Mma_emulation_computes_the_fragment_product()
    {
        var random = new Random(1);
        var a = Enumerable.Range(0, 16 * 16).Select(_ => Bf16.FromFloat((float)random.NextDouble() * 2 - 1)).ToArray();
        var b = Enumerable.Range(0, 16 * 8).Select(_ => Bf16.FromFloat((float)random.NextDouble() * 2 - 1)).ToArray();
        using var aBuffer = cpu.Device.Accelerator.Allocate1D(a);
        using var bBuffer = cpu.Device.Accelerator.Allocate1D(b);
        using var dBuffer = cpu.Device.Accelerator.Allocate1D<float>(16 * 8);
        var kernel = cpu.Device.Accelerator.LoadKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>>(MmaKernel);
        kernel(cpu.Device.Stream, new KernelConfig(1, 32), aBuffer.View, bBuffer.View, dBuffer.View);
        var d = dBuffer.GetAsArray1D();
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 8; c++)
            {
                double want = 0;
                for (int k = 0; k < 16; k++) want += Bf16.ToFloat(a[r * 16 + k]) * (double)Bf16.ToFloat(b[k * 8 + c]);
                Assert.True(Math.Abs(want - d[r * 8 + c]) < 1e-5, $"D[{r},{c}] = {d[r * 8 + c]}, want {want}");
            }
    }

    private static void MmaKernel(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<float> d)
    {
        int lane = Warp.LaneIdx, g = lane >> 2, t = lane & 3;
        var af = new U4 { X = Pair(a, g * 16 + 2 * t, 1), Y = Pair(a, (g + 8) * 16 + 2 * t, 1), Z = Pair(a, g * 16 + 2 * t + 8, 1), W = Pair(a, (g + 8) * 16 + 2 * t + 8, 1) };
        uint b0 = Pair(b, 2 * t * 8 + g, 8), b1 = Pair(b, (2 * t + 8) * 8 + g, 8);
        var r = TensorCore.Mma(af, b0, b1, new F4 { X = 0.5f });
        d[g * 8 + 2 * t] = r.X - 0.5f; // every lane's c0 started from 0.5: the accumulator is added
        d[g * 8 + 2 * t + 1] = r.Y;
        d[(g + 8) * 8 + 2 * t] = r.Z;
        d[(g + 8) * 8 + 2 * t + 1] = r.W;
    }

    private static uint Pair(ArrayView<ushort> m, int index, int step) => m[index] | ((uint)m[index + step] << 16);

    [Theory]
    [InlineData(64)]
    [InlineData(128)]
    public void Tile_lists_hold_the_non_empty_tiles_of_the_map_in_order(int headDim)
    {
        // 1000 tokens: 16 query tiles, 8 key blocks of 128; documents of every size, so that full, partial and empty
        // tiles mix and merged blocks (128 queries forward, 128 keys backward) see tiles of different kinds.
        const int seq = 1000;
        var layout = DocumentLayout.Anchored(seq, 1, 3, 70, 71, 200, 333, 334, 600, 990);
        var mask = new AttentionMask(MaskKind.Anchor);
        var host = TileMap.Build(layout, mask, 64, 64);
        using var batch = new GpuBatch(cpu.Device, 1, seq);
        batch.Upload(new int[seq], Enumerable.Range(0, seq).ToArray(), [layout], vocab: 1);
        batch.BuildTileMap(mask);
        new FlashAttention(cpu.Device).BuildTileLists(batch, headDim);
        cpu.Device.Synchronize();
        var (rows, columns) = batch.EnsureTileLists();
        int[] rowLists = rows.ListBuffer.GetAsArray1D(), rowCounts = rows.CountBuffer.GetAsArray1D();
        int[] columnLists = columns.ListBuffer.GetAsArray1D(), columnCounts = columns.CountBuffer.GetAsArray1D();
        int per = FlashKernels.ForwardQueries(headDim) / 64;
        Assert.Equal(headDim == 128 ? 2 : 1, per);
        for (int qb = 0; qb < (host.QueryTiles + per - 1) / per; qb++)
        {
            var want = new List<int>();
            for (int kt = 0; kt < host.KeyTiles; kt++)
            {
                var kinds = Enumerable.Range(per * qb, Math.Min(per, host.QueryTiles - per * qb)).Select(qt => host[qt, kt]).Distinct().ToArray();
                var kind = kinds.Length == 1 ? kinds[0] : TileKind.Partial;
                if (kind != TileKind.Empty) want.Add(kt * 4 + (int)kind);
            }
            Assert.Equal(want, rowLists.AsSpan(qb * host.KeyTiles, rowCounts[qb]).ToArray());
        }
        int blocks = (host.KeyTiles + 1) / 2;
        for (int kb = 0; kb < blocks; kb++)
        {
            var want = new List<int>();
            for (int qt = 0; qt < host.QueryTiles; qt++)
            {
                var kinds = Enumerable.Range(2 * kb, Math.Min(2, host.KeyTiles - 2 * kb)).Select(kt => host[qt, kt]).Distinct().ToArray();
                var kind = kinds.Length == 1 ? kinds[0] : TileKind.Partial;
                if (kind != TileKind.Empty) want.Add(qt * 4 + (int)kind);
            }
            Assert.Equal(want, columnLists.AsSpan(kb * host.QueryTiles, columnCounts[kb]).ToArray());
        }
    }

    [Fact]
    public void Kernels_that_need_more_shared_memory_than_the_device_allows_are_refused_with_the_sizes()
    {
        // Opt-in limits per group: H100/H200 227 KB, A100 163 KB, RTX 30/40 series 99 KB; the CPU accelerator sets none.
        const int hopper = 227 * 1024, a100 = 163 * 1024, rtx = 99 * 1024;
        foreach (int d in FlashKernels.HeadDims)
        {
            Assert.Null(FlashAttention.SharedMemoryProblem(d, hopper, backward: false));
            Assert.Null(FlashAttention.SharedMemoryProblem(d, hopper, backward: true));
            Assert.Null(FlashAttention.SharedMemoryProblem(d, a100, backward: true));
            Assert.Null(FlashAttention.SharedMemoryProblem(d, null, backward: true));
            Assert.Null(FlashAttention.SharedMemoryProblem(d, rtx, backward: false));
        }
        Assert.Null(FlashAttention.SharedMemoryProblem(64, rtx, backward: true));
        string why = Assert.IsType<string>(FlashAttention.SharedMemoryProblem(128, rtx, backward: true));
        Assert.Contains("backward kernel for head dim 128", why, StringComparison.Ordinal);
        Assert.Contains($"needs {FlashKernels.BackwardSharedBytes(128)} bytes", why, StringComparison.Ordinal);
        Assert.Contains($"allows {rtx}", why, StringComparison.Ordinal);
        using var batch = new GpuBatch(cpu.Device, 1, 64);
        Assert.Null(cpu.Device.MaxSharedBytesPerGroup);
        Assert.Null(FlashAttention.Unsupported(cpu.Device, 128, batch, HeadLayout.Packed(64, 128, 0, 1, 128)));
    }

    /// <summary>Head dim, mask, window (0: none), tokens, heads, key/value heads, and whether the anchor key runs apart (AnchorKernels).</summary>
    public static IEnumerable<object[]> Cases() =>
    [
        [64, MaskKind.Causal, 0, 100, 4, 2, true],
        [128, MaskKind.Anchor, 0, 96, 2, 1, true],
        [64, MaskKind.Anchor, 0, 70, 2, 1, false],
        [64, MaskKind.Anchor, 0, 70, 2, 1, true],
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public void Forward_and_backward_match_an_fp64_reference(int headDim, MaskKind kind, int window, int seq, int heads, int kvHeads, bool anchorApart)
    {
        var layout = kind == MaskKind.Causal ? DocumentLayout.Single(seq) : DocumentLayout.Anchored(seq, 1, seq / 3, seq / 3 + 17);
        var mask = new AttentionMask(kind, window > 0 ? window : null);
        RunRandom(new FlashAttention(cpu.Device) { AnchorApart = anchorApart }, new Random(headDim + seq), headDim, [layout], mask, seq, heads, kvHeads);
    }

    [Theory]
    [InlineData(MaskKind.Anchor, 200, 2, 1, true)]
    [InlineData(MaskKind.Anchor, 200, 2, 1, false)]
    [InlineData(MaskKind.Causal, 130, 1, 1, true)]
    [InlineData(MaskKind.Causal, 400, 1, 1, true)]
    public void Wgmma_forward_and_backward_match_an_fp64_reference(MaskKind kind, int seq, int heads, int kvHeads, bool anchorApart)
    {
        // Head dim 128 on the warpgroup-MMA kernels: 200 tokens give forward lists of odd length (a step with one tile),
        // a partial last tile and a partial last key block; GQA 2/1 walks two query heads per key block; the anchor's
        // documents make full, partial and empty tiles. 400 causal tokens give the last query block four steps, so the
        // forward's K/V buffers each serve two steps (a wrong buffer turn fails this case; the others have at most two).
        const int headDim = 128;
        var layout = kind == MaskKind.Causal ? DocumentLayout.Single(seq) : DocumentLayout.Anchored(seq, 1, 60, 61, 150);
        var flash = new FlashAttention(cpu.Device) { Kernels = FlashKernelSet.Wgmma, AnchorApart = anchorApart };
        Assert.True(flash.UsesWgmma(headDim));
        RunRandom(flash, new Random(seq), headDim, [layout], new AttentionMask(kind), seq, heads, kvHeads);
    }

    [Fact]
    public void The_anchor_key_apart_handles_rows_with_and_without_an_anchor_and_a_window()
    {
        // Two rows: the first without an anchor (its documents alone), the second anchored; the anchor pass reads each
        // row's anchor length and adds the anchor's gradients to that row's token 0 only. The 40-token window drops the
        // anchor pairs of queries 40 and later. (The warpgroup-MMA kernels: their CPU emulation is the fast one.)
        const int headDim = 128, seq = 80, heads = 2, kvHeads = 1;
        var layouts = new[] { DocumentLayout.FromStarts(seq, 0, [0, 30]), DocumentLayout.Anchored(seq, 1, 25, 50) };
        RunRandom(new FlashAttention(cpu.Device) { Kernels = FlashKernelSet.Wgmma }, new Random(5), headDim, layouts,
            new AttentionMask(MaskKind.Anchor, 40), seq, heads, kvHeads);
    }

    [Fact]
    public void One_instance_serves_operand_sets_of_other_shapes_one_after_another()
    {
        // The warpgroup-MMA kernels load through tensor maps cached per operand set (addresses and layouts): a second
        // problem of another length, head count and row count on the same FlashAttention gets maps of its own, and a
        // third like the first (whose buffers the allocator may hand out again) loads its own data, not the first's.
        const int headDim = 128;
        var flash = new FlashAttention(cpu.Device) { Kernels = FlashKernelSet.Wgmma };
        var twoRows = new[] { DocumentLayout.FromStarts(80, 0, [0, 30]), DocumentLayout.Anchored(80, 1, 25, 50) };
        RunRandom(flash, new Random(11), headDim, twoRows, new AttentionMask(MaskKind.Anchor), 80, 2, 1);
        RunRandom(flash, new Random(12), headDim, [DocumentLayout.Single(130)], new AttentionMask(MaskKind.Causal), 130, 1, 1);
        RunRandom(flash, new Random(13), headDim, twoRows, new AttentionMask(MaskKind.Anchor), 80, 2, 1);
    }

    [Fact]
    public void Wgmma_kernels_are_refused_where_they_cannot_run()
    {
        var flash = new FlashAttention(cpu.Device) { Kernels = FlashKernelSet.Wgmma };
        var e = Assert.Throws<NotSupportedException>(() => flash.UsesWgmma(64));
        Assert.Contains("head dim 128, not 64", e.Message, StringComparison.Ordinal);
        // Auto picks warpgroup MMA only on an SM_90 GPU; the CPU accelerator keeps mma.sync.
        Assert.False(new FlashAttention(cpu.Device).UsesWgmma(128));
        Assert.False(new FlashAttention(cpu.Device) { Kernels = FlashKernelSet.MmaSync }.UsesWgmma(128));
        // The kernels read the same row and column lists, grids and group sizes as the mma.sync kernels at head dim 128.
        Assert.Equal(HopperFlashKernels.ForwardQueries, FlashKernels.ForwardQueries(128));
        Assert.Equal(HopperFlashKernels.BackwardKeys, FlashKernels.BackwardKeys);
        Assert.Equal(HopperFlashKernels.BackwardThreads, FlashKernels.BackwardThreads);
    }

    /// <summary>
    /// <see cref="RunAndCompare"/> on random bf16 Q, K, V and dO (drawn row by row, in that order) against the fp64
    /// reference of each row's layout.
    /// </summary>
    private void RunRandom(FlashAttention flash, Random random, int headDim, DocumentLayout[] layouts, AttentionMask mask, int seq, int heads, int kvHeads)
    {
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => Bf16.ToFloat(Bf16.FromFloat((float)(random.NextDouble() * 2 - 1)))).ToArray();
        var rows = layouts.Select(layout =>
        {
            var (q, k, v, dO) = (Rand(seq * heads * headDim), Rand(seq * kvHeads * headDim), Rand(seq * kvHeads * headDim), Rand(seq * heads * headDim));
            return (q, k, v, dO, Reference: Reference(q, k, v, dO, seq, heads, kvHeads, headDim, (i, j) => mask.Allows(layout, i, j)));
        }).ToArray();
        double[] All(Func<Grads, double[]> part) => rows.SelectMany(r => part(r.Reference)).ToArray();
        var reference = new Grads(All(g => g.O), All(g => g.Lse), All(g => g.DQ), All(g => g.DK), All(g => g.DV));
        RunAndCompare(flash, reference, [.. rows.SelectMany(r => r.q)], [.. rows.SelectMany(r => r.k)], [.. rows.SelectMany(r => r.v)],
            [.. rows.SelectMany(r => r.dO)], headDim, layouts, mask, seq, heads, kvHeads);
    }

    /// <summary>
    /// Forward and backward through <paramref name="flash"/> on the CPU accelerator (tile map and lists built first, the
    /// backward's scratch filled with garbage), then O, LSE and the three gradients against the fp64 <paramref name="reference"/>.
    /// </summary>
    private void RunAndCompare(FlashAttention flash, Grads reference, float[] q, float[] k, float[] v, float[] dO, int headDim,
        DocumentLayout[] layouts, AttentionMask mask, int seq, int heads, int kvHeads)
    {
        var acc = cpu.Device.Accelerator;
        int rows = layouts.Length;
        using var batch = new GpuBatch(cpu.Device, rows, seq);
        batch.Upload(new int[rows * seq], Enumerable.Range(0, rows * seq).Select(t => t % seq).ToArray(), layouts, vocab: 1);
        batch.BuildTileMap(mask);
        flash.BuildTileLists(batch, headDim);
        // The anchor key runs apart exactly when asked, for the anchor mask (these layouts have anchors of at most one token).
        Assert.Equal(flash.AnchorApart && mask.Kind == MaskKind.Anchor, flash.RunsAnchorApart(mask, batch));
        using var qb = acc.Allocate1D(Bf16.FromFloats(q));
        using var kb = acc.Allocate1D(Bf16.FromFloats(k));
        using var vb = acc.Allocate1D(Bf16.FromFloats(v));
        using var dOb = acc.Allocate1D(Bf16.FromFloats(dO));
        using var ob = acc.Allocate1D<ushort>(q.Length);
        using var lse = acc.Allocate1D<float>(rows * seq * heads);
        using var dq = acc.Allocate1D<ushort>(q.Length);
        using var dk = acc.Allocate1D<ushort>(k.Length);
        using var dv = acc.Allocate1D<ushort>(v.Length);
        using var scratch = acc.Allocate1D<float>(FlashAttention.BackwardScratchLength(batch, heads, headDim));
        // Scratch left over from earlier calls: the backward must clear what it accumulates into (Δ, dQ) itself.
        scratch.View.CopyFromCPU(Enumerable.Repeat(1e4f, (int)scratch.Length).ToArray());
        FlashOperand Op(MemoryBuffer1D<ushort, Stride1D.Dense> b, int h) => new(b.View, HeadLayout.Packed(seq, h * headDim, 0, h, headDim));
        flash.Forward(Op(qb, heads), Op(kb, kvHeads), Op(vb, kvHeads), Op(ob, heads), headDim, batch, mask, lse.View);
        flash.Backward(Op(qb, heads), Op(kb, kvHeads), Op(vb, kvHeads), Op(ob, heads), Op(dOb, heads), lse.View, dq.View, dk.View, dv.View, headDim, batch, mask, scratch.View);
        cpu.Device.Synchronize();

        // bf16 rounding of P (2^-9), of the output (2^-9) and of dS: a few parts in a thousand of the largest value.
        Near("O", reference.O, Bf16.ToFloats(ob.GetAsArray1D()), 0.01);
        Near("lse", reference.Lse, lse.GetAsArray1D(), 1e-4);
        Near("dQ", reference.DQ, Bf16.ToFloats(dq.GetAsArray1D()), 0.02);
        Near("dK", reference.DK, Bf16.ToFloats(dk.GetAsArray1D()), 0.02);
        Near("dV", reference.DV, Bf16.ToFloats(dv.GetAsArray1D()), 0.02);
    }

    private static void Near(string what, double[] want, float[] got, double relative)
    {
        double scale = want.Max(Math.Abs);
        Assert.True(scale > 0.05, $"{what}: reference is degenerate (max |x| = {scale})");
        double worst = 0;
        int at = 0;
        for (int i = 0; i < want.Length; i++)
        {
            double e = Math.Abs(want[i] - got[i]);
            if (e > worst) (worst, at) = (e, i);
        }
        Assert.True(worst <= relative * scale, $"{what}: worst error {worst:G3} at {at} (want {want[at]:G5}, got {got[at]:G5}); bound {relative} × {scale:G3}");
    }

    private sealed record Grads(double[] O, double[] Lse, double[] DQ, double[] DK, double[] DV);

    /// <summary>Attention and its gradients in fp64; tensors [seq, heads, D], lse [heads, seq].</summary>
    private static Grads Reference(float[] q, float[] k, float[] v, float[] dO, int seq, int heads, int kvHeads, int d, Func<int, int, bool> allows)
    {
        double scale = 1 / Math.Sqrt(d);
        var o = new double[q.Length];
        var lse = new double[seq * heads];
        var dq = new double[q.Length];
        var dk = new double[k.Length];
        var dv = new double[v.Length];
        int group = heads / kvHeads;
        for (int h = 0; h < heads; h++)
        {
            int kh = h / group;
            for (int i = 0; i < seq; i++)
            {
                var s = new double[seq];
                double max = double.NegativeInfinity;
                for (int j = 0; j < seq; j++)
                {
                    if (!allows(i, j)) { s[j] = double.NegativeInfinity; continue; }
                    double dot = 0;
                    for (int x = 0; x < d; x++) dot += q[(i * heads + h) * d + x] * (double)k[(j * kvHeads + kh) * d + x];
                    s[j] = dot * scale;
                    max = Math.Max(max, s[j]);
                }
                double sum = 0;
                for (int j = 0; j < seq; j++) sum += s[j] == double.NegativeInfinity ? 0 : Math.Exp(s[j] - max);
                lse[h * seq + i] = max + Math.Log(sum);
                var p = s.Select(x => x == double.NegativeInfinity ? 0 : Math.Exp(x - max) / sum).ToArray();
                for (int j = 0; j < seq; j++)
                    for (int x = 0; x < d; x++) o[(i * heads + h) * d + x] += p[j] * v[(j * kvHeads + kh) * d + x];
                double delta = 0;
                for (int x = 0; x < d; x++) delta += dO[(i * heads + h) * d + x] * o[(i * heads + h) * d + x];
                for (int j = 0; j < seq; j++)
                {
                    if (p[j] == 0) continue;
                    double dp = 0;
                    for (int x = 0; x < d; x++) dp += dO[(i * heads + h) * d + x] * (double)v[(j * kvHeads + kh) * d + x];
                    double ds = p[j] * (dp - delta);
                    for (int x = 0; x < d; x++)
                    {
                        dv[(j * kvHeads + kh) * d + x] += p[j] * dO[(i * heads + h) * d + x];
                        dq[(i * heads + h) * d + x] += scale * ds * k[(j * kvHeads + kh) * d + x];
                        dk[(j * kvHeads + kh) * d + x] += scale * ds * q[(i * heads + h) * d + x];
                    }
                }
            }
        }
        // lse in the kernel's [rows, heads, seq] order is [heads, seq] for one row.
        return new Grads(o, lse, dq, dk, dv);
    }
}
