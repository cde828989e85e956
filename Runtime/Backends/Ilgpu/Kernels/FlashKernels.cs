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
    /// <summary>
    /// The anchor key apart (warpgroup-MMA kernel): when positive, <see cref="Mask"/> and the lists are the intra-document
    /// part of an anchor mask, and each query q with anchor length ≤ q &lt; AnchorWindow starts its softmax from key 0.
    /// </summary>
    public int AnchorWindow;
    /// <summary>Anchor length per row (0 or 1), read when <see cref="AnchorWindow"/> is positive.</summary>
    public ArrayView<int> AnchorLengths;
    /// <summary>
    /// The warpgroup-MMA kernel's tensor maps of Q, K and V (<see cref="TensorMaps"/>, <see cref="TensorMaps.Words"/>
    /// words each), through which it loads its tiles; unused by the <c>mma.sync</c> kernels.
    /// </summary>
    public ArrayView<ulong> QMap, KMap, VMap;
}

/// <summary>Arguments of the generated flash backward kernels.</summary>
public struct FlashBackwardArgs<TMask> where TMask : struct, IAttentionMask
{
    /// <summary>Inputs of the forward pass and the output gradient dO (bf16 bits).</summary>
    public ArrayView<ushort> Q, K, V, DO;
    /// <summary>Log-sum-exp of the forward pass and Δ = rowsum(dO ∘ O), both [rows, Heads, Seq].</summary>
    public ArrayView<float> Lse, Delta;
    /// <summary>
    /// dQ accumulated in fp32: [tokens, Heads·D] for the <c>mma.sync</c> kernels, in the order of
    /// <see cref="FlashKernels.SwizzledDqIndex"/> for the warpgroup-MMA kernel (started before the launch, cleared or with
    /// the anchor pairs' terms; converted to bf16 afterwards).
    /// </summary>
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
    /// <summary>
    /// The warpgroup-MMA kernel's tensor maps of Q, K, V and dO (<see cref="TensorMaps"/>, <see cref="TensorMaps.Words"/>
    /// words each), through which it loads its tiles; unused by the <c>mma.sync</c> kernels.
    /// </summary>
    public ArrayView<ulong> QMap, KMap, VMap, DOMap;
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
    /// <summary>Shape of a swizzled input (<see cref="FlashKernels.SwizzledToBf16"/>).</summary>
    public int Seq, Heads, HeadDim;
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

    /// <summary>Threads per group of <see cref="BackwardPrepare"/>.</summary>
    public const int PrepareThreads = 256;

    /// <summary>(token, head) rows per group of <see cref="BackwardPrepare"/>: 32 per warp, eight at a time.</summary>
    public const int PrepareRows = 256;

    /// <summary>
    /// Before the backward kernel: Δ = Σ_d dO·O in fp32 per (token, head) row, and the fp32 dQ accumulator cleared (every
    /// element, so either of its orders). Eight lanes share a row (<see cref="RowChunks"/>), four rows at a time, and a
    /// warp loads two such sets before it uses either; rows past the end read the last one and write nothing.
    /// </summary>
    public static void BackwardPrepare(DeltaArgs a)
    {
        int lane = Group.IdxX & 31, warp = Group.IdxX >> 5;
        var (e0, e1, two) = RowChunks.Elements(lane, a.HeadDim);
        // Tokens × heads < 2^31 (checked by the caller): 32-bit row numbers and divisions.
        int rows = a.Tokens * a.Heads, first = Grid.IdxX * PrepareRows + 32 * warp + (lane >> 3);
        for (int t = 0; t < 32; t += 8)
        {
            int r0 = first + t, r1 = r0 + 4;
            int c0 = r0 < rows ? r0 : rows - 1, c1 = r1 < rows ? r1 : rows - 1;
            int t0 = c0 / a.Heads, t1 = c1 / a.Heads, h0 = c0 - t0 * a.Heads, h1 = c1 - t1 * a.Heads;
            var o0 = RowChunks.Load(a.O, RowAt(a, t0, h0, a.OOffset, a.OStride), e0, e1);
            var g0 = RowChunks.Load(a.DO, RowAt(a, t0, h0, a.DOOffset, a.DOStride), e0, e1);
            var o1 = RowChunks.Load(a.O, RowAt(a, t1, h1, a.OOffset, a.OStride), e0, e1);
            var g1 = RowChunks.Load(a.DO, RowAt(a, t1, h1, a.DOOffset, a.DOStride), e0, e1);
            float d0 = RowChunks.Sum8(RowChunks.Dot(g0, o0, two)), d1 = RowChunks.Sum8(RowChunks.Dot(g1, o1, two));
            DeltaRow(a, r0, rows, t0, h0, d0, e0, e1, two, lane);
            DeltaRow(a, r1, rows, t1, h1, d1, e0, e1, two, lane);
        }
    }

