using ILGPU;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Masks;

namespace ModelGen.Backends.Ilgpu;

/// <summary>
/// The per-batch inputs on the device: token ids, position ids, labels, document bounds and the tile map. Buffers are
/// sized for a capacity at construction and reused for every batch that fits, so steady-state batches allocate
/// nothing on the device; uploading a batch is the only host→device copy.
/// </summary>
public sealed class GpuBatch : IDisposable
{
    private readonly GpuDevice _device;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _ids, _positions, _labels, _starts, _ends, _rowOffsets, _anchors, _tokenDocs;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _tiles;

    /// <summary>Buffers for up to <paramref name="rows"/> × <paramref name="seq"/> tokens.</summary>
    public GpuBatch(GpuDevice device, int rows, int seq, int tileQ = 64, int tileK = 64)
    {
        if (rows <= 0 || seq <= 0) throw new ArgumentOutOfRangeException(nameof(seq), $"a batch needs rows and tokens, got {rows} × {seq}");
        (_device, Rows, Seq, TileQ, TileK) = (device, rows, seq, tileQ, tileK);
        QueryTiles = (seq + tileQ - 1) / tileQ;
        KeyTiles = (seq + tileK - 1) / tileK;
        long tokens = (long)rows * seq;
        _ids = device.Allocate<int>(tokens, "input ids");
        _positions = device.Allocate<int>(tokens, "position ids");
        _labels = device.Allocate<int>(tokens, "labels");
        _starts = device.Allocate<int>(tokens, "document starts");
        _ends = device.Allocate<int>(tokens, "document ends");
        _rowOffsets = device.Allocate<int>(rows + 1, "row offsets");
        _anchors = device.Allocate<int>(rows, "anchor lengths");
        _tokenDocs = device.Allocate<int>(tokens, "token documents");
        _tiles = device.Allocate<byte>((long)rows * QueryTiles * KeyTiles, "tile map");
    }

    /// <summary>Batch rows.</summary>
    public int Rows { get; }
    /// <summary>Tokens per row.</summary>
    public int Seq { get; }
    /// <summary>Tile geometry of the tile map.</summary>
    public int TileQ { get; }
    /// <summary>Tile geometry of the tile map.</summary>
    public int TileK { get; }
    /// <summary>Query tiles per row.</summary>
    public int QueryTiles { get; }
    /// <summary>Key tiles per row.</summary>
    public int KeyTiles { get; }
    /// <summary>Tokens in the batch.</summary>
    public int Tokens => Rows * Seq;

    /// <summary>Token ids [rows × seq].</summary>
    public ArrayView<int> Ids => _ids.View;
    /// <summary>Position ids [rows × seq].</summary>
    public ArrayView<int> Positions => _positions.View;
    /// <summary>Labels [rows × seq] (negative = ignored).</summary>
    public ArrayView<int> Labels => _labels.View;
    /// <summary>The tile map [rows, QueryTiles, KeyTiles].</summary>
    public ArrayView<byte> Tiles => _tiles.View;

    /// <summary>The document bounds as kernels read them.</summary>
    public DeviceLayouts Layouts => new()
    {
        Starts = _starts.View, Ends = _ends.View, RowOffsets = _rowOffsets.View,
        AnchorLengths = _anchors.View, TokenDocument = _tokenDocs.View, Seq = Seq,
    };

    /// <summary>The labels of the last upload, on the host.</summary>
    public int[] HostLabels { get; private set; } = [];

    /// <summary>Largest position id uploaded (for RoPE tables).</summary>
    public int MaxPosition { get; private set; }

    /// <summary>Longest anchor prefix of the rows uploaded (0: no row has one).</summary>
    public int MaxAnchorLength { get; private set; }

