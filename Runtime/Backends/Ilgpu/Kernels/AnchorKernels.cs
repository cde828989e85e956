using ILGPU;

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
    /// <summary>The fp32 dQ accumulator [tokens, Heads, D].</summary>
    public ArrayView<float> DQ;
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

    /// <summary>Queries per group of <see cref="Prepare"/>: 32 per warp, four at a time.</summary>
    public const int Queries = 256;

    private const float Log2E = 1.4426950408889634f;

    /// <summary>
    /// Group (head, 256 queries, row), heads fastest so that the groups running at once read whole token rows: per query,
    /// Δ = dO·O, and for a query after the anchor (within the window) P = exp(q·k₀·scale − lse), dS = P·(dO·v₀ − Δ); the
    /// dQ accumulator row is set to dS·k₀ (0 without an anchor pair), and the group's sums of dS·q and P·dO are added to
    /// <see cref="AnchorArgs.Sums"/>. Lane l holds elements 4l..4l+3 (head dims up to 128).
    /// </summary>
    public static void Prepare(AnchorArgs a)
    {
        var partial = SharedMemory.Allocate<float>(8 * 256);
        int lane = Group.IdxX & 31, warp = Group.IdxX >> 5, h = Grid.IdxX, row = Grid.IdxZ;
        int kvh = h / (a.Heads / a.KvHeads), anchor = a.AnchorLengths[row];
        long rowTok = (long)row * a.Seq;
        int d = 4 * lane;
        bool on = d < a.HeadDim;
        int dd = on ? d : 0;                                   // lanes past the head read element 0, use zeros and write nothing
        var k0 = on ? Load4(a.K, a.KOffset + rowTok * a.KStride + (long)kvh * a.HeadDim + dd) : default;
        var v0 = on ? Load4(a.V, a.VOffset + rowTok * a.VStride + (long)kvh * a.HeadDim + dd) : default;
        var sumK = default(F4);
        var sumV = default(F4);
        int first = Grid.IdxY * Queries + 32 * warp;
        for (int t = 0; t < 32; t += 4)
        {
            // Four queries' rows load before any of them is used (ILGPU does not unroll loops).
            var r0 = Rows(a, row, h, first + t, dd, on);
            var r1 = Rows(a, row, h, first + t + 1, dd, on);
            var r2 = Rows(a, row, h, first + t + 2, dd, on);
            var r3 = Rows(a, row, h, first + t + 3, dd, on);
            Query(a, r0, k0, v0, row, h, first + t, d, on, lane, anchor, ref sumK, ref sumV);
            Query(a, r1, k0, v0, row, h, first + t + 1, d, on, lane, anchor, ref sumK, ref sumV);
            Query(a, r2, k0, v0, row, h, first + t + 2, d, on, lane, anchor, ref sumK, ref sumV);
            Query(a, r3, k0, v0, row, h, first + t + 3, d, on, lane, anchor, ref sumK, ref sumV);
        }
        // The group's sums: warp partials through shared memory, then one atomic add per element.
        int at = 256 * warp + d;
        partial[at] = sumK.X; partial[at + 1] = sumK.Y; partial[at + 2] = sumK.Z; partial[at + 3] = sumK.W;
        partial[at + 128] = sumV.X; partial[at + 129] = sumV.Y; partial[at + 130] = sumV.Z; partial[at + 131] = sumV.W;
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

    /// <summary>One query's O, dO and Q elements (this lane's four; zeros on lanes past the head) and its log-sum-exp; a query past the end reads the last one.</summary>
    private struct QueryRows
    {
        public F4 O, G, Q;
        public float Lse;
    }

    private static QueryRows Rows(in AnchorArgs a, int row, int h, int q, int dd, bool on)
    {
        int qc = q < a.Seq ? q : a.Seq - 1;
        long token = (long)row * a.Seq + qc, head = (long)h * a.HeadDim + dd;
        var rows = new QueryRows { Lse = a.Lse[((long)row * a.Heads + h) * a.Seq + qc] };
        if (on)
        {
            rows.O = Load4(a.O, a.OOffset + token * a.OStride + head);
            rows.G = Load4(a.DO, a.DOOffset + token * a.DOStride + head);
            rows.Q = Load4(a.Q, a.QOffset + token * a.QStride + head);
        }
        return rows;
    }

    private static void Query(in AnchorArgs a, in QueryRows r, F4 k0, F4 v0, int row, int h, int q, int d, bool on, int lane, int anchor,
        ref F4 sumK, ref F4 sumV)
    {
        float delta = WarpSum(r.G.Dot(r.O)), s = WarpSum(r.Q.Dot(k0)), dp = WarpSum(r.G.Dot(v0));
        if (q >= a.Seq) return;
        bool pair = anchor > 0 && q >= anchor && q < a.Window;
        float p = pair ? TensorCore.Exp2(s * a.ScaleLog2 - r.Lse * Log2E) : 0f, ds = p * (dp - delta);
        long token = (long)row * a.Seq + q;
        if (lane == 0) a.Delta[((long)row * a.Heads + h) * a.Seq + q] = delta;
        if (on)
        {
            var dq = a.DQ.Cast<ulong>();
            long at = ((token * a.Heads + h) * a.HeadDim + d) >> 1;
            dq[at] = Pair(ds * k0.X, ds * k0.Y);
            dq[at + 1] = Pair(ds * k0.Z, ds * k0.W);
        }
        sumK = new F4 { X = sumK.X + ds * r.Q.X, Y = sumK.Y + ds * r.Q.Y, Z = sumK.Z + ds * r.Q.Z, W = sumK.W + ds * r.Q.W };
        sumV = new F4 { X = sumV.X + p * r.G.X, Y = sumV.Y + p * r.G.Y, Z = sumV.Z + p * r.G.Z, W = sumV.W + p * r.G.W };
    }

    /// <summary>Four bf16 at <paramref name="element"/> (a multiple of 4) in one 8-byte load.</summary>
    private static F4 Load4(ArrayView<ushort> view, long element) => Bf16.Unpack4(view.Cast<ulong>()[element >> 2]);

    private static ulong Pair(float lo, float hi) => Interop.FloatAsInt(lo) | ((ulong)Interop.FloatAsInt(hi) << 32);

    private static float WarpSum(float x)
    {
        for (int offset = 16; offset > 0; offset >>= 1) x += Warp.ShuffleXor(x, offset);
        return x;
    }
}
