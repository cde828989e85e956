using System.Runtime.CompilerServices;
using ILGPU;
using ModelGen.Masks;
using TC = ModelGen.Backends.Ilgpu.Kernels.TensorCore;
using WG = ModelGen.Backends.Ilgpu.Kernels.WarpgroupMma;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>
/// Flash attention on Hopper's warpgroup MMA (<see cref="WarpgroupMma"/>, SM_90a) at head dim 128: the same arguments,
/// grid and tile lists as <see cref="FlashKernels"/>' kernels, so <see cref="FlashAttention"/> picks either.
/// </summary>
/// <remarks>
/// Forward: a group of two warpgroups owns 128 queries (64 each, as two tiles of the tile map) and walks the key tiles
/// of its list two at a time, so that every step is 128 keys whatever the tiles' positions: S = Q·Kᵀ (Q and the two
/// K tiles in shared memory, 8 wgmma of 64×128×16), the online softmax on the accumulators, then O += P·V with P from
/// registers and V N-major in shared memory (8 wgmma). Thread 0 issues every load through the tensor memory accelerator
/// (<see cref="Tma"/>: Q once, then K and V of the next step into the second buffer while this one is computed), each
/// buffer with its transaction barrier that the warps wait on; one group barrier per step frees the buffer for reuse.
/// An odd list leaves the last step's second tile zero-filled and masked. Partial tiles test keys against each query's spans (<see cref="IAttentionMask.Spans"/>) or the predicate.
/// With the anchor key apart (<see cref="FlashForwardArgs{TMask}.AnchorWindow"/>) each query's softmax starts from key 0
/// and the lists are the intra-document part's. Backward: <see cref="BackwardD128{TMask}"/>, 64 keys per warpgroup.
/// </remarks>
public static class HopperFlashKernels
{
    /// <summary>Head dimension of these kernels.</summary>
    public const int HeadDim = 128;

    /// <summary>Queries per forward group: two 64-query tiles, one per warpgroup (the row lists of <see cref="FlashKernels.ForwardQueries(int)"/> at head dim 128).</summary>
    public const int ForwardQueries = 2 * FlashKernels.Tile;

    /// <summary>Threads per forward group: two warpgroups.</summary>
    public const int ForwardThreads = 2 * WG.Threads;

    /// <summary>Keys per forward step: two tiles of the list.</summary>
    private const int StepKeys = 2 * FlashKernels.Tile;

    private const int Region = 128 * 64;          // elements between the 64-column blocks of a 128-row tile
    private const int TileElements = 128 * 128;   // a 128 × 128 bf16 tile
    private const int KBuffers = TileElements;    // Q, then two K buffers, then two V buffers
    private const int VBuffers = 3 * TileElements;

    private const int ForwardBarriers = 5 * TileElements;                  // the two K/V buffers' barriers
    private const int QueryBarrier = ForwardBarriers + 2 * Tma.BarrierElements;

    /// <summary>Dynamic shared memory of the forward kernel, bytes: Q, two K and two V tiles of 128 × 128 bf16, three load barriers.</summary>
    public const int ForwardSharedBytes = (QueryBarrier + Tma.BarrierElements) * 2;

