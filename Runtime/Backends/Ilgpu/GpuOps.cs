using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Masks;

namespace ModelGen.Backends.Ilgpu;

/// <summary>Where the heads of a RoPE or attention operand sit inside a tensor (see <see cref="RopeArgs{T}"/>).</summary>
/// <param name="Offset">First element.</param>
/// <param name="BatchStride">Elements between batch rows.</param>
/// <param name="TokenStride">Elements between tokens of one row.</param>
/// <param name="HeadStride">Elements between heads.</param>
/// <param name="Heads">Heads.</param>
public readonly record struct HeadLayout(long Offset, long BatchStride, long TokenStride, long HeadStride, int Heads)
{
    /// <summary>Heads of <paramref name="headDim"/> packed along each token's row of <paramref name="rowWidth"/> elements, from column <paramref name="column"/>.</summary>
    public static HeadLayout Packed(int seq, int rowWidth, int column, int heads, int headDim) =>
        new(column, (long)seq * rowWidth, rowWidth, headDim, heads);

    /// <summary>The [B, H, S, D] layout.</summary>
    public static HeadLayout Bhsd(int heads, int seq, int headDim) =>
        new(0, (long)heads * seq * headDim, headDim, (long)seq * headDim, heads);
}

/// <summary>
/// The ops of one storage type on one device, each checking its tensors before it launches. GEMMs go to cuBLAS on CUDA
/// (bf16 or fp32 inputs, fp32 accumulation) and to <see cref="GemmKernels"/> on the CPU accelerator.
/// </summary>
public sealed class GpuOps : IDisposable
{
    private readonly Impl _impl;
    private readonly Cublas? _cublas;

    /// <summary>Ops on <paramref name="device"/> for tensors of <paramref name="dtype"/>.</summary>
    public GpuOps(GpuDevice device, GpuDType dtype)
    {
        Device = device;
        DType = dtype;
        _impl = dtype == GpuDType.F32 ? new Impl<float, F32>(device) : new Impl<ushort, BF16>(device);
        if (device.Kind == GpuKind.Cuda) _cublas = new Cublas(((CudaStream)device.Stream).StreamPtr);
    }

    /// <summary>The device.</summary>
    public GpuDevice Device { get; }
    /// <summary>The storage type every tensor of these ops has.</summary>
    public GpuDType DType { get; }

    /// <summary>output[t] = table[ids[t]]: ids [tokens] (already range-checked by <see cref="GpuBatch.Upload"/>).</summary>
    public void Embed(ArrayView<int> ids, GpuTensor table, GpuTensor output)
    {
        long tokens = ids.Length, hidden = table.Shape[^1];
        table.Require("Embed", "table", DType, table.Shape[0], hidden);
        output.Require("Embed", "output", DType, tokens, hidden);
        _impl.Embed(ids, table, output, (int)hidden);
    }

    /// <summary>RMSNorm of each row of <paramref name="input"/> [rows, width].</summary>
    public void RmsNorm(GpuTensor input, GpuTensor weight, GpuTensor output, float eps)
    {
        long rows = input.Shape[0], width = input.Shape[^1];
        input.Require("RmsNorm", "input", DType, rows, width);
        weight.Require("RmsNorm", "weight", DType, width);
        output.Require("RmsNorm", "output", DType, rows, width);
        _impl.RmsNorm(input, weight, output, (int)rows, (int)width, eps);
    }

    /// <summary>y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N]).</summary>
    public void Linear(GpuTensor x, GpuTensor w, GpuTensor? bias, GpuTensor y)
    {
        long m = x.Shape[0], k = x.Shape[^1], n = w.Shape[0];
        x.Require("Linear", "x", DType, m, k);
        w.Require("Linear", "weight", DType, n, k);
        y.Require("Linear", "y", DType, m, n);
        bias?.Require("Linear", "bias", DType, n);
        if (_cublas is not null) _cublas.LinearNT(x.NativePtr, w.NativePtr, y.NativePtr, (int)m, (int)n, (int)k, DType == GpuDType.BF16);
        else _impl.Gemm(x, w, y, (int)m, (int)n, (int)k);
        if (bias is not null) _impl.AddRow(y, bias, (int)n);
    }

