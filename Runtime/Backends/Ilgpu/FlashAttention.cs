using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Masks;

namespace ModelGen.Backends.Ilgpu;

/// <summary>Which tensor-core instructions the flash kernels use.</summary>
public enum FlashKernelSet
{
    /// <summary>Warpgroup MMA where the device has it (SM_90) and a kernel exists for the head dimension; mma.sync otherwise.</summary>
    Auto,
    /// <summary><c>mma.sync</c> (SM_80 and later): <see cref="FlashKernels"/>.</summary>
    MmaSync,
    /// <summary>Hopper's warpgroup MMA (<see cref="HopperFlashKernels"/>); on the CPU accelerator its emulation.</summary>
    Wgmma,
}

/// <summary>One bf16 attention operand on the device: a view and its token-major <see cref="HeadLayout"/>.</summary>
public readonly record struct FlashOperand(ArrayView<ushort> View, HeadLayout Layout);

/// <summary>
/// Flash attention on tensor cores (bf16 in, fp32 accumulation), forward and backward, over a batch whose tile map is
/// built: the kernels walk per-tile lists of non-empty tiles, so empty tiles are never loaded and full tiles never
/// evaluate the mask. Kernels are generated per head dimension (<see cref="FlashKernels.HeadDims"/>).
/// </summary>
public sealed class FlashAttention(GpuDevice device)
{
    private readonly Action<AcceleratorStream, Index1D, TileListArgs> _rowLists = device.Kernel<TileListArgs>(FlashKernels.RowLists);
    private readonly Action<AcceleratorStream, Index1D, TileListArgs> _columnLists = device.Kernel<TileListArgs>(FlashKernels.ColumnLists);
    private readonly Action<AcceleratorStream, KernelConfig, DeltaArgs> _prepare = device.GroupedKernel<DeltaArgs>(FlashKernels.BackwardPrepare);
    private readonly Action<AcceleratorStream, Index1D, ScaleArgs> _scale = device.Kernel<ScaleArgs>(FlashKernels.ScaleToBf16);
    private readonly Action<AcceleratorStream, Index1D, ScaleArgs> _swizzledScale = device.Kernel<ScaleArgs>(FlashKernels.SwizzledToBf16);
    private readonly Action<AcceleratorStream, KernelConfig, AnchorArgs> _anchorPrepare = device.GroupedKernel<AnchorArgs>(AnchorKernels.Prepare);
    private readonly Action<AcceleratorStream, Index1D, AnchorArgs> _anchorFinish = device.Kernel<AnchorArgs>(AnchorKernels.Finish);

    /// <summary>The kernels to run (<see cref="FlashKernelSet.Auto"/> unless a benchmark or test asks for one set).</summary>
    public FlashKernelSet Kernels { get; set; } = FlashKernelSet.Auto;

    /// <summary>Whether the kernels at <paramref name="headDim"/> run on warpgroup MMA; asking for it where it cannot run is an error.</summary>
    public bool UsesWgmma(int headDim) => Kernels switch
    {
        FlashKernelSet.MmaSync => false,
        FlashKernelSet.Auto => headDim == HopperFlashKernels.HeadDim && device.SupportsHopper,
        _ when headDim != HopperFlashKernels.HeadDim => throw new NotSupportedException($"flash attention: the warpgroup-MMA kernels exist for head dim {HopperFlashKernels.HeadDim}, not {headDim}"),
        _ when device.Kind == GpuKind.Cuda && !device.SupportsHopper => throw new NotSupportedException($"flash attention: warpgroup MMA needs an SM_90 GPU; {device.Description} has none"),
        _ => true,
    };

