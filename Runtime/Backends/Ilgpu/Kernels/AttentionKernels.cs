using ILGPU;
using ModelGen.Masks;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>
/// The document boundaries of every batch row on the device: document spans concatenated over rows, each row's slice
/// given by <see cref="RowOffsets"/>, and the document index of every token.
/// </summary>
public struct DeviceLayouts
{
    /// <summary>Document starts, rows concatenated.</summary>
    public ArrayView<int> Starts;
    /// <summary>Document ends, rows concatenated.</summary>
    public ArrayView<int> Ends;
    /// <summary>Row r's documents are [RowOffsets[r], RowOffsets[r + 1]).</summary>
    public ArrayView<int> RowOffsets;
    /// <summary>Anchor prefix length per row.</summary>
    public ArrayView<int> AnchorLengths;
    /// <summary>Document index (within its row) of every token [rows × Seq].</summary>
    public ArrayView<int> TokenDocument;
    /// <summary>Tokens per row.</summary>
    public int Seq;

    /// <summary>Row <paramref name="row"/> as <see cref="IDocumentBounds"/>.</summary>
    public readonly DeviceDocuments Row(int row)
    {
        int first = RowOffsets[row], count = RowOffsets[row + 1] - first;
        return new DeviceDocuments(Starts.SubView(first, count), Ends.SubView(first, count),
            TokenDocument.SubView((long)row * Seq, Seq), AnchorLengths[row]);
    }
}

/// <summary>One row's document bounds over device buffers.</summary>
public readonly struct DeviceDocuments(ArrayView<int> starts, ArrayView<int> ends, ArrayView<int> tokenDocument, int anchorLength) : IDocumentBounds
{
    private readonly ArrayView<int> _starts = starts, _ends = ends, _tokenDocument = tokenDocument;
    private readonly int _anchorLength = anchorLength;

    /// <inheritdoc/>
    public int Length => (int)_tokenDocument.Length;
    /// <inheritdoc/>
    public int Count => (int)_starts.Length;
    /// <inheritdoc/>
    public int AnchorLength => _anchorLength;
    /// <inheritdoc/>
    public int Start(int index) => _starts[index];
    /// <inheritdoc/>
    public int End(int index) => _ends[index];
    /// <inheritdoc/>
    public int IndexOf(int token) => _tokenDocument[token];
}

/// <summary>Arguments of <see cref="AttentionKernels.TileMap{TMask}"/>.</summary>
public struct TileMapArgs<TMask> where TMask : struct, IAttentionMask
{
    /// <summary>Document bounds per row.</summary>
    public DeviceLayouts Layouts;
    /// <summary>Output kinds [rows, QueryTiles, KeyTiles] (<see cref="TileKind"/> values).</summary>
    public ArrayView<byte> Tiles;
    /// <summary>Query rows per tile.</summary>
    public int TileQ;
    /// <summary>Keys per tile.</summary>
    public int TileK;
    /// <summary>Query tiles per row.</summary>
    public int QueryTiles;
    /// <summary>Key tiles per row.</summary>
    public int KeyTiles;
    /// <summary>The mask.</summary>
    public TMask Mask;
}

/// <summary>Arguments of <see cref="AttentionKernels.Forward{T, TE, TMask}"/>.</summary>
public struct AttentionArgs<T, TMask> where T : unmanaged where TMask : struct, IAttentionMask
{
    /// <summary>Queries: element (t, h, d) at QOffset + t·QStride + h·HeadDim + d.</summary>
    public ArrayView<T> Q;
    /// <summary>Keys, likewise with KOffset/KStride over KvHeads.</summary>
    public ArrayView<T> K;
    /// <summary>Values, likewise with VOffset/VStride.</summary>
    public ArrayView<T> V;
    /// <summary>Output [tokens, Heads·HeadDim].</summary>
    public ArrayView<T> O;
    /// <summary>Log-sum-exp of each (row, head, query) [rows, Heads, Seq], for the backward pass; empty = not written.</summary>
    public ArrayView<float> Lse;
    /// <summary>Element offsets and token strides of Q, K, V.</summary>
    public long QOffset, KOffset, VOffset, QStride, KStride, VStride;
    /// <summary>Shape.</summary>
    public int Rows, Seq, Heads, KvHeads, HeadDim;
    /// <summary>Softmax scale (1/√D).</summary>
    public float Scale;
    /// <summary>Tile map [rows, QueryTiles, KeyTiles].</summary>
    public ArrayView<byte> Tiles;
    /// <summary>Tile geometry.</summary>
    public int TileQ, TileK, QueryTiles, KeyTiles;
    /// <summary>Document bounds per row.</summary>
    public DeviceLayouts Layouts;
    /// <summary>The mask (evaluated only inside partial tiles).</summary>
    public TMask Mask;
}

/// <summary>
/// Tiled attention that consults the tile map: empty tiles are skipped without loading K or V, full tiles run
/// without the mask, partial tiles evaluate the mask's element predicate. A first, portable version without tensor
/// cores: one warp per query row, 32 keys per step (one per lane), online softmax in fp32.
/// </summary>
public static class AttentionKernels
{
    /// <summary>Most warps (query rows) per thread group of <see cref="Forward{T, TE, TMask}"/> (its shared buffers' size).</summary>
    public const int WarpsPerGroup = 4;
    /// <summary>Largest head dimension the kernel's shared buffers hold.</summary>
    public const int MaxHeadDim = 256;