    /// <summary>x += y, element-wise (same shape).</summary>
    public void Add(GpuTensor x, GpuTensor y)
    {
        x.Require("Add", "x", DType, x.Shape);
        y.Require("Add", "y", DType, x.Shape);
        _impl.Add(x, y);
    }

    /// <summary>output[t, j] = SiLU(gateUp[t, j]) · gateUp[t, I + j].</summary>
    public void SwiGlu(GpuTensor gateUp, GpuTensor output)
    {
        long tokens = gateUp.Shape[0], i = output.Shape[^1];
        gateUp.Require("SwiGlu", "gateUp", DType, tokens, 2 * i);
        output.Require("SwiGlu", "output", DType, tokens, i);
        _impl.SwiGlu(gateUp, output, (int)i);
    }

    /// <summary>
    /// Rotates the heads described by <paramref name="layout"/> in place with the cos/sin tables of <paramref name="rope"/>
    /// at each token's position id. <paramref name="bf16Rotation"/>: HF's bf16 arithmetic instead of one fp32 rounding.
    /// </summary>
    public void Rope(GpuTensor x, HeadLayout layout, int seq, ArrayView<int> positions, GpuRopeTable rope, bool bf16Rotation, int maxPosition)
    {
        x.Require("Rope", "x", DType, x.Shape);
        int tokens = (int)positions.Length;
        long last = layout.Offset + (tokens / seq - 1) * layout.BatchStride + (seq - 1) * layout.TokenStride + (layout.Heads - 1) * layout.HeadStride + 2L * rope.Half - 1;
        if (tokens % seq != 0 || last >= x.Length)
            throw new ArgumentException($"Rope: {tokens} tokens of {layout.Heads} heads (rotary dim {2 * rope.Half}) at {layout} do not fit in {x}", nameof(layout));
        if (maxPosition >= rope.Positions)
            throw new ArgumentException($"Rope: position {maxPosition} is beyond the table's {rope.Positions} positions", nameof(positions));
        _impl.Rope(x, new RopeArgs<int>
        {
            Positions = positions, Cos = rope.Cos, Sin = rope.Sin, Seq = seq, Tokens = tokens, Heads = layout.Heads, Half = rope.Half,
            Offset = layout.Offset, BatchStride = layout.BatchStride, TokenStride = layout.TokenStride, HeadStride = layout.HeadStride,
            Bf16Rotation = bf16Rotation ? 1 : 0,
        });
    }