    /// <summary>Flash attention forward, head dim 128, on warpgroup MMA: group (head, 128 queries, row), 256 threads.</summary>
    public static void ForwardD128<TMask>(FlashForwardArgs<TMask> a) where TMask : struct, IAttentionMask
    {
        var smem = SharedMemory.GetDynamic<ushort>();
        ref ushort sm = ref smem[0];
        // Heads vary fastest and query blocks run from the last: the longest lists (causal) start first.
        int qt = a.QueryBlocks - 1 - Grid.IdxY, h = Grid.IdxX, row = Grid.IdxZ;
        int tid = Group.IdxX, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, tq = lane & 3;
        int seq = a.Seq;
        long rowTok = (long)row * seq;
        var docs = a.Layouts.Row(row);
        int kvh = h / (a.Heads / a.KvHeads);
        int q0 = qt * ForwardQueries;
        int block = row * a.QueryBlocks + qt;
        int count = a.Counts[block];
        long listBase = (long)block * a.KeyTiles;
        long qHead = (long)h * HeadDim, kvHead = (long)kvh * HeadDim;
        int steps = (count + 1) >> 1;
        // Thread 0 issues every tile load through the tensor maps (QMap, KMap, VMap), each load completing its bytes on
        // the barrier of its buffer; the other threads only wait.
        InitBarriers(ref sm, ForwardBarriers, tid);
        // The list entries of step n + 1 are read during step n − 1, so that issuing its loads never waits for them.
        int eA = 0, eB = 0, fA = 0, fB = 0;
        if (count > 0)
        {
            eA = a.Lists[listBase];
            eB = count > 1 ? a.Lists[listBase + 1] : eA;
            if (count > 2)
            {
                fA = a.Lists[listBase + 2];
                fB = count > 3 ? a.Lists[listBase + 3] : fA;
            }
            if (tid == 0)
            {
                Tma.FenceMap(ref a.QMap[0]);
                Tma.FenceMap(ref a.KMap[0]);
                Tma.FenceMap(ref a.VMap[0]);
                Tma.ExpectBytes(ref sm, QueryBarrier, 4 * TensorMaps.BoxBytes);
                LoadTile(ref sm, 0, QueryBarrier, ref a.QMap[0], h, q0, q0 + 64, row);
                IssueKeys(a, ref sm, 0, ForwardBarriers, eA >> 2, count > 1 ? eB >> 2 : -1, kvh, row);
            }
        }

        int qa = q0 + 64 * wg + 16 * warp + g, qb = qa + 8;
        int ca = qa < seq ? qa : seq - 1, cb = qb < seq ? qb : seq - 1;
        int docQa = docs.IndexOf(ca), docQb = docs.IndexOf(cb);
        var spansA = a.Mask.Spans(docs, ca, docQa);
        var spansB = a.Mask.Spans(docs, cb, docQb);
        var o = default(Acc128);
        float m0 = float.NegativeInfinity, m1 = float.NegativeInfinity, l0 = 0f, l1 = 0f;
        float sl = a.ScaleLog2;
        if (a.AnchorWindow > 0)
        {
            // The anchor key apart: the softmax starts from key 0 alone (P = 1, O = v₀), the lists hold the documents' tiles.
            int anchor = a.AnchorLengths[row];
            bool pa = anchor > 0 && qa >= anchor && qa < a.AnchorWindow && qa < seq, pb = anchor > 0 && qb >= anchor && qb < a.AnchorWindow && qb < seq;
            float sa = AnchorScore(a, rowTok, qHead, kvHead, ca, tq), sb = AnchorScore(a, rowTok, qHead, kvHead, cb, tq);
            m0 = pa ? sa * sl : float.NegativeInfinity;
            m1 = pb ? sb * sl : float.NegativeInfinity;
            l0 = pa && tq == 0 ? 1f : 0f;
            l1 = pb && tq == 0 ? 1f : 0f;
            o = AnchorValues(a, rowTok, kvHead, tq, pa, pb);
        }
        for (int n = 0; n < steps; n++)
        {
            bool hasB = 2 * n + 1 < count;
            int kA = (eA >> 2) * FlashKernels.Tile, kB = hasB ? (eB >> 2) * FlashKernels.Tile : seq;
            bool partial = (eA & 3) == (int)TileKind.Partial || (eB & 3) == (int)TileKind.Partial || !hasB || kA + FlashKernels.Tile > seq || kB + FlashKernels.Tile > seq;
            int buffer = (n & 1) * TileElements;
            // Every warpgroup is done with step n − 1's buffer (its MMAs waited for), which step n + 1's loads overwrite.
            if (n > 0) Group.Barrier();
            int gA = 0, gB = 0;
            if (2 * n + 4 < count)
            {
                gA = a.Lists[listBase + 2 * n + 4];
                gB = 2 * n + 5 < count ? a.Lists[listBase + 2 * n + 5] : gA;
            }
            if (tid == 0 && n + 1 < steps)
                IssueKeys(a, ref sm, ((n + 1) & 1) * TileElements, ForwardBarriers + ((n + 1) & 1) * Tma.BarrierElements, fA >> 2, 2 * n + 3 < count ? fB >> 2 : -1, kvh, row);
            if (n == 0) Wait(ref sm, QueryBarrier, 0);
            Wait(ref sm, ForwardBarriers + (n & 1) * Tma.BarrierElements, (n >> 1) & 1);
            var s = WG.MmaKK(ref sm, wg * 64 * 64, Region, KBuffers + buffer, Region, 8, default, false);
            if (partial && spansA.Exact) s = MaskSpans(s, kA + 2 * tq, kB + 2 * tq, seq, spansA, spansB);
            else if (partial) s = MaskPredicate(s, a.Mask, docs, qa, qb, docQa, docQb, kA + 2 * tq, kB + 2 * tq, seq);
            float x0 = Max0(s), x1 = Max1(s);
            x0 = MathF.Max(x0, Warp.ShuffleXor(x0, 1)); x0 = MathF.Max(x0, Warp.ShuffleXor(x0, 2));
            x1 = MathF.Max(x1, Warp.ShuffleXor(x1, 1)); x1 = MathF.Max(x1, Warp.ShuffleXor(x1, 2));
            float n0 = MathF.Max(m0, x0 * sl), n1 = MathF.Max(m1, x1 * sl);
            float c0 = n0 == float.NegativeInfinity ? 1f : TC.Exp2(m0 - n0), c1 = n1 == float.NegativeInfinity ? 1f : TC.Exp2(m1 - n1);
            float u0 = n0 == float.NegativeInfinity ? 0f : n0, u1 = n1 == float.NegativeInfinity ? 0f : n1;
            m0 = n0; m1 = n1;
            s = Exp(s, sl, u0, u1);
            l0 = l0 * c0 + Sum0(s);
            l1 = l1 * c1 + Sum1(s);
            o = Scale(o, c0, c1);
            o = WG.MmaRN(Pack(s), ref sm, VBuffers + buffer, Region, 8, o, true);
            eA = fA; eB = fB; fA = gA; fB = gB;
        }
        l0 += Warp.ShuffleXor(l0, 1); l0 += Warp.ShuffleXor(l0, 2);
        l1 += Warp.ShuffleXor(l1, 1); l1 += Warp.ShuffleXor(l1, 2);
        float i0 = l0 > 0f ? 1f / l0 : 0f, i1 = l1 > 0f ? 1f / l1 : 0f;
        var o32 = a.O.Cast<uint>();
        if (qa < seq)
        {
            StoreRow(o32, (a.OOffset + (rowTok + qa) * a.OStride + qHead + 2 * tq) >> 1, o, i0);
            if (tq == 0 && a.Lse.Length > 0) a.Lse[((long)row * a.Heads + h) * seq + qa] = l0 > 0f ? (m0 + TC.Log2(l0)) * 0.6931471805599453f : float.NegativeInfinity;
        }
        if (qb < seq)
        {
            StoreRow(o32, (a.OOffset + (rowTok + qb) * a.OStride + qHead + 2 * tq) >> 1, SecondRow(o), i1);
            if (tq == 0 && a.Lse.Length > 0) a.Lse[((long)row * a.Heads + h) * seq + qb] = l1 > 0f ? (m1 + TC.Log2(l1)) * 0.6931471805599453f : float.NegativeInfinity;
        }
    }

    /// <summary>
    /// q·k₀ for query <paramref name="q"/> and its row's key 0, summed over the quad (this thread: elements 32tq..32tq+31),
    /// as the MMA computes it: bf16 products accumulated in fp32.
    /// </summary>
    private static float AnchorScore<TMask>(in FlashForwardArgs<TMask> a, long rowTok, long qHead, long kvHead, int q, int tq) where TMask : struct, IAttentionMask
    {
        var q64 = a.Q.Cast<ulong>();
        var k64 = a.K.Cast<ulong>();
        long qa = (a.QOffset + (rowTok + q) * a.QStride + qHead + 32 * tq) >> 2;
        long ka = (a.KOffset + rowTok * a.KStride + kvHead + 32 * tq) >> 2;
        float s = Bf16.Unpack4(q64[qa]).Dot(Bf16.Unpack4(k64[ka])) + Bf16.Unpack4(q64[qa + 1]).Dot(Bf16.Unpack4(k64[ka + 1]))
            + Bf16.Unpack4(q64[qa + 2]).Dot(Bf16.Unpack4(k64[ka + 2])) + Bf16.Unpack4(q64[qa + 3]).Dot(Bf16.Unpack4(k64[ka + 3]))
            + Bf16.Unpack4(q64[qa + 4]).Dot(Bf16.Unpack4(k64[ka + 4])) + Bf16.Unpack4(q64[qa + 5]).Dot(Bf16.Unpack4(k64[ka + 5]))
            + Bf16.Unpack4(q64[qa + 6]).Dot(Bf16.Unpack4(k64[ka + 6])) + Bf16.Unpack4(q64[qa + 7]).Dot(Bf16.Unpack4(k64[ka + 7]));
        s += Warp.ShuffleXor(s, 1);
        return s + Warp.ShuffleXor(s, 2);
    }

