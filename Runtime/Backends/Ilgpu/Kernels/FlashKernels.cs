using ILGPU;
using ModelGen.Masks;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>Asks ModelGen's source generator for unrolled flash-attention kernels of the listed head dimensions.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class GenerateFlashAttentionAttribute(params int[] headDims) : Attribute
{
    /// <summary>The head dimensions.</summary>
    public int[] HeadDims { get; } = headDims;
}

/// <summary>Arguments of the generated flash forward kernels. bf16 tensors are token-major: element (t, h, d) at Offset + t·Stride + h·D + d.</summary>
public struct FlashForwardArgs<TMask> where TMask : struct, IAttentionMask
{
    /// <summary>Queries, keys, values (bf16 bits) and the output [tokens, Heads·D].</summary>
    public ArrayView<ushort> Q, K, V, O;
    /// <summary>Natural log-sum-exp per (row, head, query) [rows, Heads, Seq]; empty = not written.</summary>
    public ArrayView<float> Lse;
    /// <summary>Element offsets and token strides (multiples of 8: rows are copied in 16-byte chunks).</summary>
    public long QOffset, KOffset, VOffset, OOffset, QStride, KStride, VStride, OStride;
    /// <summary>Shape; a query block is <see cref="FlashKernels.ForwardQueries(int)"/> queries (adjacent tiles of the tile map).</summary>
    public int Seq, Heads, KvHeads, QueryBlocks, KeyTiles;
    /// <summary>Softmax scale × log2(e).</summary>
    public float ScaleLog2;
    /// <summary>
    /// Key tiles that each query block reaches [rows, QueryBlocks, KeyTiles] as kt·4 + kind (Full only when the tile is
    /// full for every query tile of the block), and their counts [rows, QueryBlocks].
    /// </summary>
    public ArrayView<int> Lists, Counts;
    /// <summary>Document bounds per row.</summary>
    public DeviceLayouts Layouts;
    /// <summary>The mask (evaluated only in partial tiles).</summary>
    public TMask Mask;
}

/// <summary>Arguments of the generated flash backward kernels.</summary>
public struct FlashBackwardArgs<TMask> where TMask : struct, IAttentionMask
{
    /// <summary>Inputs of the forward pass and the output gradient dO (bf16 bits).</summary>
    public ArrayView<ushort> Q, K, V, DO;
    /// <summary>Log-sum-exp of the forward pass and Δ = rowsum(dO ∘ O), both [rows, Heads, Seq].</summary>
    public ArrayView<float> Lse, Delta;
    /// <summary>dQ accumulated in fp32 [tokens, Heads·D] (zeroed before the launch; scaled afterwards).</summary>
    public ArrayView<float> DQ;
    /// <summary>dK and dV [tokens, KvHeads·D] (bf16 bits).</summary>
    public ArrayView<ushort> DK, DV;
    /// <summary>Element offsets and token strides of Q, K, V and dO.</summary>
    public long QOffset, KOffset, VOffset, DOOffset, QStride, KStride, VStride, DOStride;
    /// <summary>Shape; a key block is <see cref="FlashKernels.BackwardKeys"/> keys (adjacent tiles of the tile map).</summary>
    public int Seq, Heads, KvHeads, QueryTiles, KeyBlocks;
    /// <summary>Softmax scale, and scale × log2(e).</summary>
    public float Scale, ScaleLog2;
    /// <summary>
    /// Query tiles that reach each key block [rows, KeyBlocks, QueryTiles] as qt·4 + kind (Full only when every tile of
    /// the block is full), and their counts [rows, KeyBlocks].
    /// </summary>
    public ArrayView<int> Lists, Counts;
    /// <summary>Document bounds per row.</summary>
    public DeviceLayouts Layouts;
    /// <summary>The mask.</summary>
    public TMask Mask;
    /// <summary>
    /// Each query's key spans [rows, 4, Seq] (Lo0, Hi0, Lo1, Hi1) from <see cref="FlashKernels.TokenSpans{TMask}"/>, read by
    /// the warpgroup-MMA kernel with one load each; empty for the mma.sync kernels, which evaluate them per step.
    /// </summary>
    public ArrayView<int> Spans;
}

/// <summary>Arguments of <see cref="FlashKernels.TokenSpans{TMask}"/>.</summary>
public struct TokenSpanArgs<TMask> where TMask : struct, IAttentionMask
{
    /// <summary>Document bounds per row.</summary>
    public DeviceLayouts Layouts;
    /// <summary>The mask.</summary>
    public TMask Mask;
    /// <summary>Output [rows, 4, Seq].</summary>
    public ArrayView<int> Spans;
    /// <summary>Tokens per row.</summary>
    public int Seq;
}