    /// <summary>
    /// Attention over a batch whose tile map is built (<see cref="GpuBatch.BuildTileMap(AttentionMask)"/>): q, k, v are
    /// read through their head layouts (token-major rows), the output is [tokens, heads × headDim]. bf16 on CUDA runs
    /// <see cref="FlashAttention"/> (tensor cores) when it supports the shapes (<see cref="UseFlash"/>).
    /// </summary>
    public void Attention<TMask>(GpuTensor q, HeadLayout qLayout, GpuTensor k, HeadLayout kLayout, GpuTensor v, HeadLayout vLayout,
        int headDim, GpuBatch batch, TMask mask, GpuTensor output, ArrayView<float> lse = default) where TMask : struct, IAttentionMask
    {
        int heads = qLayout.Heads, kvHeads = kLayout.Heads;
        if (headDim > AttentionKernels.MaxHeadDim) throw new ArgumentException($"Attention: head dim {headDim} exceeds {AttentionKernels.MaxHeadDim}", nameof(headDim));
        if (kvHeads <= 0 || heads % kvHeads != 0 || vLayout.Heads != kvHeads)
            throw new ArgumentException($"Attention: {heads} query heads cannot share {kvHeads} key and {vLayout.Heads} value heads", nameof(kLayout));
        foreach (var (t, l, name) in new[] { (q, qLayout, "q"), (k, kLayout, "k"), (v, vLayout, "v") })
        {
            t.Require("Attention", name, DType, t.Shape);
            long last = l.Offset + (batch.Tokens - 1L) * l.TokenStride + (l.Heads - 1L) * l.HeadStride + headDim - 1;
            if (l.BatchStride != batch.Seq * l.TokenStride || last >= t.Length)
                throw new ArgumentException($"Attention: {name} at {l} does not fit {batch.Rows} × {batch.Seq} tokens in {t} (token-major rows expected)", name);
        }
        output.Require("Attention", "output", DType, batch.Tokens, (long)heads * headDim);
        if (lse.Length != 0 && lse.Length != (long)batch.Rows * heads * batch.Seq)
            throw new ArgumentException($"Attention: lse has {lse.Length} elements, needs {batch.Rows} × {heads} × {batch.Seq}", nameof(lse));
        if (UseFlash && DType == GpuDType.BF16 && Device.Kind == GpuKind.Cuda)
        {
            var outLayout = HeadLayout.Packed(batch.Seq, heads * headDim, 0, heads, headDim);
            if (FlashAttention.Unsupported(Device, headDim, batch, qLayout, kLayout, vLayout, outLayout) is null)
            {
                _flash ??= new FlashAttention(Device);
                _flash.Forward(new FlashOperand(q.View<ushort>(), qLayout), new FlashOperand(k.View<ushort>(), kLayout),
                    new FlashOperand(v.View<ushort>(), vLayout), new FlashOperand(output.View<ushort>(), outLayout), headDim, batch, mask, lse);
                return;
            }
        }
        _impl.Attention(q, qLayout, k, kLayout, v, vLayout, headDim, batch, mask, output, lse);
    }

    private FlashAttention? _flash;

    /// <summary>
    /// Whether <see cref="Attention{TMask}"/> runs the tensor-core flash kernels where they apply (bf16 on CUDA, a generated
    /// head dimension, 64-token tiles); the portable kernel serves everything else. On by default.
    /// </summary>
    public bool UseFlash { get; set; } = true;

    /// <summary>Per-row cross-entropy of logits [rows, vocab] against the batch's labels; ignored rows give 0.</summary>
    public void CrossEntropy(GpuTensor logits, ArrayView<int> labels, ArrayView<float> loss)
    {
        long rows = logits.Shape[0], vocab = logits.Shape[^1];
        logits.Require("CrossEntropy", "logits", DType, rows, vocab);
        if (labels.Length < rows || loss.Length < rows)
            throw new ArgumentException($"CrossEntropy: {rows} rows need as many labels ({labels.Length}) and loss slots ({loss.Length})");
        _impl.CrossEntropy(logits, labels, loss, (int)rows, (int)vocab);
    }

    /// <summary>Copies <paramref name="source"/> into an fp32 buffer.</summary>
    public void ToFloat(GpuTensor source, ArrayView<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException($"ToFloat: {destination.Length} slots for {source}");
        _impl.ToFloat(source, destination);
    }

    /// <inheritdoc/>
    public void Dispose() => _cublas?.Dispose();