    /// <summary>Row <paramref name="r"/>'s Δ (from the first of its eight lanes) and its cleared accumulator chunks.</summary>
    private static void DeltaRow(in DeltaArgs a, int r, int rows, int token, int h, float delta, int e0, int e1, bool two, int lane)
    {
        if (r >= rows) return;
        int b = token / a.Seq;
        if ((lane & 7) == 0) a.Delta[((long)b * a.Heads + h) * a.Seq + (token - b * a.Seq)] = delta;
        long at = (long)r * a.HeadDim;
        TensorCore.StoreGlobal16(ref a.DQ[at + e0], default);
        TensorCore.StoreGlobal16(ref a.DQ[at + e0 + 4], default);
        if (two)
        {
            TensorCore.StoreGlobal16(ref a.DQ[at + e1], default);
            TensorCore.StoreGlobal16(ref a.DQ[at + e1 + 4], default);
        }
    }

    /// <summary>The first element of (<paramref name="token"/>, <paramref name="h"/>) in an operand at <paramref name="offset"/> with token stride <paramref name="stride"/>.</summary>
    private static long RowAt(in DeltaArgs a, int token, int h, long offset, long stride) => offset + token * stride + (long)h * a.HeadDim;

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

    /// <summary>Elements per thread of <see cref="ScaleToBf16"/>.</summary>
    public const int ScaleElements = 4;

    /// <summary>
    /// Where the warpgroup-MMA backward keeps element (row, head <paramref name="h"/>, query <paramref name="q"/>, dim
    /// <paramref name="d"/>) of its fp32 dQ accumulator: [rows, heads, D/64, seq, 64], so that a query's 64 dims of one half
    /// are contiguous and consecutive queries follow each other, with each 64-dim piece's eight 8-float chunks stored at
    /// chunk c ⊕ (q mod 8). A warp's 16 queries of a half are then one 4 KB block, which one bulk reduction adds from a
    /// staging area in the same order (the swizzle keeps the warp's staging writes free of bank conflicts).
    /// </summary>
    public static long SwizzledDqIndex(int row, int h, int q, int d, int heads, int seq, int headDim) =>
        ((((long)row * heads + h) * (headDim >> 6) + (d >> 6)) * seq + q) * 64 + ((((d >> 3) & 7) ^ (q & 7)) << 3) + (d & 7);

    /// <summary>Elements per thread of <see cref="SwizzledToBf16"/>.</summary>
    public const int SwizzledElements = 8;

    /// <summary>
    /// Output [tokens, Heads, D] = bf16(Input × Scale) from an accumulator in the order of <see cref="SwizzledDqIndex"/>:
    /// eight elements (one chunk) per thread, two 16-byte loads and one 16-byte store; consecutive threads write
    /// consecutive chunks and eight of them read one 256-byte piece.
    /// </summary>
    public static void SwizzledToBf16(Index1D index, ScaleArgs a)
    {
        int chunks = a.HeadDim >> 3, th = index / chunks, c = index - th * chunks, t = th / a.Heads, h = th - t * a.Heads;
        int row = t / a.Seq, q = t - row * a.Seq;
        long from = SwizzledDqIndex(row, h, q, 8 * c, a.Heads, a.Seq, a.HeadDim);
        ref ushort input = ref a.Input.Cast<ushort>()[0];
        U4 x = TensorCore.LoadGlobal16(ref input, 2 * from), y = TensorCore.LoadGlobal16(ref input, 2 * from + 8);
        // The packed bf16 pairs travel as the bits of four floats (a vector store moves bits unchanged).
        var packed = new F4
        {
            X = Interop.IntAsFloat(Pack(x.X, x.Y, a.Scale)), Y = Interop.IntAsFloat(Pack(x.Z, x.W, a.Scale)),
            Z = Interop.IntAsFloat(Pack(y.X, y.Y, a.Scale)), W = Interop.IntAsFloat(Pack(y.Z, y.W, a.Scale)),
        };
        TensorCore.StoreGlobal16(ref a.Output.Cast<float>()[4L * index], packed);
    }

    /// <summary>Two fp32 values (their bits) times <paramref name="scale"/>, rounded to a bf16 pair, <paramref name="lo"/> in the low half.</summary>
    private static uint Pack(uint lo, uint hi, float scale) => TensorCore.Pack(Interop.IntAsFloat(lo) * scale, Interop.IntAsFloat(hi) * scale);

    /// <summary>Output = bf16(Input × Scale), four elements per thread (two 8-byte loads, one 8-byte store; the length a multiple of 4).</summary>
    public static void ScaleToBf16(Index1D index, ScaleArgs a)
    {
        var input = a.Input.Cast<ulong>();
        ulong x = input[2L * index], y = input[2L * index + 1];
        a.Output.Cast<ulong>()[index] = Pack((uint)x, (uint)(x >> 32), a.Scale) | ((ulong)Pack((uint)y, (uint)(y >> 32), a.Scale) << 32);
    }
}