    /// <summary>
    /// Uploads one batch: ids and positions [rows × seq], one layout per row (null = each row one document, no
    /// anchor), labels optional. Ids are checked against <paramref name="vocab"/>.
    /// </summary>
    public void Upload(ReadOnlySpan<int> ids, ReadOnlySpan<int> positions, IReadOnlyList<DocumentLayout>? layouts, int vocab, ReadOnlySpan<int> labels = default)
    {
        int tokens = Tokens;
        if (ids.Length != tokens) throw new ArgumentException($"input ids: {ids.Length} tokens for a batch of {Rows} × {Seq}", nameof(ids));
        if (positions.Length != tokens) throw new ArgumentException($"position ids: {positions.Length} values for a batch of {Rows} × {Seq}", nameof(positions));
        for (int i = 0; i < tokens; i++)
        {
            if ((uint)ids[i] >= (uint)vocab) throw new ArgumentException($"input ids: token {ids[i]} at index {i} is outside the vocabulary of {vocab}", nameof(ids));
            if (positions[i] < 0) throw new ArgumentException($"position ids: {positions[i]} at index {i} is negative", nameof(positions));
        }
        if (layouts is not null && layouts.Count != Rows) throw new ArgumentException($"{layouts.Count} layouts for {Rows} rows", nameof(layouts));
        var starts = new List<int>();
        var ends = new List<int>();
        var offsets = new int[Rows + 1];
        var anchors = new int[Rows];
        var tokenDocs = new int[tokens];
        for (int r = 0; r < Rows; r++)
        {
            var layout = layouts?[r] ?? DocumentLayout.Single(Seq);
            if (layout.Length != Seq) throw new ArgumentException($"layout of row {r} covers {layout.Length} tokens, the batch has {Seq}", nameof(layouts));
            offsets[r] = starts.Count;
            anchors[r] = layout.AnchorLength;
            for (int d = 0; d < layout.Documents.Count; d++)
            {
                var span = layout.Documents[d];
                starts.Add(span.Start);
                ends.Add(span.End);
                Array.Fill(tokenDocs, d, r * Seq + span.Start, span.Length);
            }
        }
        offsets[Rows] = starts.Count;
        _ids.View.SubView(0, tokens).CopyFromCPU(ids.ToArray());
        _positions.View.SubView(0, tokens).CopyFromCPU(positions.ToArray());
        int[] labelValues = labels.IsEmpty ? new int[tokens] : labels.ToArray();
        if (labels.IsEmpty) Array.Fill(labelValues, -1);
        else if (labels.Length != tokens) throw new ArgumentException($"labels: {labels.Length} values for {tokens} tokens", nameof(labels));
        _labels.View.SubView(0, tokens).CopyFromCPU(labelValues);
        HostLabels = labelValues;
        _starts.View.SubView(0, starts.Count).CopyFromCPU(starts.ToArray());
        _ends.View.SubView(0, ends.Count).CopyFromCPU(ends.ToArray());
        _rowOffsets.View.CopyFromCPU(offsets);
        _anchors.View.CopyFromCPU(anchors);
        _tokenDocs.View.CopyFromCPU(tokenDocs);
        int max = 0;
        foreach (var p in positions) max = Math.Max(max, p);
        MaxPosition = max;
        MaxAnchorLength = anchors.Max();
    }

    /// <summary>Builds the tile map for <paramref name="mask"/> on the device (one thread per tile, no compile step per length).</summary>
    public void BuildTileMap(AttentionMask mask) => mask.Apply<bool, TileMapAction>(new TileMapAction(this));

    /// <summary>Builds the tile map for a kernel-safe mask struct on the device.</summary>
    public void BuildTileMap<TMask>(TMask mask) where TMask : struct, IAttentionMask
    {
        TileMapVersion++;
        BuildTileMap(mask, Tiles);
    }

    /// <summary>The tile map of <paramref name="mask"/> into <paramref name="tiles"/> [rows, QueryTiles, KeyTiles].</summary>
    internal void BuildTileMap<TMask>(TMask mask, ArrayView<byte> tiles) where TMask : struct, IAttentionMask
    {
        var launch = _device.Kernel<TileMapArgs<TMask>>(AttentionKernels.TileMap);
        launch(_device.Stream, Rows * QueryTiles * KeyTiles, new TileMapArgs<TMask>
        {
            Layouts = Layouts, Tiles = tiles, TileQ = TileQ, TileK = TileK, QueryTiles = QueryTiles, KeyTiles = KeyTiles, Mask = mask,
        });
    }

    private (MemoryBuffer1D<byte, Stride1D.Dense> Tiles, TileLists Rows, TileLists Columns)? _anchorFree;