    /// <summary>
    /// Why the forward (or, with <paramref name="backward"/>, the backward) kernel of <paramref name="headDim"/> cannot run
    /// on a device that lets a group use <paramref name="limit"/> bytes of shared memory (null: no limit known), or null.
    /// </summary>
    public static string? SharedMemoryProblem(int headDim, int? limit, bool backward)
    {
        int needed = backward ? FlashKernels.BackwardSharedBytes(headDim) : FlashKernels.ForwardSharedBytes(headDim);
        return limit is int max && max < needed
            ? $"the flash {(backward ? "backward" : "forward")} kernel for head dim {headDim} needs {needed} bytes of shared memory per group, the device allows {max}"
            : null;
    }

    /// <summary>Whether kernels exist for <paramref name="headDim"/>.</summary>
    public static bool Supports(int headDim) => Array.IndexOf(FlashKernels.HeadDims, headDim) >= 0;

    /// <summary>
    /// Why the flash kernels cannot run these operands on <paramref name="device"/>, or null when they can: head
    /// dimension, 32-lane warps (the mma fragment layout), groups of 256 threads, 64-token tiles, the forward kernel's shared
    /// memory, and 16-byte aligned rows.
    /// </summary>
    public static string? Unsupported(GpuDevice device, int headDim, GpuBatch batch, params HeadLayout[] layouts)
    {
        if (!Supports(headDim)) return NoKernel(headDim);
        if (device.Accelerator.WarpSize != 32) return $"flash kernels need 32-lane warps, the accelerator has {device.Accelerator.WarpSize}";
        int threads = Math.Max(ForwardThreads(headDim), FlashKernels.BackwardThreads);
        if (device.Accelerator.MaxNumThreadsPerGroup < threads)
            return $"flash kernels need groups of {threads} threads, the accelerator allows {device.Accelerator.MaxNumThreadsPerGroup} (on the CPU accelerator: GpuDevice.Open(GpuKind.Cpu, cpuWarpsPerGroup: 8))";
        if (batch.TileQ != FlashKernels.Tile || batch.TileK != FlashKernels.Tile) return $"flash kernels need {FlashKernels.Tile}-token tiles, the batch has {batch.TileQ}×{batch.TileK}";
        if (SharedMemoryProblem(headDim, device.MaxSharedBytesPerGroup, backward: false) is { } memory) return memory;
        foreach (var l in layouts)
        {
            if (l.HeadStride != headDim) return $"flash kernels need heads packed along the token row (head stride {l.HeadStride} ≠ {headDim})";
            if (l.Offset % 8 != 0 || l.TokenStride % 8 != 0) return $"flash kernels copy 16-byte chunks: offset {l.Offset} and token stride {l.TokenStride} must be multiples of 8";
            if (l.BatchStride != l.TokenStride * batch.Seq) return "flash kernels need token-major rows (batch stride = seq × token stride)";
        }
        return null;
    }

    /// <summary>
    /// Builds the per-block lists of non-empty tiles from the batch's tile map (after
    /// <see cref="GpuBatch.BuildTileMap(AttentionMask)"/>) for the kernels of <paramref name="headDim"/> (whose forward
    /// query block it sets). <see cref="Forward{TMask}"/> and <see cref="Backward{TMask}"/> call it themselves when the
    /// map changed since, or the lists were built for another head dimension's query block.
    /// </summary>
    public void BuildTileLists(GpuBatch batch, int headDim)
    {
        if (!Supports(headDim)) throw new NotSupportedException($"flash attention: {NoKernel(headDim)}");
        var (rows, columns) = batch.EnsureTileLists();
        int queries = FlashKernels.ForwardQueries(headDim);
        batch.TileListsVersion = batch.TileMapVersion;
        batch.TileListsForwardQueries = queries;
        RowLists(batch, batch.Tiles, rows, queries);
        ColumnLists(batch, batch.Tiles, columns);
    }