    private abstract class Impl
    {
        public abstract void Embed(ArrayView<int> ids, GpuTensor table, GpuTensor output, int hidden);
        public abstract void RmsNorm(GpuTensor input, GpuTensor weight, GpuTensor output, int rows, int width, float eps);
        public abstract void Gemm(GpuTensor x, GpuTensor w, GpuTensor y, int m, int n, int k);
        public abstract void AddRow(GpuTensor y, GpuTensor bias, int width);
        public abstract void Add(GpuTensor x, GpuTensor y);
        public abstract void SwiGlu(GpuTensor gateUp, GpuTensor output, int intermediate);
        public abstract void Rope(GpuTensor x, RopeArgs<int> geometry);
        public abstract void Attention<TMask>(GpuTensor q, HeadLayout ql, GpuTensor k, HeadLayout kl, GpuTensor v, HeadLayout vl,
            int headDim, GpuBatch batch, TMask mask, GpuTensor output, ArrayView<float> lse) where TMask : struct, IAttentionMask;
        public abstract void CrossEntropy(GpuTensor logits, ArrayView<int> labels, ArrayView<float> loss, int rows, int vocab);
        public abstract void ToFloat(GpuTensor source, ArrayView<float> destination);
    }

    private sealed class Impl<T, TE>(GpuDevice device) : Impl where T : unmanaged where TE : struct, IElement<T>
    {
        private readonly Action<AcceleratorStream, Index1D, EmbedArgs<T>> _embed = device.Kernel<EmbedArgs<T>>(ElementwiseKernels.Embed);
        private readonly Action<AcceleratorStream, Index1D, BinaryArgs<T>> _add = device.Kernel<BinaryArgs<T>>(ElementwiseKernels.Add<T, TE>);
        private readonly Action<AcceleratorStream, Index1D, BinaryArgs<T>> _addRow = device.Kernel<BinaryArgs<T>>(ElementwiseKernels.AddRow<T, TE>);
        private readonly Action<AcceleratorStream, Index1D, SwiGluArgs<T>> _swiGlu = device.Kernel<SwiGluArgs<T>>(ElementwiseKernels.SwiGlu<T, TE>);
        private readonly Action<AcceleratorStream, Index1D, ConvertArgs<T>> _toFloat = device.Kernel<ConvertArgs<T>>(ElementwiseKernels.ToFloat<T, TE>);
        private readonly Action<AcceleratorStream, Index1D, GemmArgs<T>> _gemm = device.Kernel<GemmArgs<T>>(GemmKernels.LinearNT<T, TE>);
        private readonly Action<AcceleratorStream, Index1D, RopeArgs<T>> _rope = device.Kernel<RopeArgs<T>>(RopeKernels.Rotate<T, TE>);
        private readonly Action<AcceleratorStream, KernelConfig, RmsNormArgs<T>> _rmsNorm = device.GroupedKernel<RmsNormArgs<T>>(ReductionKernels.RmsNorm<T, TE>);
        private readonly Action<AcceleratorStream, KernelConfig, CrossEntropyArgs<T>> _crossEntropy = device.GroupedKernel<CrossEntropyArgs<T>>(ReductionKernels.CrossEntropy<T, TE>);
        private Action<AcceleratorStream, Index1D, RopeArgs<ushort>>? _ropeX4;

        private AcceleratorStream Stream => device.Stream;

        public override void Embed(ArrayView<int> ids, GpuTensor table, GpuTensor output, int hidden) =>
            _embed(Stream, (int)output.Length, new EmbedArgs<T> { Ids = ids, Table = table.View<T>(), Output = output.View<T>(), Hidden = hidden });

        public override void RmsNorm(GpuTensor input, GpuTensor weight, GpuTensor output, int rows, int width, float eps) =>
            _rmsNorm(Stream, (rows, device.GroupSize), new RmsNormArgs<T>
            {
                Input = input.View<T>(), Weight = weight.View<T>(), Output = output.View<T>(), Width = width, Eps = eps,
            });

        public override void Gemm(GpuTensor x, GpuTensor w, GpuTensor y, int m, int n, int k) =>
            _gemm(Stream, m * n, new GemmArgs<T> { X = x.View<T>(), W = w.View<T>(), Y = y.View<T>(), N = n, K = k });

        public override void AddRow(GpuTensor y, GpuTensor bias, int width) =>
            _addRow(Stream, (int)y.Length, new BinaryArgs<T> { X = y.View<T>(), Y = bias.View<T>(), Width = width });