    /// <summary>The <see cref="TileMapVersion"/> the anchor-free lists were last built for (-1: never).</summary>
    internal int AnchorFreeVersion { get; set; } = -1;

    /// <summary>The sliding window of the mask the anchor-free lists were last built for.</summary>
    internal int AnchorFreeWindow { get; set; }

    /// <summary>
    /// A second tile map and its row and column lists, for an anchor mask whose anchor key the kernels compute apart
    /// (the intra-document mask's map; allocated on first use).
    /// </summary>
    internal (ArrayView<byte> Tiles, TileLists Rows, TileLists Columns) EnsureAnchorFree()
    {
        _anchorFree ??= (_device.Allocate<byte>((long)Rows * QueryTiles * KeyTiles, "anchor-free tile map"),
            new TileLists(_device.Allocate<int>((long)Rows * QueryTiles * KeyTiles, "anchor-free tile lists"), _device.Allocate<int>((long)Rows * QueryTiles, "anchor-free tile list counts")),
            new TileLists(_device.Allocate<int>((long)Rows * QueryTiles * KeyTiles, "anchor-free tile lists"), _device.Allocate<int>((long)Rows * KeyTiles, "anchor-free tile list counts")));
        return (_anchorFree.Value.Tiles.View, _anchorFree.Value.Rows, _anchorFree.Value.Columns);
    }

    private (TileLists Rows, TileLists Columns)? _tileLists;

    /// <summary>Counts tile map builds, so that the tile lists derived from the map know when they are stale.</summary>
    internal int TileMapVersion { get; private set; }

    /// <summary>The <see cref="TileMapVersion"/> the tile lists were last built from (-1: never).</summary>
    internal int TileListsVersion { get; set; } = -1;

    /// <summary>Queries per row list (the forward kernel's query block) when the tile lists were last built.</summary>
    internal int TileListsForwardQueries { get; set; }

    /// <summary>Non-empty tiles as lists: per query tile its key tiles, and per key tile its query tiles (allocated on first use).</summary>
    internal (TileLists Rows, TileLists Columns) EnsureTileLists() => _tileLists ??= (
        new TileLists(_device.Allocate<int>((long)Rows * QueryTiles * KeyTiles, "tile lists"), _device.Allocate<int>((long)Rows * QueryTiles, "tile list counts")),
        new TileLists(_device.Allocate<int>((long)Rows * QueryTiles * KeyTiles, "tile lists"), _device.Allocate<int>((long)Rows * KeyTiles, "tile list counts")));

    /// <summary>Lists of tiles and their lengths on the device.</summary>
    internal sealed record TileLists(MemoryBuffer1D<int, Stride1D.Dense> ListBuffer, MemoryBuffer1D<int, Stride1D.Dense> CountBuffer)
    {
        public ArrayView<int> Lists => ListBuffer.View;
        public ArrayView<int> Counts => CountBuffer.View;
    }

    /// <summary>The tile map of row <paramref name="row"/> on the host (synchronizes).</summary>
    public TileKind[] TileMapOf(int row)
    {
        var all = _tiles.GetAsArray1D();
        var kinds = new TileKind[QueryTiles * KeyTiles];
        for (int i = 0; i < kinds.Length; i++) kinds[i] = (TileKind)all[row * kinds.Length + i];
        return kinds;
    }

    private readonly struct TileMapAction(GpuBatch batch) : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask
        {
            batch.BuildTileMap(mask);
            return true;
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var b in new MemoryBuffer[] { _ids, _positions, _labels, _starts, _ends, _rowOffsets, _anchors, _tokenDocs, _tiles }) b.Dispose();
        if (_tileLists is var (rows, columns))
            foreach (var b in new MemoryBuffer[] { rows.ListBuffer, rows.CountBuffer, columns.ListBuffer, columns.CountBuffer }) b.Dispose();
        if (_anchorFree is var (tiles, freeRows, freeColumns))
            foreach (var b in new MemoryBuffer[] { tiles, freeRows.ListBuffer, freeRows.CountBuffer, freeColumns.ListBuffer, freeColumns.CountBuffer }) b.Dispose();
    }
}
