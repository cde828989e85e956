using ILGPU;
using TC = ModelGen.Backends.Ilgpu.Kernels.TensorCore;
using static ModelGen.Backends.Ilgpu.Bf16;
using static ModelGen.Backends.Ilgpu.Kernels.RowChunks;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>Arguments of <see cref="AnchorKernels.Prepare"/> and <see cref="AnchorKernels.Finish"/>.</summary>
public struct AnchorArgs
{
    /// <summary>The forward's operands and dO (bf16 bits, token-major rows).</summary>
    public ArrayView<ushort> Q, K, V, O, DO;
    /// <summary>Offsets and token strides (multiples of 4 elements).</summary>
    public long QOffset, QStride, KOffset, KStride, VOffset, VStride, OOffset, OStride, DOOffset, DOStride;
    /// <summary>The forward's log-sum-exp and Δ [rows, Heads, Seq] (natural log).</summary>
    public ArrayView<float> Lse, Delta;
    /// <summary>The fp32 dQ accumulator: [tokens, Heads, D], or in the order of <see cref="FlashKernels.SwizzledDqIndex"/> where <see cref="SwizzledDq"/>.</summary>
    public ArrayView<float> DQ;
    /// <summary>1 where <see cref="DQ"/> is in the warpgroup-MMA backward's order, else 0 (an int: kernel arguments are blittable).</summary>
    public int SwizzledDq;
    /// <summary>fp32 sums of the anchor key's gradients [rows, KvHeads, 2 (dK, dV), D], cleared before <see cref="AnchorKernels.Prepare"/>.</summary>
    public ArrayView<float> Sums;
    /// <summary>The key and value gradients [tokens, KvHeads, D] (bf16 bits).</summary>
    public ArrayView<ushort> DK, DV;
    /// <summary>Anchor length per row (0 or 1).</summary>
    public ArrayView<int> AnchorLengths;
    /// <summary>Shape; <see cref="Window"/> is the mask's sliding window (int.MaxValue: none).</summary>
    public int Seq, Heads, KvHeads, HeadDim, Window;
    /// <summary>1/√D, and the same times log2 e.</summary>
    public float Scale, ScaleLog2;
}

/// <summary>
/// The anchor key of an AnchorAttention window, apart from the tiled backward. Every query q ≥ 1 attends key 0 (the
/// shared anchor) besides its own document, so in the tiled kernels key 0's block reaches every query tile: a partial
/// tile whose one allowed column costs a whole step (3–10% of the backward's steps on packed windows, all of them in the
/// first key block). Given the forward's log-sum-exp and Δ, each pair's gradient terms are independent, so the anchor
/// column is computed here instead — a rank-one pass over the rows — and the tiled kernels run the intra-document mask:
/// <list type="bullet">
/// <item><see cref="Prepare"/> (before the tiled kernel) computes Δ, starts each query's dQ accumulator with the anchor
/// pair's dS·K₀ (instead of clearing it) and sums dK₀ += dS·q and dV₀ += P·dO over its queries;</item>
/// <item><see cref="Finish"/> (after it) adds those sums to the anchor key's gradients, which the tiled kernel wrote for
/// the anchor's own query.</item>
/// </list>
/// </summary>
public static class AnchorKernels
{
    /// <summary>Threads per group of <see cref="Prepare"/>: eight warps.</summary>
    public const int Threads = 256;

    /// <summary>Queries per group of <see cref="Prepare"/>: 32 per warp, eight at a time.</summary>
    public const int Queries = 256;

    private const float Log2E = 1.4426950408889634f;