    /// <summary>Per forward query block of <paramref name="queries"/> queries, the non-empty key tiles of <paramref name="tiles"/>.</summary>
    private void RowLists(GpuBatch batch, ArrayView<byte> tiles, GpuBatch.TileLists rows, int queries) =>
        _rowLists(device.Stream, batch.Rows * ((batch.Seq + queries - 1) / queries) * device.Accelerator.WarpSize, new TileListArgs
        {
            Tiles = tiles, Lists = rows.Lists, Counts = rows.Counts, QueryTiles = batch.QueryTiles, KeyTiles = batch.KeyTiles,
            KeyTilesPerBlock = 1, QueryTilesPerBlock = queries / FlashKernels.Tile,
        });

    /// <summary>Per backward key block, the non-empty query tiles of <paramref name="tiles"/>.</summary>
    private void ColumnLists(GpuBatch batch, ArrayView<byte> tiles, GpuBatch.TileLists columns) =>
        _columnLists(device.Stream, batch.Rows * KeyBlocks(batch) * device.Accelerator.WarpSize, new TileListArgs
        {
            Tiles = tiles, Lists = columns.Lists, Counts = columns.Counts, QueryTiles = batch.QueryTiles, KeyTiles = batch.KeyTiles,
            KeyTilesPerBlock = FlashKernels.BackwardKeys / FlashKernels.Tile, QueryTilesPerBlock = 1,
        });

    /// <summary>
    /// O = softmax(scale·QKᵀ + mask)·V for every (row, head), with the natural log-sum-exp of each query written to
    /// <paramref name="lse"/> [rows, heads, seq] unless it is empty. The batch's tile map must be built for the same mask.
    /// </summary>
    public void Forward<TMask>(FlashOperand q, FlashOperand k, FlashOperand v, FlashOperand o, int headDim, GpuBatch batch, TMask mask,
        ArrayView<float> lse = default) where TMask : struct, IAttentionMask
    {
        Check(headDim, batch, q, k, v, o);
        bool wgmma = UsesWgmma(headDim);
        // The anchor key apart (warpgroup-MMA kernel only): the softmax starts from key 0, the tiles are the intra-document mask's.
        var (kernelMask, rows, _, _, window) = KernelPlan(mask, batch, headDim, anchorApart: wgmma);
        int bytes = wgmma ? HopperFlashKernels.ForwardSharedBytes : FlashKernels.ForwardSharedBytes(headDim);
        var launch = wgmma
            ? device.HopperKernel<FlashForwardArgs<TMask>>(HopperFlashKernels.ForwardD128<TMask>, bytes)
            : device.GroupedKernel<FlashForwardArgs<TMask>>(FlashKernels.ForwardKernel<TMask>(headDim)!, bytes);
        var config = new KernelConfig(new Index3D(q.Layout.Heads, QueryBlocks(batch, headDim), batch.Rows), new Index3D(ForwardThreads(headDim), 1, 1),
            SharedMemoryConfig.RequestDynamic<ushort>(bytes / 2));
        var args = new FlashForwardArgs<TMask>
        {
            Q = q.View, K = k.View, V = v.View, O = o.View, Lse = lse,
            QOffset = q.Layout.Offset, KOffset = k.Layout.Offset, VOffset = v.Layout.Offset, OOffset = o.Layout.Offset,
            QStride = q.Layout.TokenStride, KStride = k.Layout.TokenStride, VStride = v.Layout.TokenStride, OStride = o.Layout.TokenStride,
            Seq = batch.Seq, Heads = q.Layout.Heads, KvHeads = k.Layout.Heads, QueryBlocks = QueryBlocks(batch, headDim), KeyTiles = batch.KeyTiles,
            ScaleLog2 = Scale(headDim) * 1.4426950408889634f, Lists = rows.Lists, Counts = rows.Counts, Layouts = batch.Layouts, Mask = kernelMask,
            AnchorWindow = window, AnchorLengths = batch.Layouts.AnchorLengths,
        };
        if (wgmma)
        {
            var maps = _maps.For(headDim, batch, q, k, v);
            args.QMap = maps.SubView(0, TensorMaps.Words);
            args.KMap = maps.SubView(TensorMaps.Words, TensorMaps.Words);
            args.VMap = maps.SubView(2 * TensorMaps.Words, TensorMaps.Words);
        }
        launch(device.Stream, config, args);
    }