    /// <summary>The accumulator of a softmax started from key 0 alone: its value row v₀ in this thread's columns of row a (if <paramref name="pa"/>) and row b (if <paramref name="pb"/>).</summary>
    private static Acc128 AnchorValues<TMask>(in FlashForwardArgs<TMask> a, long rowTok, long kvHead, int tq, bool pa, bool pb) where TMask : struct, IAttentionMask
    {
        var v32 = a.V.Cast<uint>();
        long at = (a.VOffset + rowTok * a.VStride + kvHead + 2 * tq) >> 1;
        return new Acc128
        {
            C0 = AnchorChunk(v32[at], pa, pb), C1 = AnchorChunk(v32[at + 4], pa, pb), C2 = AnchorChunk(v32[at + 8], pa, pb), C3 = AnchorChunk(v32[at + 12], pa, pb),
            C4 = AnchorChunk(v32[at + 16], pa, pb), C5 = AnchorChunk(v32[at + 20], pa, pb), C6 = AnchorChunk(v32[at + 24], pa, pb), C7 = AnchorChunk(v32[at + 28], pa, pb),
            C8 = AnchorChunk(v32[at + 32], pa, pb), C9 = AnchorChunk(v32[at + 36], pa, pb), C10 = AnchorChunk(v32[at + 40], pa, pb), C11 = AnchorChunk(v32[at + 44], pa, pb),
            C12 = AnchorChunk(v32[at + 48], pa, pb), C13 = AnchorChunk(v32[at + 52], pa, pb), C14 = AnchorChunk(v32[at + 56], pa, pb), C15 = AnchorChunk(v32[at + 60], pa, pb),
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static F4 AnchorChunk(uint pair, bool pa, bool pb)
    {
        float x = Bf16.ToFloat((ushort)pair), y = Bf16.ToFloat((ushort)(pair >> 16));
        return new F4 { X = pa ? x : 0f, Y = pa ? y : 0f, Z = pb ? x : 0f, W = pb ? y : 0f };
    }

    // ---- Backward ------------------------------------------------------------------------------------------------

    /// <summary>Keys per backward group (the column lists of <see cref="FlashKernels.BackwardKeys"/>), 64 per warpgroup.</summary>
    public const int BackwardKeys = 2 * FlashKernels.Tile;

    /// <summary>Threads per backward group: two warpgroups.</summary>
    public const int BackwardThreads = 2 * WG.Threads;

    private const int StepQ = FlashKernels.Tile;              // queries per backward step
    private const int StepTile = StepQ * HeadDim;              // a step's Q or dO tile, elements
    private const int StepRegion = StepQ * 64;                 // its 64-column blocks' distance
    private const int BwdK = 0, BwdV = TileElements;           // K and V of the group's 128 keys
    private const int BwdQ = 2 * TileElements;                 // two buffers of Q, then two of dO
    private const int BwdDO = BwdQ + 2 * StepTile;
    private const int BwdDS = BwdDO + 2 * StepTile;            // two buffers of dSᵀ [128 keys][64 queries]
    private const int DsTile = BackwardKeys * StepQ;
    private const int StepValues = 6 * StepQ;                  // LSE (log2), Δ, four span bounds per query
    private const int BwdValues = BwdDS + 2 * DsTile;          // two buffers of step values (32-bit each)

    private const int DqRow = 2 * 64;                         // a staged dQ row: 64 floats, chunks swizzled as in FlashKernels.SwizzledDqIndex
    private const int DqWarp = 16 * DqRow;                     // a warp's 16 staged rows: one 4 KB block
    private const int BwdDq = BwdValues + 2 * 2 * StepValues;  // eight warps' staged dQ rows (16-byte aligned)

    private const int BwdBarriers = BwdDq + 8 * DqWarp;       // the two Q/dO buffers' load barriers, then K and V's
    private const int KeyBarrier = BwdBarriers + 2 * Tma.BarrierElements;

    /// <summary>Dynamic shared memory of the backward kernel, bytes: K, V, two buffers each of Q, dO, dSᵀ and step values, the staged dQ rows, three load barriers.</summary>
    public const int BackwardSharedBytes = (KeyBarrier + Tma.BarrierElements) * 2;

    /// <summary>
    /// Flash attention backward, head dim 128, on warpgroup MMA: group (128 keys, key/value head, row), 256 threads; each
    /// warpgroup owns 64 keys. Per step of 64 queries (the group's query heads × its column list): Sᵀ = K·Qᵀ and
    /// dPᵀ = V·dOᵀ (64 × 64 per warpgroup), Pᵀ and dSᵀ on the accumulators, dV += Pᵀ·dO and dK += dSᵀ·Q with P and dS
    /// from registers, and dSᵀ to shared memory. After the next step's barrier each warpgroup computes its half of that
    /// step's dQ = dS·K (dS M-major, K N-major) and adds it to the fp32 accumulator (in the order of
    /// <see cref="FlashKernels.SwizzledDqIndex"/>) through shared memory and the copy engine's bulk reductions, one per warp
    /// (<c>AddDq</c>): dQ is a step late, dSᵀ double-buffered, so one barrier per step suffices.
    /// Sᵀ and dPᵀ run as one group of MMAs, dV and dK as another. The next step's Q, dO and values load while this one runs.
    /// </summary>
    public static void BackwardD128<TMask>(FlashBackwardArgs<TMask> a) where TMask : struct, IAttentionMask
    {
        var smem = SharedMemory.GetDynamic<ushort>();
        ref ushort sm = ref smem[0];
        // Heads vary fastest, key blocks from the first: the longest lists (the first keys) start first.
        int kbk = Grid.IdxY, kvh = Grid.IdxX, row = Grid.IdxZ;
        int tid = Group.IdxX, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, tq = lane & 3;
        int seq = a.Seq;
        long rowTok = (long)row * seq;
        var docs = a.Layouts.Row(row);
        int k0 = kbk * BackwardKeys;
        int block = row * a.KeyBlocks + kbk;
        int count = a.Counts[block];
        long listBase = (long)block * a.QueryTiles;
        long kvHead = (long)kvh * HeadDim;
        int groupSize = a.Heads / a.KvHeads;
        int steps = groupSize * count;
        // Thread 0 issues the tile loads through the tensor maps (K and V once, Q and dO per step), each buffer with its
        // transaction barrier; nothing is loaded for an empty list (no load may still be in flight when the group ends).
        InitBarriers(ref sm, BwdBarriers, tid);
        if (steps > 0)
        {
            int hi = 0, q0 = (a.Lists[listBase] >> 2) * StepQ;
            if (tid == 0)
            {
                Tma.FenceMap(ref a.QMap[0]);
                Tma.FenceMap(ref a.KMap[0]);
                Tma.FenceMap(ref a.VMap[0]);
                Tma.FenceMap(ref a.DOMap[0]);
                Tma.ExpectBytes(ref sm, KeyBarrier, 8 * TensorMaps.BoxBytes);
                LoadTile(ref sm, BwdK, KeyBarrier, ref a.KMap[0], kvh, k0, k0 + 64, row);
                LoadTile(ref sm, BwdV, KeyBarrier, ref a.VMap[0], kvh, k0, k0 + 64, row);
                IssueStep(a, ref sm, 0, BwdBarriers, kvh * groupSize + hi, q0, row);
            }
            TC.StoreShared32(ref sm, BwdValues + 2 * tid, StepValue(a, row, kvh * groupSize + hi, q0 + (tid & (StepQ - 1)), tid >> 6));
            if (tid < StepValues - BackwardThreads)
                TC.StoreShared32(ref sm, BwdValues + 2 * (tid + BackwardThreads), StepValue(a, row, kvh * groupSize + hi, q0 + (tid & (StepQ - 1)), (tid + BackwardThreads) >> 6));
        }

        var dk = default(Acc128);
        var dv = default(Acc128);
        bool exact = a.Mask.Spans(docs, 0, 0).Exact;
        float sl = a.ScaleLog2;
        long dqRows = (long)row * a.Heads * 2;                   // the accumulator's first (head, half) piece of this row
        int keyRow = 64 * wg + 16 * warp + g;                     // this thread's first key row in the group
        int kx = k0 + keyRow, ky = kx + 8;
        int dsAt = BwdDS + keyRow * 64 + 2 * tq;                   // its dSᵀ pairs: + chunk (j ⊕ g)·8, row + 8 at + 512
        int lastQ0 = 0, lastH = 0;                                 // the previous step's queries and head, for its dQ
        for (int n = 0; n < steps; n++)
        {
            int hi = n / count, entry = a.Lists[listBase + n - hi * count];
            int q0 = (entry >> 2) * StepQ, h = kvh * groupSize + hi;
            int buffer = (n & 1) * StepTile, vals = BwdValues + (n & 1) * 2 * StepValues;
            // The staged dSᵀ (written by threads, read by the MMAs) needs the proxy fence; the barrier also frees step n − 1's
            // Q and dO buffer, which step n + 1's loads overwrite.
            WG.FenceProxyAsync();
            Group.Barrier();
            uint staged0 = 0, staged1 = 0;
            if (n + 1 < steps)
            {
                int nn = n + 1, hn = nn / count, qn = (a.Lists[listBase + nn - hn * count] >> 2) * StepQ;
                if (tid == 0) IssueStep(a, ref sm, (nn & 1) * StepTile, BwdBarriers + (nn & 1) * Tma.BarrierElements, kvh * groupSize + hn, qn, row);
                staged0 = StepValue(a, row, kvh * groupSize + hn, qn + (tid & (StepQ - 1)), tid >> 6);
                if (tid < StepValues - BackwardThreads)
                    staged1 = StepValue(a, row, kvh * groupSize + hn, qn + (tid & (StepQ - 1)), (tid + BackwardThreads) >> 6);
            }
            if (n > 0) AddDq(a, ref sm, BwdDS + ((n - 1) & 1) * DsTile, wg, warp, lane, g, tq, lastQ0, dqRows + 2 * lastH, seq);
            lastQ0 = q0;
            lastH = h;
            bool partial = (entry & 3) == (int)TileKind.Partial || q0 + StepQ > seq || k0 + BackwardKeys > seq;
            if (n == 0) Wait(ref sm, KeyBarrier, 0);
            Wait(ref sm, BwdBarriers + (n & 1) * Tma.BarrierElements, (n >> 1) & 1);
            // Sᵀ (chunks 0–7) and dPᵀ (chunks 8–15) in one group.
            var sdp = WG.MmaKK64x2(ref sm, BwdK + 64 * 64 * wg, BwdQ + buffer, BwdV + 64 * 64 * wg, BwdDO + buffer, Region, StepRegion, 8);
            // Pᵀ = 2^(S·scale·log2 e − lse₂(q)) and dSᵀ = Pᵀ ∘ (dPᵀ − Δ(q)); query columns 8j + 2tq (+ 1) of the step.
            int col = vals + 4 * tq;
            var pt = new Acc64
            {
                C0 = P(ref sm, sdp.C0, sl, col), C1 = P(ref sm, sdp.C1, sl, col + 16), C2 = P(ref sm, sdp.C2, sl, col + 32), C3 = P(ref sm, sdp.C3, sl, col + 48),
                C4 = P(ref sm, sdp.C4, sl, col + 64), C5 = P(ref sm, sdp.C5, sl, col + 80), C6 = P(ref sm, sdp.C6, sl, col + 96), C7 = P(ref sm, sdp.C7, sl, col + 112),
            };
            if (partial)
            {
                int qc = q0 + 2 * tq;
                pt = exact
                    ? new Acc64
                    {
                        C0 = MaskColumns(ref sm, pt.C0, kx, ky, qc, col, seq), C1 = MaskColumns(ref sm, pt.C1, kx, ky, qc + 8, col + 16, seq),
                        C2 = MaskColumns(ref sm, pt.C2, kx, ky, qc + 16, col + 32, seq), C3 = MaskColumns(ref sm, pt.C3, kx, ky, qc + 24, col + 48, seq),
                        C4 = MaskColumns(ref sm, pt.C4, kx, ky, qc + 32, col + 64, seq), C5 = MaskColumns(ref sm, pt.C5, kx, ky, qc + 40, col + 80, seq),
                        C6 = MaskColumns(ref sm, pt.C6, kx, ky, qc + 48, col + 96, seq), C7 = MaskColumns(ref sm, pt.C7, kx, ky, qc + 56, col + 112, seq),
                    }
                    : new Acc64
                    {
                        C0 = MaskColumnsPredicate(pt.C0, a.Mask, docs, kx, ky, qc, seq), C1 = MaskColumnsPredicate(pt.C1, a.Mask, docs, kx, ky, qc + 8, seq),
                        C2 = MaskColumnsPredicate(pt.C2, a.Mask, docs, kx, ky, qc + 16, seq), C3 = MaskColumnsPredicate(pt.C3, a.Mask, docs, kx, ky, qc + 24, seq),
                        C4 = MaskColumnsPredicate(pt.C4, a.Mask, docs, kx, ky, qc + 32, seq), C5 = MaskColumnsPredicate(pt.C5, a.Mask, docs, kx, ky, qc + 40, seq),
                        C6 = MaskColumnsPredicate(pt.C6, a.Mask, docs, kx, ky, qc + 48, seq), C7 = MaskColumnsPredicate(pt.C7, a.Mask, docs, kx, ky, qc + 56, seq),
                    };
            }
            int dcol = col + 2 * StepQ;
            var dst = new Acc64
            {
                C0 = Ds(ref sm, pt.C0, sdp.C8, dcol), C1 = Ds(ref sm, pt.C1, sdp.C9, dcol + 16), C2 = Ds(ref sm, pt.C2, sdp.C10, dcol + 32), C3 = Ds(ref sm, pt.C3, sdp.C11, dcol + 48),
                C4 = Ds(ref sm, pt.C4, sdp.C12, dcol + 64), C5 = Ds(ref sm, pt.C5, sdp.C13, dcol + 80), C6 = Ds(ref sm, pt.C6, sdp.C14, dcol + 96), C7 = Ds(ref sm, pt.C7, sdp.C15, dcol + 112),
            };
            var dsFragments = Pack(dst);
            // dSᵀ for the next step's dQ (the fence before that step's barrier makes it visible to the MMAs).
            StoreDs(ref sm, dsFragments, dsAt + (n & 1) * DsTile, g);
            // dV += Pᵀ·dO and dK += dSᵀ·Q in one group: both need only this warpgroup's registers.
            var dvk = WG.MmaRN2(Pack(pt), dsFragments, ref sm, BwdDO + buffer, BwdQ + buffer, StepRegion, 4, dv, dk);
            dv = dvk.A;
            dk = dvk.B;
            if (n + 1 < steps)
            {
                int next = BwdValues + ((n + 1) & 1) * 2 * StepValues;
                TC.StoreShared32(ref sm, next + 2 * tid, staged0);
                if (tid < StepValues - BackwardThreads) TC.StoreShared32(ref sm, next + 2 * (tid + BackwardThreads), staged1);
            }
        }
        if (steps > 0)
        {
            WG.FenceProxyAsync();
            Group.Barrier();
            AddDq(a, ref sm, BwdDS + ((steps - 1) & 1) * DsTile, wg, warp, lane, g, tq, lastQ0, dqRows + 2 * lastH, seq);
        }
        var dk32 = a.DK.Cast<uint>();
        var dv32 = a.DV.Cast<uint>();
        long kvStride = (long)a.KvHeads * HeadDim;
        if (kx < seq)
        {
            long at = ((rowTok + kx) * kvStride + kvHead + 2 * tq) >> 1;
            StoreRow(dk32, at, dk, a.Scale);
            StoreRow(dv32, at, dv, 1f);
        }
        if (ky < seq)
        {
            long at = ((rowTok + ky) * kvStride + kvHead + 2 * tq) >> 1;
            StoreRow(dk32, at, SecondRow(dk), a.Scale);
            StoreRow(dv32, at, SecondRow(dv), 1f);
        }
        // The group's shared memory must outlive the bulk reductions' reads of it; their writes complete with the grid.
        WG.BulkWaitRead();
    }

    /// <summary>
    /// One step's dQ (64 queries × this warpgroup's 64 dims) = dS·K from its dSᵀ at <paramref name="ds"/> (dS M-major, K
    /// N-major), added to the fp32 accumulator for the step's queries <paramref name="q0"/>.. of the (row, head) whose
    /// first half-piece is <paramref name="piece"/>: each warp stages its 16 rows in shared memory in the accumulator's
    /// order (<see cref="FlashKernels.SwizzledDqIndex"/>: row r's chunk j at chunk j ⊕ (r mod 8), and r mod 8 = g for both
    /// of a thread's rows) and one lane adds the 16 rows (4 KB) with one bulk reduction, which the copy engine carries out
    /// while the warp goes on (its staging area is reused a step later, after <see cref="WarpgroupMma.BulkWaitRead"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddDq<TMask>(in FlashBackwardArgs<TMask> a, ref ushort sm, int ds, int wg, int warp, int lane, int g, int tq, int q0, long piece,
        int seq) where TMask : struct, IAttentionMask
    {
        var dq = WG.MmaMN64(ref sm, ds, Region, BwdK + Region * wg, Region, 8, default, false);
        int stage = BwdDq + (4 * wg + warp) * DqWarp;
        WG.BulkWaitRead();
        Warp.Barrier();
        StageRow(ref sm, stage + g * DqRow + 4 * tq, dq, false, g);
        StageRow(ref sm, stage + (g + 8) * DqRow + 4 * tq, dq, true, g);
        WG.FenceProxyAsync();
        Warp.Barrier();
        int first = q0 + 16 * warp, rows = seq - first < 16 ? seq - first : 16;
        if (lane == 0 && rows > 0) WG.BulkReduceAdd(ref a.DQ[((piece + wg) * seq + first) * 64], ref sm, stage, 256 * rows);
    }

    /// <summary>One row of a 64 × 64 accumulator (<paramref name="second"/>: fields Z, W) as floats at <paramref name="at"/>, chunk j (columns 8j + 2tq, + 1) at chunk j ⊕ <paramref name="swizzle"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StageRow(ref ushort sm, int at, Acc64 acc, bool second, int swizzle)
    {
        StagePair(ref sm, at + 16 * swizzle, acc.C0, second); StagePair(ref sm, at + 16 * (1 ^ swizzle), acc.C1, second);
        StagePair(ref sm, at + 16 * (2 ^ swizzle), acc.C2, second); StagePair(ref sm, at + 16 * (3 ^ swizzle), acc.C3, second);
        StagePair(ref sm, at + 16 * (4 ^ swizzle), acc.C4, second); StagePair(ref sm, at + 16 * (5 ^ swizzle), acc.C5, second);
        StagePair(ref sm, at + 16 * (6 ^ swizzle), acc.C6, second); StagePair(ref sm, at + 16 * (7 ^ swizzle), acc.C7, second);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StagePair(ref ushort sm, int at, F4 c, bool second) => WG.StoreShared64(ref sm, at, second ? c.Z : c.X, second ? c.W : c.Y);

    /// <summary>
    /// One staged value of query <paramref name="q"/> (head <paramref name="h"/>): <paramref name="kind"/> 0 the log-sum-exp
    /// in log2 units, 1 Δ, 2–5 the bounds of its key spans from the precomputed table (one load each, no dependent chain).
    /// A query past the end reads the last one (its pairs are masked).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint StepValue<TMask>(in FlashBackwardArgs<TMask> a, int row, int h, int q, int kind) where TMask : struct, IAttentionMask
    {
        int qc = q < a.Seq ? q : a.Seq - 1;
        if (kind >= 2) return (uint)a.Spans[((long)row * 4 + kind - 2) * a.Seq + qc];
        long at = ((long)row * a.Heads + h) * a.Seq + qc;
        return kind == 0 ? Interop.FloatAsInt(a.Lse[at] * 1.4426950408889634f) : Interop.FloatAsInt(a.Delta[at]);
    }

    /// <summary>
    /// Thread 0's loads of one step's Q and dO tiles (queries <paramref name="q0"/>.. of head <paramref name="h"/>, two
    /// 64-column boxes each; past-the-end rows arrive as zeros) into <paramref name="buffer"/>, announced on <paramref name="barrier"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void IssueStep<TMask>(in FlashBackwardArgs<TMask> a, ref ushort sm, int buffer, int barrier, int h, int q0, int row)
        where TMask : struct, IAttentionMask
    {
        Tma.ExpectBytes(ref sm, barrier, 4 * TensorMaps.BoxBytes);
        LoadRows(ref sm, BwdQ + buffer, StepRegion, barrier, ref a.QMap[0], h, q0, row);
        LoadRows(ref sm, BwdDO + buffer, StepRegion, barrier, ref a.DOMap[0], h, q0, row);
    }

    /// <summary>Pᵀ of one chunk: columns (queries) whose log2 LSE are the step values at <paramref name="at"/> and <paramref name="at"/> + 2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static F4 P(ref ushort sm, F4 s, float sl, int at)
    {
        float l0 = Interop.IntAsFloat(TC.LoadShared32(ref sm, at)), l1 = Interop.IntAsFloat(TC.LoadShared32(ref sm, at + 2));
        return new F4 { X = TC.Exp2(s.X * sl - l0), Y = TC.Exp2(s.Y * sl - l1), Z = TC.Exp2(s.Z * sl - l0), W = TC.Exp2(s.W * sl - l1) };
    }

    /// <summary>dSᵀ of one chunk: Pᵀ ∘ (dPᵀ − Δ(q)), Δ at <paramref name="at"/> and <paramref name="at"/> + 2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static F4 Ds(ref ushort sm, F4 p, F4 dp, int at)
    {
        float d0 = Interop.IntAsFloat(TC.LoadShared32(ref sm, at)), d1 = Interop.IntAsFloat(TC.LoadShared32(ref sm, at + 2));
        return new F4 { X = p.X * (dp.X - d0), Y = p.Y * (dp.Y - d1), Z = p.Z * (dp.Z - d0), W = p.W * (dp.W - d1) };
    }

    /// <summary>Pᵀ of one chunk with pairs outside the queries' spans (whose bounds are step values 2–5) or past the end set to 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static F4 MaskColumns(ref ushort sm, F4 p, int kx, int ky, int q, int at, int seq)
    {
        int lo0 = (int)TC.LoadShared32(ref sm, at + 4 * StepQ), hi0 = (int)TC.LoadShared32(ref sm, at + 6 * StepQ);
        int lo1 = (int)TC.LoadShared32(ref sm, at + 8 * StepQ), hi1 = (int)TC.LoadShared32(ref sm, at + 10 * StepQ);
        int mo0 = (int)TC.LoadShared32(ref sm, at + 4 * StepQ + 2), mi0 = (int)TC.LoadShared32(ref sm, at + 6 * StepQ + 2);
        int mo1 = (int)TC.LoadShared32(ref sm, at + 8 * StepQ + 2), mi1 = (int)TC.LoadShared32(ref sm, at + 10 * StepQ + 2);
        bool q0In = q < seq, q1In = q + 1 < seq, xIn = kx < seq, yIn = ky < seq;
        return new F4
        {
            X = q0In & xIn & RowSpans.Contains(kx, lo0, hi0, lo1, hi1) ? p.X : 0f,
            Y = q1In & xIn & RowSpans.Contains(kx, mo0, mi0, mo1, mi1) ? p.Y : 0f,
            Z = q0In & yIn & RowSpans.Contains(ky, lo0, hi0, lo1, hi1) ? p.Z : 0f,
            W = q1In & yIn & RowSpans.Contains(ky, mo0, mi0, mo1, mi1) ? p.W : 0f,
        };
    }

    /// <summary>As <see cref="MaskColumns"/>, evaluating the mask's predicate (masks without spans).</summary>
    private static F4 MaskColumnsPredicate<TMask, TDocs>(F4 p, TMask mask, TDocs docs, int kx, int ky, int q, int seq)
        where TMask : struct, IAttentionMask where TDocs : struct, IDocumentBounds
    {
        bool q0In = q < seq, q1In = q + 1 < seq, xIn = kx < seq, yIn = ky < seq;
        int dq0 = docs.IndexOf(q0In ? q : seq - 1), dq1 = docs.IndexOf(q1In ? q + 1 : seq - 1);
        int dx = docs.IndexOf(xIn ? kx : seq - 1), dy = docs.IndexOf(yIn ? ky : seq - 1);
        return new F4
        {
            X = q0In && xIn && mask.Allows(docs, q, kx, dq0, dx) ? p.X : 0f,
            Y = q1In && xIn && mask.Allows(docs, q + 1, kx, dq1, dx) ? p.Y : 0f,
            Z = q0In && yIn && mask.Allows(docs, q, ky, dq0, dy) ? p.Z : 0f,
            W = q1In && yIn && mask.Allows(docs, q + 1, ky, dq1, dy) ? p.W : 0f,
        };
    }

    /// <summary>Four A fragments (bf16, queries 16s..16s+15) of a 64 × 64 accumulator.</summary>
    private static U4x8 Pack(Acc64 s) => new() { K0 = Pack(s.C0, s.C1), K1 = Pack(s.C2, s.C3), K2 = Pack(s.C4, s.C5), K3 = Pack(s.C6, s.C7) };

    /// <summary>
    /// dSᵀ (bf16) into the swizzled [128 keys][64 queries] tile: this thread's rows at <paramref name="at"/> and + 8 rows,
    /// chunk j at ((j ⊕ g)·8); fragment s holds chunks 2s (X: first row, Y: second) and 2s + 1 (Z, W).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreDs(ref ushort sm, U4x8 f, int at, int g)
    {
        StoreDs(ref sm, f.K0, at, g, 0); StoreDs(ref sm, f.K1, at, g, 2);
        StoreDs(ref sm, f.K2, at, g, 4); StoreDs(ref sm, f.K3, at, g, 6);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreDs(ref ushort sm, U4 f, int at, int g, int chunk)
    {
        int c0 = (chunk ^ g) << 3, c1 = ((chunk + 1) ^ g) << 3;
        TC.StoreShared32(ref sm, at + c0, f.X);
        TC.StoreShared32(ref sm, at + 512 + c0, f.Y);
        TC.StoreShared32(ref sm, at + c1, f.Z);
        TC.StoreShared32(ref sm, at + 512 + c1, f.W);
    }

    /// <summary>
    /// Thread 0's loads of one step's two key tiles <paramref name="tileA"/> and <paramref name="tileB"/> (−1: none) of K
    /// and V into <paramref name="buffer"/> (rows 0–63 and 64–127, each as two 64-column boxes), announced on
    /// <paramref name="barrier"/>. A missing second tile loads the tokens past the end: zeros, masked as such.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void IssueKeys<TMask>(in FlashForwardArgs<TMask> a, ref ushort sm, int buffer, int barrier, int tileA, int tileB, int kvh, int row)
        where TMask : struct, IAttentionMask
    {
        int kA = tileA * FlashKernels.Tile, kB = tileB >= 0 ? tileB * FlashKernels.Tile : a.Seq;
        Tma.ExpectBytes(ref sm, barrier, 8 * TensorMaps.BoxBytes);
        LoadTile(ref sm, KBuffers + buffer, barrier, ref a.KMap[0], kvh, kA, kB, row);
        LoadTile(ref sm, VBuffers + buffer, barrier, ref a.VMap[0], kvh, kA, kB, row);
    }

    /// <summary>
    /// Thread 0's initialization of three load barriers at <paramref name="first"/> (two buffers' and the tiles loaded
    /// once), then the group barrier that makes them visible before any thread waits or any load is issued.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InitBarriers(ref ushort sm, int first, int tid)
    {
        if (tid == 0)
        {
            Tma.InitBarrier(ref sm, first);
            Tma.InitBarrier(ref sm, first + Tma.BarrierElements);
            Tma.InitBarrier(ref sm, first + 2 * Tma.BarrierElements);
            Tma.FenceBarrierInit();
        }
        Group.Barrier();
    }

    /// <summary>
    /// Loads of a 128-row tile of the swizzled layout at <paramref name="element"/> (64-column blocks <see cref="Region"/>
    /// apart): rows 0–63 from tokens <paramref name="tokenA"/>.., rows 64–127 from <paramref name="tokenB"/>.., head
    /// <paramref name="head"/> of batch row <paramref name="row"/>, completing on <paramref name="barrier"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadTile(ref ushort sm, int element, int barrier, ref ulong map, int head, int tokenA, int tokenB, int row)
    {
        LoadRows(ref sm, element, Region, barrier, ref map, head, tokenA, row);
        LoadRows(ref sm, element + 64 * 64, Region, barrier, ref map, head, tokenB, row);
    }

    /// <summary>Loads of 64 rows (tokens <paramref name="token"/>..) × 128 columns as two boxes, their 64-column blocks <paramref name="region"/> elements apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadRows(ref ushort sm, int element, int region, int barrier, ref ulong map, int head, int token, int row)
    {
        Tma.Load(ref sm, element, barrier, ref map, 0, head, token, row);
        Tma.Load(ref sm, element + region, barrier, ref map, 64, head, token, row);
    }

    /// <summary>Waits until the phase of parity <paramref name="parity"/> of the barrier at <paramref name="barrier"/> has completed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Wait(ref ushort sm, int barrier, int parity)
    {
        while (Tma.TryWait(ref sm, barrier, parity) == 0) { }
    }

    // ---- The accumulator, chunk by chunk (ILGPU does not unroll loops; each helper is straight-line) ----------------

    /// <summary>Scores of keys outside the rows' spans (or past the end) to −∞; chunk j's first key is <paramref name="kA"/> + 8j (j &lt; 8) or <paramref name="kB"/> + 8(j − 8).</summary>
    private static Acc128 MaskSpans(Acc128 s, int kA, int kB, int seq, RowSpans ra, RowSpans rb) => new()
    {
        C0 = MaskSpans(s.C0, kA, seq, ra, rb), C1 = MaskSpans(s.C1, kA + 8, seq, ra, rb), C2 = MaskSpans(s.C2, kA + 16, seq, ra, rb), C3 = MaskSpans(s.C3, kA + 24, seq, ra, rb),
        C4 = MaskSpans(s.C4, kA + 32, seq, ra, rb), C5 = MaskSpans(s.C5, kA + 40, seq, ra, rb), C6 = MaskSpans(s.C6, kA + 48, seq, ra, rb), C7 = MaskSpans(s.C7, kA + 56, seq, ra, rb),
        C8 = MaskSpans(s.C8, kB, seq, ra, rb), C9 = MaskSpans(s.C9, kB + 8, seq, ra, rb), C10 = MaskSpans(s.C10, kB + 16, seq, ra, rb), C11 = MaskSpans(s.C11, kB + 24, seq, ra, rb),
        C12 = MaskSpans(s.C12, kB + 32, seq, ra, rb), C13 = MaskSpans(s.C13, kB + 40, seq, ra, rb), C14 = MaskSpans(s.C14, kB + 48, seq, ra, rb), C15 = MaskSpans(s.C15, kB + 56, seq, ra, rb),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static F4 MaskSpans(F4 c, int k, int seq, RowSpans ra, RowSpans rb) => new()
    {
        X = k < seq & RowSpans.Contains(k, ra.Lo0, ra.Hi0, ra.Lo1, ra.Hi1) ? c.X : float.NegativeInfinity,
        Y = k + 1 < seq & RowSpans.Contains(k + 1, ra.Lo0, ra.Hi0, ra.Lo1, ra.Hi1) ? c.Y : float.NegativeInfinity,
        Z = k < seq & RowSpans.Contains(k, rb.Lo0, rb.Hi0, rb.Lo1, rb.Hi1) ? c.Z : float.NegativeInfinity,
        W = k + 1 < seq & RowSpans.Contains(k + 1, rb.Lo0, rb.Hi0, rb.Lo1, rb.Hi1) ? c.W : float.NegativeInfinity,
    };

    /// <summary>As <see cref="MaskSpans(Acc128, int, int, int, RowSpans, RowSpans)"/>, evaluating the mask's predicate (masks without spans).</summary>
    private static Acc128 MaskPredicate<TMask, TDocs>(Acc128 s, TMask mask, TDocs docs, int qa, int qb, int da, int db, int kA, int kB, int seq)
        where TMask : struct, IAttentionMask where TDocs : struct, IDocumentBounds => new()
    {
        C0 = MaskPredicate(s.C0, mask, docs, qa, qb, da, db, kA, seq), C1 = MaskPredicate(s.C1, mask, docs, qa, qb, da, db, kA + 8, seq),
        C2 = MaskPredicate(s.C2, mask, docs, qa, qb, da, db, kA + 16, seq), C3 = MaskPredicate(s.C3, mask, docs, qa, qb, da, db, kA + 24, seq),
        C4 = MaskPredicate(s.C4, mask, docs, qa, qb, da, db, kA + 32, seq), C5 = MaskPredicate(s.C5, mask, docs, qa, qb, da, db, kA + 40, seq),
        C6 = MaskPredicate(s.C6, mask, docs, qa, qb, da, db, kA + 48, seq), C7 = MaskPredicate(s.C7, mask, docs, qa, qb, da, db, kA + 56, seq),
        C8 = MaskPredicate(s.C8, mask, docs, qa, qb, da, db, kB, seq), C9 = MaskPredicate(s.C9, mask, docs, qa, qb, da, db, kB + 8, seq),
        C10 = MaskPredicate(s.C10, mask, docs, qa, qb, da, db, kB + 16, seq), C11 = MaskPredicate(s.C11, mask, docs, qa, qb, da, db, kB + 24, seq),
        C12 = MaskPredicate(s.C12, mask, docs, qa, qb, da, db, kB + 32, seq), C13 = MaskPredicate(s.C13, mask, docs, qa, qb, da, db, kB + 40, seq),
        C14 = MaskPredicate(s.C14, mask, docs, qa, qb, da, db, kB + 48, seq), C15 = MaskPredicate(s.C15, mask, docs, qa, qb, da, db, kB + 56, seq),
    };

    private static F4 MaskPredicate<TMask, TDocs>(F4 c, TMask mask, TDocs docs, int qa, int qb, int da, int db, int k, int seq)
        where TMask : struct, IAttentionMask where TDocs : struct, IDocumentBounds
    {
        bool in0 = k < seq, in1 = k + 1 < seq;
        int d0 = docs.IndexOf(in0 ? k : seq - 1), d1 = docs.IndexOf(in1 ? k + 1 : seq - 1);
        return new F4
        {
            X = in0 && mask.Allows(docs, qa, k, da, d0) ? c.X : float.NegativeInfinity,
            Y = in1 && mask.Allows(docs, qa, k + 1, da, d1) ? c.Y : float.NegativeInfinity,
            Z = in0 && mask.Allows(docs, qb, k, db, d0) ? c.Z : float.NegativeInfinity,
            W = in1 && mask.Allows(docs, qb, k + 1, db, d1) ? c.W : float.NegativeInfinity,
        };
    }

    /// <summary>The largest score of this thread's first row (fields X, Y).</summary>
    private static float Max0(Acc128 s) =>
        MathF.Max(MathF.Max(MathF.Max(MathF.Max(Max0(s.C0), Max0(s.C1)), MathF.Max(Max0(s.C2), Max0(s.C3))), MathF.Max(MathF.Max(Max0(s.C4), Max0(s.C5)), MathF.Max(Max0(s.C6), Max0(s.C7)))),
                  MathF.Max(MathF.Max(MathF.Max(Max0(s.C8), Max0(s.C9)), MathF.Max(Max0(s.C10), Max0(s.C11))), MathF.Max(MathF.Max(Max0(s.C12), Max0(s.C13)), MathF.Max(Max0(s.C14), Max0(s.C15)))));

    /// <summary>The largest score of this thread's second row (fields Z, W).</summary>
    private static float Max1(Acc128 s) =>
        MathF.Max(MathF.Max(MathF.Max(MathF.Max(Max1(s.C0), Max1(s.C1)), MathF.Max(Max1(s.C2), Max1(s.C3))), MathF.Max(MathF.Max(Max1(s.C4), Max1(s.C5)), MathF.Max(Max1(s.C6), Max1(s.C7)))),
                  MathF.Max(MathF.Max(MathF.Max(Max1(s.C8), Max1(s.C9)), MathF.Max(Max1(s.C10), Max1(s.C11))), MathF.Max(MathF.Max(Max1(s.C12), Max1(s.C13)), MathF.Max(Max1(s.C14), Max1(s.C15)))));

    private static float Max0(F4 c) => MathF.Max(c.X, c.Y);
    private static float Max1(F4 c) => MathF.Max(c.Z, c.W);

    private static float Sum0(Acc128 s) =>
        ((Sum0(s.C0) + Sum0(s.C1)) + (Sum0(s.C2) + Sum0(s.C3))) + ((Sum0(s.C4) + Sum0(s.C5)) + (Sum0(s.C6) + Sum0(s.C7))) +
        (((Sum0(s.C8) + Sum0(s.C9)) + (Sum0(s.C10) + Sum0(s.C11))) + ((Sum0(s.C12) + Sum0(s.C13)) + (Sum0(s.C14) + Sum0(s.C15))));

    private static float Sum1(Acc128 s) =>
        ((Sum1(s.C0) + Sum1(s.C1)) + (Sum1(s.C2) + Sum1(s.C3))) + ((Sum1(s.C4) + Sum1(s.C5)) + (Sum1(s.C6) + Sum1(s.C7))) +
        (((Sum1(s.C8) + Sum1(s.C9)) + (Sum1(s.C10) + Sum1(s.C11))) + ((Sum1(s.C12) + Sum1(s.C13)) + (Sum1(s.C14) + Sum1(s.C15))));

    private static float Sum0(F4 c) => c.X + c.Y;
    private static float Sum1(F4 c) => c.Z + c.W;

    /// <summary>2^(s·scale − u) per row (the softmax numerators).</summary>
    private static Acc128 Exp(Acc128 s, float sl, float u0, float u1) => new()
    {
        C0 = Exp(s.C0, sl, u0, u1), C1 = Exp(s.C1, sl, u0, u1), C2 = Exp(s.C2, sl, u0, u1), C3 = Exp(s.C3, sl, u0, u1),
        C4 = Exp(s.C4, sl, u0, u1), C5 = Exp(s.C5, sl, u0, u1), C6 = Exp(s.C6, sl, u0, u1), C7 = Exp(s.C7, sl, u0, u1),
        C8 = Exp(s.C8, sl, u0, u1), C9 = Exp(s.C9, sl, u0, u1), C10 = Exp(s.C10, sl, u0, u1), C11 = Exp(s.C11, sl, u0, u1),
        C12 = Exp(s.C12, sl, u0, u1), C13 = Exp(s.C13, sl, u0, u1), C14 = Exp(s.C14, sl, u0, u1), C15 = Exp(s.C15, sl, u0, u1),
    };

    private static F4 Exp(F4 c, float sl, float u0, float u1) =>
        new() { X = TC.Exp2(c.X * sl - u0), Y = TC.Exp2(c.Y * sl - u0), Z = TC.Exp2(c.Z * sl - u1), W = TC.Exp2(c.W * sl - u1) };

    /// <summary>Each row times its factor (the rescale of O when the running maximum grows).</summary>
    private static Acc128 Scale(Acc128 o, float c0, float c1) => new()
    {
        C0 = Scale(o.C0, c0, c1), C1 = Scale(o.C1, c0, c1), C2 = Scale(o.C2, c0, c1), C3 = Scale(o.C3, c0, c1),
        C4 = Scale(o.C4, c0, c1), C5 = Scale(o.C5, c0, c1), C6 = Scale(o.C6, c0, c1), C7 = Scale(o.C7, c0, c1),
        C8 = Scale(o.C8, c0, c1), C9 = Scale(o.C9, c0, c1), C10 = Scale(o.C10, c0, c1), C11 = Scale(o.C11, c0, c1),
        C12 = Scale(o.C12, c0, c1), C13 = Scale(o.C13, c0, c1), C14 = Scale(o.C14, c0, c1), C15 = Scale(o.C15, c0, c1),
    };

    private static F4 Scale(F4 c, float c0, float c1) => new() { X = c.X * c0, Y = c.Y * c0, Z = c.Z * c1, W = c.W * c1 };

    /// <summary>P as eight A fragments (bf16): fragment s from accumulator chunks 2s (columns 16s..16s+7) and 2s + 1.</summary>
    private static U4x8 Pack(Acc128 s) => new()
    {
        K0 = Pack(s.C0, s.C1), K1 = Pack(s.C2, s.C3), K2 = Pack(s.C4, s.C5), K3 = Pack(s.C6, s.C7),
        K4 = Pack(s.C8, s.C9), K5 = Pack(s.C10, s.C11), K6 = Pack(s.C12, s.C13), K7 = Pack(s.C14, s.C15),
    };

    private static U4 Pack(F4 lo, F4 hi) => new() { X = TC.Pack(lo.X, lo.Y), Y = TC.Pack(lo.Z, lo.W), Z = TC.Pack(hi.X, hi.Y), W = TC.Pack(hi.Z, hi.W) };

    /// <summary>The thread's second row moved into the X, Y fields.</summary>
    private static Acc128 SecondRow(Acc128 o) => new()
    {
        C0 = Low(o.C0), C1 = Low(o.C1), C2 = Low(o.C2), C3 = Low(o.C3), C4 = Low(o.C4), C5 = Low(o.C5), C6 = Low(o.C6), C7 = Low(o.C7),
        C8 = Low(o.C8), C9 = Low(o.C9), C10 = Low(o.C10), C11 = Low(o.C11), C12 = Low(o.C12), C13 = Low(o.C13), C14 = Low(o.C14), C15 = Low(o.C15),
    };

    private static F4 Low(F4 c) => new() { X = c.Z, Y = c.W };

    /// <summary>Fields X, Y of every chunk times <paramref name="inv"/>, as bf16 pairs at <paramref name="at"/> + 4j (columns 8j + 2tq).</summary>
    private static void StoreRow(ArrayView<uint> o32, long at, Acc128 o, float inv)
    {
        o32[at] = TC.Pack(o.C0.X * inv, o.C0.Y * inv); o32[at + 4] = TC.Pack(o.C1.X * inv, o.C1.Y * inv);
        o32[at + 8] = TC.Pack(o.C2.X * inv, o.C2.Y * inv); o32[at + 12] = TC.Pack(o.C3.X * inv, o.C3.Y * inv);
        o32[at + 16] = TC.Pack(o.C4.X * inv, o.C4.Y * inv); o32[at + 20] = TC.Pack(o.C5.X * inv, o.C5.Y * inv);
        o32[at + 24] = TC.Pack(o.C6.X * inv, o.C6.Y * inv); o32[at + 28] = TC.Pack(o.C7.X * inv, o.C7.Y * inv);
        o32[at + 32] = TC.Pack(o.C8.X * inv, o.C8.Y * inv); o32[at + 36] = TC.Pack(o.C9.X * inv, o.C9.Y * inv);
        o32[at + 40] = TC.Pack(o.C10.X * inv, o.C10.Y * inv); o32[at + 44] = TC.Pack(o.C11.X * inv, o.C11.Y * inv);
        o32[at + 48] = TC.Pack(o.C12.X * inv, o.C12.Y * inv); o32[at + 52] = TC.Pack(o.C13.X * inv, o.C13.Y * inv);
        o32[at + 56] = TC.Pack(o.C14.X * inv, o.C14.Y * inv); o32[at + 60] = TC.Pack(o.C15.X * inv, o.C15.Y * inv);
    }
}