    /// <summary>
    /// Group (head, 256 queries, row), heads fastest so that the groups running at once read whole token rows: per query,
    /// Δ = dO·O, and for a query after the anchor (within the window) P = exp(q·k₀·scale − lse), dS = P·(dO·v₀ − Δ); the
    /// dQ accumulator row is set to dS·k₀ (0 without an anchor pair), and the group's sums of dS·q and P·dO are added to
    /// <see cref="AnchorArgs.Sums"/>. Eight lanes share a query (<see cref="RowChunks"/>), four queries at a time; a warp
    /// loads two such sets before it uses either. Head dims 64 and 128.
    /// </summary>
    public static void Prepare(AnchorArgs a)
    {
        var partial = SharedMemory.Allocate<float>(8 * 256);
        int lane = Group.IdxX & 31, warp = Group.IdxX >> 5, h = Grid.IdxX, row = Grid.IdxZ;
        int kvh = h / (a.Heads / a.KvHeads), anchor = a.AnchorLengths[row];
        int sub = lane >> 3;
        var (e0, e1, two) = RowChunks.Elements(lane, a.HeadDim);   // head dim 64: one chunk per lane (the second repeats it, unused)
        long rowTok = (long)row * a.Seq;
        var key = RowChunks.Load(a.K, a.KOffset + rowTok * a.KStride + (long)kvh * a.HeadDim, e0, e1);
        var value = RowChunks.Load(a.V, a.VOffset + rowTok * a.VStride + (long)kvh * a.HeadDim, e0, e1);
        Sums sums = default;
        int first = Grid.IdxY * Queries + 32 * warp + sub;
        for (int t = 0; t < 32; t += 8)
        {
            var r0 = Rows(a, rowTok, row, h, first + t, e0, e1);
            var r1 = Rows(a, rowTok, row, h, first + t + 4, e0, e1);
            // Both sets' sums before either is used, so that their shuffles interleave.
            var d0 = Dots(r0, key, value, two);
            var d1 = Dots(r1, key, value, two);
            Query(a, r0, d0, key, rowTok, row, h, first + t, e0, e1, two, lane, anchor, ref sums);
            Query(a, r1, d1, key, rowTok, row, h, first + t + 4, e0, e1, two, lane, anchor, ref sums);
        }
        // The warp's four queries' sums (lanes j, j+8, j+16, j+24 hold the same elements), then the warps' through shared
        // memory, then one atomic add per element.
        sums = Across4(sums);
        if (sub == 0)
        {
            int at = 256 * warp;
            Store(partial, at + e0, sums.KA);
            Store(partial, at + 128 + e0, sums.VA);
            if (two)
            {
                Store(partial, at + e1, sums.KB);
                Store(partial, at + 128 + e1, sums.VB);
            }
        }
        Group.Barrier();
        int e = Group.IdxX, which = e >> 7, c = e & 127;
        if (anchor > 0 && c < a.HeadDim)
        {
            float total = 0f;
            for (int w = 0; w < 8; w++) total += partial[256 * w + e];
            if (total != 0f) Atomic.Add(ref a.Sums[(((long)row * a.KvHeads + kvh) * 2 + which) * a.HeadDim + c], total);
        }
    }

    /// <summary>One thread per (row, key/value head, element): the anchor key's dK and dV plus the sums of <see cref="Prepare"/>.</summary>
    public static void Finish(Index1D index, AnchorArgs a)
    {
        int perRow = a.KvHeads * a.HeadDim, row = index / perRow, r = index - row * perRow, kvh = r / a.HeadDim, c = r - kvh * a.HeadDim;
        if (a.AnchorLengths[row] == 0) return;
        long sums = (((long)row * a.KvHeads + kvh) * 2) * a.HeadDim + c;
        long at = (long)row * a.Seq * perRow + r;              // token 0 of the row
        a.DK[at] = Bf16.FromFloat(Bf16.ToFloat(a.DK[at]) + a.Scale * a.Sums[sums]);
        a.DV[at] = Bf16.FromFloat(Bf16.ToFloat(a.DV[at]) + a.Sums[sums + a.HeadDim]);
    }

    /// <summary>Eight fp32 values, a chunk's elements in order.</summary>
    private struct F8
    {
        public F4 Lo, Hi;
    }

    /// <summary>A lane's running sums of dS·q (K) and P·dO (V) over its two chunks.</summary>
    private struct Sums
    {
        public F8 KA, KB, VA, VB;
    }

    /// <summary>One query's O, dO and Q chunks and its log-sum-exp; a query past the end reads the last one.</summary>
    private struct QueryRows
    {
        public Chunks O, G, Q;
        public float Lse;
    }

    private static QueryRows Rows(in AnchorArgs a, long rowTok, int row, int h, int q, int e0, int e1)
    {
        int qc = q < a.Seq ? q : a.Seq - 1;
        long token = rowTok + qc, head = (long)h * a.HeadDim;
        return new QueryRows
        {
            O = RowChunks.Load(a.O, a.OOffset + token * a.OStride + head, e0, e1),
            G = RowChunks.Load(a.DO, a.DOOffset + token * a.DOStride + head, e0, e1),
            Q = RowChunks.Load(a.Q, a.QOffset + token * a.QStride + head, e0, e1),
            Lse = a.Lse[((long)row * a.Heads + h) * a.Seq + qc],
        };
    }