/// <summary>Arguments of <see cref="FlashKernels.RowLists"/> and <see cref="FlashKernels.ColumnLists"/>.</summary>
public struct TileListArgs
{
    /// <summary>The tile map [rows, QueryTiles, KeyTiles].</summary>
    public ArrayView<byte> Tiles;
    /// <summary>Output lists and counts.</summary>
    public ArrayView<int> Lists, Counts;
    /// <summary>Tile counts.</summary>
    public int QueryTiles, KeyTiles;
    /// <summary>Adjacent key tiles per column of <see cref="FlashKernels.ColumnLists"/> (1 or more).</summary>
    public int KeyTilesPerBlock;
    /// <summary>Adjacent query tiles per row of <see cref="FlashKernels.RowLists"/> (1 or more).</summary>
    public int QueryTilesPerBlock;
}

/// <summary>Arguments of <see cref="FlashKernels.BackwardPrepare"/>.</summary>
public struct DeltaArgs
{
    /// <summary>Output and its gradient [tokens, Heads·D] (bf16 bits).</summary>
    public ArrayView<ushort> O, DO;
    /// <summary>Offsets and token strides (multiples of 4 elements).</summary>
    public long OOffset, OStride, DOOffset, DOStride;
    /// <summary>Δ [rows, Heads, Seq].</summary>
    public ArrayView<float> Delta;
    /// <summary>The fp32 dQ accumulator [tokens, Heads, D], cleared.</summary>
    public ArrayView<float> DQ;
    /// <summary>Shape.</summary>
    public int Tokens, Seq, Heads, HeadDim;
}

/// <summary>Arguments of <see cref="FlashKernels.ScaleToBf16"/>.</summary>
public struct ScaleArgs
{
    /// <summary>fp32 input.</summary>
    public ArrayView<float> Input;
    /// <summary>bf16 output.</summary>
    public ArrayView<ushort> Output;
    /// <summary>Factor.</summary>
    public float Scale;
}

/// <summary>
/// Flash attention on tensor cores: the forward and backward kernels, their tile size and shared-memory sizes are
/// generated per head dimension (see <c>ModelGen.Generators.Kernels.FlashKernelEmitter</c>); the small helpers around
/// them are written here.
/// </summary>
[GenerateFlashAttention(64, 128)]
public static partial class FlashKernels
{
    /// <summary>
    /// One warp per (row, block of <c>QueryTilesPerBlock</c> query tiles): the key tiles that reach the block, in order.
    /// Launch with rows × blocks × warp size threads.
    /// </summary>
    public static void RowLists(Index1D index, TileListArgs a) =>
        BlockLists(index, a, a.QueryTiles, a.KeyTiles, a.QueryTilesPerBlock, a.KeyTiles, 1);

    /// <summary>
    /// One warp per (row, block of <c>KeyTilesPerBlock</c> key tiles): the query tiles that reach the block, in order.
    /// Launch with rows × blocks × warp size threads.
    /// </summary>
    public static void ColumnLists(Index1D index, TileListArgs a) =>
        BlockLists(index, a, a.KeyTiles, a.QueryTiles, a.KeyTilesPerBlock, 1, a.KeyTiles);

    /// <summary>
    /// The list of one block of <paramref name="perBlock"/> adjacent tiles along one axis of the tile map
    /// (<paramref name="blockTiles"/> tiles, <paramref name="blockStride"/> apart in the map): the tiles of the other axis
    /// (<paramref name="listTiles"/>, <paramref name="listStride"/> apart) that reach the block, in order, each with the
    /// block's kind: Full when all its tiles are, Partial when they differ or any is. Lanes read consecutive tiles and
    /// place the non-empty ones by a warp prefix sum, so a 1024-tile row takes 32 steps instead of 1024.
    /// </summary>
    private static void BlockLists(int index, TileListArgs a, int blockTiles, int listTiles, int perBlock, int blockStride, int listStride)
    {
        int ws = Warp.WarpSize, lane = Warp.LaneIdx, block = index / ws;
        int blocks = (blockTiles + perBlock - 1) / perBlock;
        int row = block / blocks, bi = block - row * blocks;
        int first = bi * perBlock, last = Math.Min(blockTiles, first + perBlock);
        long list = (long)block * listTiles, map = (long)row * a.QueryTiles * a.KeyTiles;
        int n = 0;
        for (int t0 = 0; t0 < listTiles; t0 += ws)
        {
            int t = t0 + lane, kind = 0;
            if (t < listTiles)
            {
                long at = map + (long)t * listStride;
                kind = a.Tiles[at + (long)first * blockStride];
                for (int i = first + 1; i < last; i++)
                    if (a.Tiles[at + (long)i * blockStride] != kind) kind = (int)TileKind.Partial;
            }
            n = Append(a.Lists, list, n, t, kind, lane, ws);
        }
        if (lane == 0) a.Counts[block] = n;
    }

    /// <summary>
    /// Warp-collective: appends <c>tile·4 + kind</c> of every lane whose kind is not Empty to the list at
    /// <paramref name="list"/> + <paramref name="count"/>, in lane order; returns the new count (the same in every lane).
    /// </summary>
    private static int Append(ArrayView<int> lists, long list, int count, int tile, int kind, int lane, int warpSize)
    {
        int flag = kind != 0 ? 1 : 0, prefix = flag;
        for (int d = 1; d < warpSize; d <<= 1)
        {
            int up = Warp.ShuffleUp(prefix, d);
            if (lane >= d) prefix += up;
        }
        if (flag != 0) lists[list + count + prefix - 1] = tile * 4 + kind;
        return count + Warp.Shuffle(prefix, warpSize - 1);
    }