    /// <summary>One thread per (row, query tile, key tile): the mask's analytic classifier on the GPU.</summary>
    public static void TileMap<TMask>(Index1D index, TileMapArgs<TMask> a) where TMask : struct, IAttentionMask
    {
        int perRow = a.QueryTiles * a.KeyTiles;
        int row = index / perRow, r = index - row * perRow;
        int qt = r / a.KeyTiles, kt = r - qt * a.KeyTiles;
        var docs = a.Layouts.Row(row);
        int seq = a.Layouts.Seq;
        int q0 = qt * a.TileQ, k0 = kt * a.TileK;
        int q1 = q0 + a.TileQ < seq ? q0 + a.TileQ : seq, k1 = k0 + a.TileK < seq ? k0 + a.TileK : seq;
        a.Tiles[index] = (byte)a.Mask.Classify(docs, q0, q1, k0, k1);
    }

    /// <summary>Forward attention; launch with groups of up to <see cref="WarpsPerGroup"/> warps, one warp per (row, head, query).</summary>
    public static void Forward<T, TE, TMask>(AttentionArgs<T, TMask> a)
        where T : unmanaged where TE : struct, IElement<T> where TMask : struct, IAttentionMask
    {
        var e = default(TE);
        var shared = SharedMemory.Allocate<float>(WarpsPerGroup * (2 * MaxHeadDim + 32));
        int lane = Warp.LaneIdx, warp = Warp.WarpIdx;
        long w = (long)Grid.IdxX * (Group.DimX / Warp.WarpSize) + warp;
        if (w >= (long)a.Rows * a.Heads * a.Seq) return;
        int s = (int)(w % a.Seq);
        int h = (int)(w / a.Seq % a.Heads);
        int row = (int)(w / ((long)a.Seq * a.Heads));
        int kvh = h / (a.Heads / a.KvHeads);
        int D = a.HeadDim;
        var qs = shared.SubView(warp * (2 * MaxHeadDim + 32), MaxHeadDim);
        var acc = shared.SubView(warp * (2 * MaxHeadDim + 32) + MaxHeadDim, MaxHeadDim);
        var probs = shared.SubView(warp * (2 * MaxHeadDim + 32) + 2 * MaxHeadDim, 32);

        long token = (long)row * a.Seq + s;
        long qBase = a.QOffset + token * a.QStride + (long)h * D;
        for (int d = lane; d < D; d += Warp.WarpSize)
        {
            qs[d] = e.Load(a.Q[qBase + d]) * a.Scale;
            acc[d] = 0f;
        }
        Warp.Barrier();

        var docs = a.Layouts.Row(row);
        int docQ = docs.IndexOf(s);
        long rowKeys = (long)row * a.Seq;
        long tileRow = ((long)row * a.QueryTiles + s / a.TileQ) * a.KeyTiles;
        float m = float.NegativeInfinity, l = 0f;
        for (int kt = 0; kt < a.KeyTiles; kt++)
        {
            var kind = (TileKind)a.Tiles[tileRow + kt];
            if (kind == TileKind.Empty) continue;
            int k0 = kt * a.TileK;
            int k1 = k0 + a.TileK < a.Seq ? k0 + a.TileK : a.Seq;
            for (int kb = k0; kb < k1; kb += Warp.WarpSize)
            {
                int k = kb + lane;
                bool ok = k < k1;
                if (ok && kind == TileKind.Partial) ok = a.Mask.Allows(docs, s, k, docQ, docs.IndexOf(k));
                float score = float.NegativeInfinity;
                if (ok)
                {
                    long kBase = a.KOffset + (rowKeys + k) * a.KStride + (long)kvh * D;
                    float dot = 0f;
                    for (int d = 0; d < D; d++) dot += qs[d] * e.Load(a.K[kBase + d]);
                    score = dot;
                }
                float blockMax = ReductionKernels.WarpMax(score);
                if (blockMax == float.NegativeInfinity) continue;
                float mNew = MathF.Max(m, blockMax);
                float p = ok ? MathF.Exp(score - mNew) : 0f;
                float correction = MathF.Exp(m - mNew);
                l = l * correction + ReductionKernels.WarpSum(p);
                for (int d = lane; d < D; d += Warp.WarpSize) acc[d] *= correction;
                // The block's probabilities go through shared memory: one barrier instead of a shuffle per key.
                probs[lane] = p;
                Warp.Barrier();
                int n = k1 - kb < Warp.WarpSize ? k1 - kb : Warp.WarpSize;
                for (int j = 0; j < n; j++)
                {
                    float pj = probs[j];
                    if (pj == 0f) continue;
                    long vBase = a.VOffset + (rowKeys + kb + j) * a.VStride + (long)kvh * D;
                    for (int d = lane; d < D; d += Warp.WarpSize) acc[d] += pj * e.Load(a.V[vBase + d]);
                }
                m = mNew;
                Warp.Barrier();
            }
        }
        float inv = l > 0f ? 1f / l : 0f;
        long oBase = token * ((long)a.Heads * D) + (long)h * D;
        for (int d = lane; d < D; d += Warp.WarpSize) a.O[oBase + d] = e.Store(acc[d] * inv);
        if (lane == 0 && a.Lse.Length > 0)
            a.Lse[((long)row * a.Heads + h) * a.Seq + s] = l > 0f ? m + MathF.Log(l) : float.NegativeInfinity;
    }
}