    /// <summary>A query's Δ = dO·O, q·k₀ and dO·v₀, summed over its eight lanes.</summary>
    private struct Terms
    {
        public float Delta, S, Dp;
    }

    private static Terms Dots(in QueryRows r, in Chunks key, in Chunks value, bool two)
    {
        return new Terms
        {
            Delta = RowChunks.Sum8(RowChunks.Dot(r.G, r.O, two)),
            S = RowChunks.Sum8(RowChunks.Dot(r.Q, key, two)),
            Dp = RowChunks.Sum8(RowChunks.Dot(r.G, value, two)),
        };
    }

    private static void Query(in AnchorArgs a, in QueryRows r, Terms x, in Chunks key, long rowTok, int row, int h, int q, int e0, int e1,
        bool two, int lane, int anchor, ref Sums sums)
    {
        if (q >= a.Seq) return;
        bool pair = anchor > 0 && q >= anchor && q < a.Window;
        float p = pair ? TC.Exp2(x.S * a.ScaleLog2 - r.Lse * Log2E) : 0f, ds = p * (x.Dp - x.Delta);
        if ((lane & 7) == 0) a.Delta[((long)row * a.Heads + h) * a.Seq + q] = x.Delta;
        // A lane's eight elements are one chunk, contiguous in either order of the accumulator.
        long at = ((rowTok + q) * a.Heads + h) * a.HeadDim;
        StoreScaled(a.DQ, a.SwizzledDq != 0 ? FlashKernels.SwizzledDqIndex(row, h, q, e0, a.Heads, a.Seq, a.HeadDim) : at + e0, key.A, ds);
        if (two) StoreScaled(a.DQ, a.SwizzledDq != 0 ? FlashKernels.SwizzledDqIndex(row, h, q, e1, a.Heads, a.Seq, a.HeadDim) : at + e1, key.B, ds);
        sums.KA = Axpy(sums.KA, ds, r.Q.A);
        sums.KB = Axpy(sums.KB, ds, r.Q.B);
        sums.VA = Axpy(sums.VA, p, r.G.A);
        sums.VB = Axpy(sums.VB, p, r.G.B);
    }

    /// <summary>sum + s·x, element by element.</summary>
    private static F8 Axpy(F8 sum, float s, U4 x) => new()
    {
        Lo = new F4 { X = sum.Lo.X + s * Lo(x.X), Y = sum.Lo.Y + s * Hi(x.X), Z = sum.Lo.Z + s * Lo(x.Y), W = sum.Lo.W + s * Hi(x.Y) },
        Hi = new F4 { X = sum.Hi.X + s * Lo(x.Z), Y = sum.Hi.Y + s * Hi(x.Z), Z = sum.Hi.Z + s * Lo(x.W), W = sum.Hi.W + s * Hi(x.W) },
    };

    /// <summary>s·x to the eight fp32 at <paramref name="at"/> (a multiple of 4), in two 16-byte stores.</summary>
    private static void StoreScaled(ArrayView<float> target, long at, U4 x, float s)
    {
        TC.StoreGlobal16(ref target[at], new F4 { X = s * Lo(x.X), Y = s * Hi(x.X), Z = s * Lo(x.Y), W = s * Hi(x.Y) });
        TC.StoreGlobal16(ref target[at + 4], new F4 { X = s * Lo(x.Z), Y = s * Hi(x.Z), Z = s * Lo(x.W), W = s * Hi(x.W) });
    }

    private static void Store(ArrayView<float> shared, int at, F8 x)
    {
        shared[at] = x.Lo.X; shared[at + 1] = x.Lo.Y; shared[at + 2] = x.Lo.Z; shared[at + 3] = x.Lo.W;
        shared[at + 4] = x.Hi.X; shared[at + 5] = x.Hi.Y; shared[at + 6] = x.Hi.Z; shared[at + 7] = x.Hi.W;
    }

    /// <summary>Each sum added over the warp's four queries (lanes 8 and 16 apart).</summary>
    private static Sums Across4(Sums s) => new() { KA = Across4(s.KA), KB = Across4(s.KB), VA = Across4(s.VA), VB = Across4(s.VB) };

    private static F8 Across4(F8 x) => new() { Lo = Across4(x.Lo), Hi = Across4(x.Hi) };

    private static F4 Across4(F4 x) => new() { X = Across4(x.X), Y = Across4(x.Y), Z = Across4(x.Z), W = Across4(x.W) };

    private static float Across4(float x)
    {
        x += Warp.ShuffleXor(x, 8);
        return x + Warp.ShuffleXor(x, 16);
    }
}