    private readonly OperandMaps _maps = new(device);

    /// <summary>
    /// The warpgroup-MMA kernels' tensor maps of their operands (<see cref="TensorMaps"/>: Q, K, V for the forward, and dO
    /// for the backward), encoded once per operand set and kept on the device: a slot is written only when it is new, so
    /// no launch in flight ever reads a map being replaced. When all <see cref="Slots"/> are taken, the stream is drained
    /// and the slots are reused.
    /// </summary>
    private sealed class OperandMaps(GpuDevice device)
    {
        private const int Slots = 256;
        private const int SlotWords = 4 * TensorMaps.Words;
        private static readonly string[] Names = ["Q", "K", "V", "dO"];
        private readonly Dictionary<(int, int, int, Operand, Operand, Operand, Operand), int> _slots = [];
        private MemoryBuffer1D<ulong, Stride1D.Dense>? _buffer;

        private readonly record struct Operand(long Address, HeadLayout Layout);

        /// <summary>The maps of <paramref name="operands"/> (three or four), <see cref="TensorMaps.Words"/> words each, in order.</summary>
        public ArrayView<ulong> For(int headDim, GpuBatch batch, params FlashOperand[] operands)
        {
            var o = operands.Select(x => new Operand((long)x.View.LoadEffectiveAddressAsPtr(), x.Layout)).Concat([default(Operand)]).ToArray();
            var key = (headDim, batch.Seq, batch.Rows, o[0], o[1], o[2], o[3]);
            _buffer ??= device.Accelerator.Allocate1D<ulong>(Slots * SlotWords);
            if (!_slots.TryGetValue(key, out int slot))
            {
                if (_slots.Count == Slots)
                {
                    device.Synchronize();
                    _slots.Clear();
                }
                var words = new ulong[SlotWords];
                for (int i = 0; i < operands.Length; i++)
                    TensorMaps.Encode(device, Names[i], operands[i].View, operands[i].Layout, headDim, batch.Seq, batch.Rows, words.AsSpan(i * TensorMaps.Words, TensorMaps.Words));
                slot = _slots.Count;
                _buffer.View.SubView(slot * SlotWords, SlotWords).CopyFromCPU(words);
                _slots.Add(key, slot);
            }
            return _buffer.View.SubView(slot * SlotWords, SlotWords);
        }
    }

    /// <summary>
    /// Whether the kernels of the anchor mask (<see cref="MaskTerms.Document"/> with an anchor, on windows whose anchor is
    /// one token) compute the anchor key apart and run the tiled kernels on the intra-document mask, so that the anchor's
    /// tiles no longer reach every query tile: the backward through <see cref="AnchorKernels"/>, the warpgroup-MMA forward
    /// by starting each query's softmax from key 0. On unless a benchmark or test turns it off.
    /// </summary>
    public bool AnchorApart { get; set; } = true;