        public override void Add(GpuTensor x, GpuTensor y) =>
            _add(Stream, (int)x.Length, new BinaryArgs<T> { X = x.View<T>(), Y = y.View<T>() });

        public override void SwiGlu(GpuTensor gateUp, GpuTensor output, int intermediate) =>
            _swiGlu(Stream, (int)output.Length, new SwiGluArgs<T> { GateUp = gateUp.View<T>(), Output = output.View<T>(), Intermediate = intermediate });

        public override void Rope(GpuTensor x, RopeArgs<int> g)
        {
            bool packed = typeof(T) == typeof(ushort) && g.Half % 4 == 0 && g.Offset % 4 == 0 && g.BatchStride % 4 == 0
                && g.TokenStride % 4 == 0 && g.HeadStride % 4 == 0;
            if (packed)
            {
                _ropeX4 ??= device.Kernel<RopeArgs<ushort>>(RopeKernels.RotateBf16x4);
                _ropeX4(Stream, g.Tokens * (g.Half / 4), Geometry<ushort>(x.View<ushort>(), g));
            }
            else
            {
                _rope(Stream, g.Tokens * g.Heads * g.Half, Geometry<T>(x.View<T>(), g));
            }
        }

        private static RopeArgs<TX> Geometry<TX>(ArrayView<TX> x, in RopeArgs<int> g) where TX : unmanaged => new()
        {
            X = x, Positions = g.Positions, Cos = g.Cos, Sin = g.Sin, Seq = g.Seq, Tokens = g.Tokens, Heads = g.Heads, Half = g.Half,
            Offset = g.Offset, BatchStride = g.BatchStride, TokenStride = g.TokenStride, HeadStride = g.HeadStride, Bf16Rotation = g.Bf16Rotation,
        };

        public override void Attention<TMask>(GpuTensor q, HeadLayout ql, GpuTensor k, HeadLayout kl, GpuTensor v, HeadLayout vl,
            int headDim, GpuBatch batch, TMask mask, GpuTensor output, ArrayView<float> lse)
        {
            var launch = device.GroupedKernel<AttentionArgs<T, TMask>>(AttentionKernels.Forward<T, TE, TMask>);
            long warps = (long)batch.Tokens * ql.Heads;
            int perGroup = Math.Min(AttentionKernels.WarpsPerGroup, device.WarpsPerGroup);
            int groups = (int)((warps + perGroup - 1) / perGroup);
            launch(Stream, (groups, perGroup * device.Accelerator.WarpSize), new AttentionArgs<T, TMask>
            {
                Q = q.View<T>(), K = k.View<T>(), V = v.View<T>(), O = output.View<T>(), Lse = lse,
                QOffset = ql.Offset, KOffset = kl.Offset, VOffset = vl.Offset, QStride = ql.TokenStride, KStride = kl.TokenStride, VStride = vl.TokenStride,
                Rows = batch.Rows, Seq = batch.Seq, Heads = ql.Heads, KvHeads = kl.Heads, HeadDim = headDim, Scale = 1f / MathF.Sqrt(headDim),
                Tiles = batch.Tiles, TileQ = batch.TileQ, TileK = batch.TileK, QueryTiles = batch.QueryTiles, KeyTiles = batch.KeyTiles,
                Layouts = batch.Layouts, Mask = mask,
            });
        }

        public override void CrossEntropy(GpuTensor logits, ArrayView<int> labels, ArrayView<float> loss, int rows, int vocab) =>
            _crossEntropy(Stream, (rows, device.GroupSize), new CrossEntropyArgs<T> { Logits = logits.View<T>(), Labels = labels, Loss = loss, Vocab = vocab });

        public override void ToFloat(GpuTensor source, ArrayView<float> destination) =>
            _toFloat(Stream, (int)source.Length, new ConvertArgs<T> { Input = source.View<T>(), Output = destination });
    }
}