    /// <summary>Threads per group of <see cref="BackwardPrepare"/>: one warp per (token, head).</summary>
    public const int PrepareThreads = 256;

    /// <summary>
    /// Before the backward kernel, one warp per (token, head): Δ = Σ_d dO·O in fp32 and the row of the fp32 dQ
    /// accumulator cleared. Lane l reads elements 4l..4l+3 of each 128-element block (8-byte loads, so a warp reads a row
    /// in one coalesced request) and a warp sum finishes Δ.
    /// </summary>
    public static void BackwardPrepare(DeltaArgs a)
    {
        int lane = Group.IdxX & 31;
        long rowIndex = (long)Grid.IdxX * (PrepareThreads / 32) + (Group.IdxX >> 5);
        if (rowIndex >= (long)a.Tokens * a.Heads) return;                   // whole warps leave together
        long token = rowIndex / a.Heads;
        int h = (int)(rowIndex - token * a.Heads);
        var o = a.O.Cast<ulong>();
        var dO = a.DO.Cast<ulong>();
        var dq = a.DQ.Cast<ulong>();
        long oAt = a.OOffset + token * a.OStride + (long)h * a.HeadDim, gAt = a.DOOffset + token * a.DOStride + (long)h * a.HeadDim;
        float sum = 0f;
        for (int d = 4 * lane; d < a.HeadDim; d += 128)
        {
            ulong x = o[(oAt + d) >> 2], y = dO[(gAt + d) >> 2];
            sum += Bf16.ToFloat((ushort)x) * Bf16.ToFloat((ushort)y) + Bf16.ToFloat((ushort)(x >> 16)) * Bf16.ToFloat((ushort)(y >> 16))
                 + Bf16.ToFloat((ushort)(x >> 32)) * Bf16.ToFloat((ushort)(y >> 32)) + Bf16.ToFloat((ushort)(x >> 48)) * Bf16.ToFloat((ushort)(y >> 48));
            long at = (rowIndex * a.HeadDim + d) >> 1;
            dq[at] = 0UL;
            dq[at + 1] = 0UL;
        }
        for (int offset = 16; offset > 0; offset >>= 1) sum += Warp.ShuffleXor(sum, offset);
        long row = token / a.Seq;
        if (lane == 0) a.Delta[(row * a.Heads + h) * a.Seq + (token - row * a.Seq)] = sum;
    }

    /// <summary>
    /// One value the backward kernel stages in shared memory for query <paramref name="q"/> of head <paramref name="h"/>:
    /// <paramref name="kind"/> 0 is the log-sum-exp in log2 units, 1 is Δ, 2–5 the bounds of the query's key spans
    /// (<see cref="IAttentionMask.Spans"/>: Lo0, Hi0, Lo1, Hi1). A query past the end reads the last one (its pairs are masked).
    /// </summary>
    public static uint StepValue<TMask>(in FlashBackwardArgs<TMask> a, in DeviceDocuments docs, int row, int h, int q, int kind)
        where TMask : struct, IAttentionMask
    {
        int qc = q < a.Seq ? q : a.Seq - 1;
        long at = ((long)row * a.Heads + h) * a.Seq + qc;
        if (kind == 0) return Interop.FloatAsInt(a.Lse[at] * 1.4426950408889634f);
        if (kind == 1) return Interop.FloatAsInt(a.Delta[at]);
        var spans = a.Mask.Spans(docs, qc, docs.IndexOf(qc));
        return (uint)(kind == 2 ? spans.Lo0 : kind == 3 ? spans.Hi0 : kind == 4 ? spans.Lo1 : spans.Hi1);
    }

    /// <summary>One thread per (row, token): the token's key spans (<see cref="IAttentionMask.Spans"/>) as four ints, kind-major.</summary>
    public static void TokenSpans<TMask>(Index1D index, TokenSpanArgs<TMask> a) where TMask : struct, IAttentionMask
    {
        int row = index / a.Seq, q = index - row * a.Seq;
        var docs = a.Layouts.Row(row);
        var spans = a.Mask.Spans(docs, q, docs.IndexOf(q));
        long at = (long)row * 4 * a.Seq + q;
        a.Spans[at] = spans.Lo0;
        a.Spans[at + a.Seq] = spans.Hi0;
        a.Spans[at + 2L * a.Seq] = spans.Lo1;
        a.Spans[at + 3L * a.Seq] = spans.Hi1;
    }

    /// <summary>Output = bf16(Input × Scale).</summary>
    public static void ScaleToBf16(Index1D index, ScaleArgs a) => a.Output[index] = Bf16.FromFloat(a.Input[index] * a.Scale);
}