    /// <summary>
    /// Gradients of the forward pass: dQ, dK, dV (bf16) from dO, the forward output and its log-sum-exp.
    /// <paramref name="scratch"/> holds Δ [rows·heads·seq], the fp32 dQ accumulator (tokens·heads·D, token-major or, for the
    /// warpgroup-MMA kernel, in the order of <see cref="FlashKernels.SwizzledDqIndex"/>), the queries' key
    /// spans [tokens·4] and the anchor key's gradient sums [rows·heads·2·D] (<see cref="BackwardScratchLength"/> floats).
    /// </summary>
    public void Backward<TMask>(FlashOperand q, FlashOperand k, FlashOperand v, FlashOperand o, FlashOperand dO, ArrayView<float> lse,
        ArrayView<ushort> dq, ArrayView<ushort> dk, ArrayView<ushort> dv, int headDim, GpuBatch batch, TMask mask, ArrayView<float> scratch)
        where TMask : struct, IAttentionMask
    {
        Check(headDim, batch, q, k, v, o, dO);
        bool wgmma = UsesWgmma(headDim);
        if (!wgmma && SharedMemoryProblem(headDim, device.MaxSharedBytesPerGroup, backward: true) is { } memory) throw new NotSupportedException($"flash attention: {memory}");
        int heads = q.Layout.Heads, kvHeads = k.Layout.Heads;
        long tokens = batch.Tokens;
        long deltaLength = tokens * heads, dqLength = tokens * heads * headDim, sumsLength = (long)batch.Rows * heads * 2 * headDim;
        if (dqLength > int.MaxValue) throw new ArgumentException($"flash backward: {tokens} tokens × {heads} heads × {headDim} exceed the 2^31 elements one call handles", nameof(q));
        long needed = BackwardScratchLength(batch, heads, headDim);
        if (scratch.Length < needed) throw new ArgumentException($"flash backward: scratch has {scratch.Length} floats, needs {needed}", nameof(scratch));
        if (lse.Length < deltaLength) throw new ArgumentException($"flash backward: lse has {lse.Length} floats, needs {deltaLength}", nameof(lse));
        if (dq.Length < dqLength) throw new ArgumentException($"flash backward: dq has {dq.Length} elements, needs {dqLength}", nameof(dq));
        if (dk.Length < tokens * kvHeads * headDim || dv.Length < tokens * kvHeads * headDim)
            throw new ArgumentException($"flash backward: dk/dv need {tokens * kvHeads * headDim} elements", nameof(dk));
        var delta = scratch.SubView(0, deltaLength);
        var dqAccumulator = scratch.SubView(deltaLength, dqLength);
        var spans = scratch.SubView(deltaLength + dqLength, 4 * tokens).Cast<int>();
        var sums = scratch.SubView(deltaLength + dqLength + 4 * tokens, sumsLength);

        // The anchor key apart: the tiled kernel runs the intra-document part of the mask on that part's own lists.
        var (kernelMask, _, columns, apart, window) = KernelPlan(mask, batch, headDim, anchorApart: true);
        var anchorArgs = new AnchorArgs
        {
            Q = q.View, K = k.View, V = v.View, O = o.View, DO = dO.View,
            QOffset = q.Layout.Offset, QStride = q.Layout.TokenStride, KOffset = k.Layout.Offset, KStride = k.Layout.TokenStride,
            VOffset = v.Layout.Offset, VStride = v.Layout.TokenStride, OOffset = o.Layout.Offset, OStride = o.Layout.TokenStride,
            DOOffset = dO.Layout.Offset, DOStride = dO.Layout.TokenStride, Lse = lse, Delta = delta, DQ = dqAccumulator, SwizzledDq = wgmma ? 1 : 0, Sums = sums,
            DK = dk, DV = dv, AnchorLengths = batch.Layouts.AnchorLengths, Seq = batch.Seq, Heads = heads, KvHeads = kvHeads, HeadDim = headDim,
            Window = window, Scale = Scale(headDim), ScaleLog2 = Scale(headDim) * 1.4426950408889634f,
        };
        if (wgmma)
        {
            // The warpgroup-MMA kernel stages each query's key spans from a table (one load each) instead of evaluating them.
            device.Kernel<TokenSpanArgs<TMask>>(FlashKernels.TokenSpans<TMask>)(device.Stream, (int)tokens,
                new TokenSpanArgs<TMask> { Layouts = batch.Layouts, Mask = kernelMask, Spans = spans, Seq = batch.Seq });
        }
        if (apart)
        {
            // Δ, the dQ accumulator started with the anchor pairs' dS·K₀, and the anchor key's gradient sums.
            sums.MemSetToZero(device.Stream);
            _anchorPrepare(device.Stream, new KernelConfig(new Index3D(heads, (batch.Seq + AnchorKernels.Queries - 1) / AnchorKernels.Queries, batch.Rows),
                new Index3D(AnchorKernels.Threads, 1, 1)), anchorArgs);
        }
        else
        {
            // Δ and the cleared dQ accumulator in one pass (clearing every element, it serves either order of the accumulator).
            _prepare(device.Stream, new KernelConfig((int)((deltaLength + FlashKernels.PrepareRows - 1) / FlashKernels.PrepareRows), FlashKernels.PrepareThreads), new DeltaArgs
            {
                O = o.View, DO = dO.View, OOffset = o.Layout.Offset, OStride = o.Layout.TokenStride, DOOffset = dO.Layout.Offset, DOStride = dO.Layout.TokenStride,
                Delta = delta, DQ = dqAccumulator, Tokens = (int)tokens, Seq = batch.Seq, Heads = heads, HeadDim = headDim,
            });
        }
        int bytes = wgmma ? HopperFlashKernels.BackwardSharedBytes : FlashKernels.BackwardSharedBytes(headDim);
        var launch = wgmma
            ? device.HopperKernel<FlashBackwardArgs<TMask>>(HopperFlashKernels.BackwardD128<TMask>, bytes)
            : device.GroupedKernel<FlashBackwardArgs<TMask>>(FlashKernels.BackwardKernel<TMask>(headDim)!, bytes);
        var config = new KernelConfig(new Index3D(kvHeads, KeyBlocks(batch), batch.Rows), new Index3D(FlashKernels.BackwardThreads, 1, 1),
            SharedMemoryConfig.RequestDynamic<ushort>(bytes / 2));
        float scale = Scale(headDim);
        var args = new FlashBackwardArgs<TMask>
        {
            Q = q.View, K = k.View, V = v.View, DO = dO.View, Lse = lse, Delta = delta, DQ = dqAccumulator, DK = dk, DV = dv,
            QOffset = q.Layout.Offset, KOffset = k.Layout.Offset, VOffset = v.Layout.Offset, DOOffset = dO.Layout.Offset,
            QStride = q.Layout.TokenStride, KStride = k.Layout.TokenStride, VStride = v.Layout.TokenStride, DOStride = dO.Layout.TokenStride,
            Seq = batch.Seq, Heads = heads, KvHeads = kvHeads, QueryTiles = batch.QueryTiles, KeyBlocks = KeyBlocks(batch),
            Scale = scale, ScaleLog2 = scale * 1.4426950408889634f, Lists = columns.Lists, Counts = columns.Counts, Layouts = batch.Layouts, Mask = kernelMask,
            Spans = wgmma ? spans : default,
        };
        if (wgmma)
        {
            var maps = _maps.For(headDim, batch, q, k, v, dO);
            args.QMap = maps.SubView(0, TensorMaps.Words);
            args.KMap = maps.SubView(TensorMaps.Words, TensorMaps.Words);
            args.VMap = maps.SubView(2 * TensorMaps.Words, TensorMaps.Words);
            args.DOMap = maps.SubView(3 * TensorMaps.Words, TensorMaps.Words);
        }
        launch(device.Stream, config, args);
        // dQ to bf16 from the accumulator's order: the warpgroup-MMA kernel's (FlashKernels.SwizzledDqIndex) or token-major.
        var scaleArgs = new ScaleArgs { Input = dqAccumulator, Output = dq.SubView(0, dqLength), Scale = scale, Seq = batch.Seq, Heads = heads, HeadDim = headDim };
        if (wgmma) _swizzledScale(device.Stream, (int)(dqLength / FlashKernels.SwizzledElements), scaleArgs);
        else _scale(device.Stream, (int)(dqLength / FlashKernels.ScaleElements), scaleArgs);
        if (apart) _anchorFinish(device.Stream, batch.Rows * kvHeads * headDim, anchorArgs);
    }

    /// <summary>Whether <see cref="Backward{TMask}"/> computes the anchor key of <paramref name="mask"/> apart on the windows of <paramref name="batch"/>.</summary>
    public bool RunsAnchorApart(AttentionMask mask, GpuBatch batch) => mask.Apply<bool, ApartAction>(new ApartAction(this, batch));

    /// <summary>See <see cref="AnchorApart"/>: the standard anchor mask (then its intra-document part and window) on windows whose anchors are at most one token.</summary>
    private bool Apart<TMask>(TMask mask, GpuBatch batch, out MaskTerms documents, out int window) where TMask : struct, IAttentionMask
    {
        (documents, window) = (default, 0);
        return AnchorApart && typeof(TMask) == typeof(MaskTerms) && batch.MaxAnchorLength <= 1
            && Unsafe.As<TMask, MaskTerms>(ref mask).WithoutAnchor(out documents, out window);
    }

    private readonly struct ApartAction(FlashAttention flash, GpuBatch batch) : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask => flash.Apart(mask, batch, out _, out _);
    }

    /// <summary>
    /// The mask and tile lists the tiled kernels run: where <paramref name="anchorApart"/> (the kernel can) and
    /// <see cref="Apart{TMask}"/> hold, the anchor mask's intra-document part, its own lists and the mask's window;
    /// otherwise <paramref name="mask"/> itself, the batch's lists and window 0 (no anchor pass).
    /// </summary>
    private (TMask Mask, GpuBatch.TileLists Rows, GpuBatch.TileLists Columns, bool Apart, int Window) KernelPlan<TMask>(TMask mask, GpuBatch batch,
        int headDim, bool anchorApart) where TMask : struct, IAttentionMask
    {
        if (anchorApart && Apart(mask, batch, out var documents, out int window))
        {
            var (rows, columns) = AnchorFreeLists(batch, documents, window);
            return (Unsafe.As<MaskTerms, TMask>(ref documents), rows, columns, true, window);
        }
        var (batchRows, batchColumns) = CurrentLists(batch, headDim);
        return (mask, batchRows, batchColumns, false, 0);
    }

    /// <summary>
    /// The row and column lists of the intra-document part of an anchor mask (the batch's second map), rebuilt when the
    /// batch's tile map or the window changed since they were built. The row lists are the warpgroup-MMA forward's
    /// (<see cref="HopperFlashKernels.ForwardQueries"/> queries per block), the only forward that computes the anchor apart.
    /// </summary>
    private (GpuBatch.TileLists Rows, GpuBatch.TileLists Columns) AnchorFreeLists(GpuBatch batch, MaskTerms documents, int window)
    {
        var (tiles, rows, columns) = batch.EnsureAnchorFree();
        if (batch.AnchorFreeVersion != batch.TileMapVersion || batch.AnchorFreeWindow != window)
        {
            batch.BuildTileMap(documents, tiles);
            RowLists(batch, tiles, rows, HopperFlashKernels.ForwardQueries);
            ColumnLists(batch, tiles, columns);
            (batch.AnchorFreeVersion, batch.AnchorFreeWindow) = (batch.TileMapVersion, window);
        }
        return (rows, columns);
    }

    /// <summary><see cref="Forward{TMask}"/> with a mask chosen at run time.</summary>
    public void Forward(FlashOperand q, FlashOperand k, FlashOperand v, FlashOperand o, int headDim, GpuBatch batch, AttentionMask mask, ArrayView<float> lse = default) =>
        mask.Apply<bool, ForwardAction>(new ForwardAction(this, q, k, v, o, headDim, batch, lse));

    /// <summary><see cref="Backward{TMask}"/> with a mask chosen at run time.</summary>
    public void Backward(FlashOperand q, FlashOperand k, FlashOperand v, FlashOperand o, FlashOperand dO, ArrayView<float> lse,
        ArrayView<ushort> dq, ArrayView<ushort> dk, ArrayView<ushort> dv, int headDim, GpuBatch batch, AttentionMask mask, ArrayView<float> scratch) =>
        mask.Apply<bool, BackwardAction>(new BackwardAction(this, q, k, v, o, dO, lse, dq, dk, dv, headDim, batch, scratch));

    private readonly struct ForwardAction(FlashAttention flash, FlashOperand q, FlashOperand k, FlashOperand v, FlashOperand o, int headDim, GpuBatch batch,
        ArrayView<float> lse) : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask
        {
            flash.Forward(q, k, v, o, headDim, batch, mask, lse);
            return true;
        }
    }

    private readonly struct BackwardAction(FlashAttention flash, FlashOperand q, FlashOperand k, FlashOperand v, FlashOperand o, FlashOperand dO,
        ArrayView<float> lse, ArrayView<ushort> dq, ArrayView<ushort> dk, ArrayView<ushort> dv, int headDim, GpuBatch batch, ArrayView<float> scratch) : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask
        {
            flash.Backward(q, k, v, o, dO, lse, dq, dk, dv, headDim, batch, mask, scratch);
            return true;
        }
    }

    /// <summary>Floats of scratch <see cref="Backward{TMask}"/> needs.</summary>
    public static long BackwardScratchLength(GpuBatch batch, int heads, int headDim) =>
        (long)batch.Tokens * (heads * (1 + headDim) + 4) + (long)batch.Rows * heads * 2 * headDim;

    private static float Scale(int headDim) => 1f / MathF.Sqrt(headDim);

    /// <summary>The batch's tile lists, rebuilt first when its tile map changed since they were built or they were built for another query block.</summary>
    private (GpuBatch.TileLists Rows, GpuBatch.TileLists Columns) CurrentLists(GpuBatch batch, int headDim)
    {
        if (batch.TileListsVersion != batch.TileMapVersion || batch.TileListsForwardQueries != FlashKernels.ForwardQueries(headDim))
            BuildTileLists(batch, headDim);
        return batch.EnsureTileLists();
    }

    private static string NoKernel(int headDim) => $"no flash kernel for head dim {headDim} (generated: {string.Join(", ", FlashKernels.HeadDims)})";

    /// <summary>Threads per group of the forward kernel: two per query of its block.</summary>
    private static int ForwardThreads(int headDim) => 2 * FlashKernels.ForwardQueries(headDim);

    /// <summary>Query blocks of the forward kernel (<see cref="FlashKernels.ForwardQueries(int)"/> queries each).</summary>
    private static int QueryBlocks(GpuBatch batch, int headDim) =>
        (batch.Seq + FlashKernels.ForwardQueries(headDim) - 1) / FlashKernels.ForwardQueries(headDim);

    /// <summary>Key blocks of the backward kernel (<see cref="FlashKernels.BackwardKeys"/> keys each).</summary>
    private static int KeyBlocks(GpuBatch batch) => (batch.Seq + FlashKernels.BackwardKeys - 1) / FlashKernels.BackwardKeys;

    private void Check(int headDim, GpuBatch batch, params FlashOperand[] operands)
    {
        if (Unsupported(device, headDim, batch, operands.Select(o => o.Layout).ToArray()) is { } why) throw new NotSupportedException($"flash attention: {why}");
        int heads = operands[0].Layout.Heads, kvHeads = operands[1].Layout.Heads;
        if (kvHeads <= 0 || heads % kvHeads != 0 || operands[2].Layout.Heads != kvHeads)
            throw new ArgumentException($"flash attention: {heads} query heads cannot share {kvHeads} key and {operands[2].Layout.Heads} value heads");
        foreach (var op in operands)
        {
            long last = op.Layout.Offset + (long)(batch.Tokens - 1) * op.Layout.TokenStride + (long)op.Layout.Heads * headDim;
            if (last > op.View.Length) throw new ArgumentException($"flash attention: an operand of {op.View.Length} elements does not hold {batch.Tokens} tokens × {op.Layout.Heads} heads × {headDim} at its layout");
        }
    }
}
