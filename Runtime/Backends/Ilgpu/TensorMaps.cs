using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu.Kernels;

namespace ModelGen.Backends.Ilgpu;

/// <summary>
/// Tensor maps for <see cref="Tma.Load"/>: 128-byte descriptors of a bf16 attention operand, encoded on the host for
/// one device. On CUDA it is the driver's <c>CUtensorMap</c> (<c>cuTensorMapEncodeTiled</c>); on the CPU accelerator an
/// emulation descriptor of the same size that <see cref="Tma"/>'s C# bodies read.
/// </summary>
/// <remarks>
/// An operand of <see cref="HeadLayout"/> with heads of <c>D</c> elements packed along each token's row is the 4-D
/// tensor (D, heads, seq, rows), innermost first, and one box is 64 elements of one head's row × 64 tokens of one batch
/// row, written with the 128-byte swizzle: the 8 KB block of <see cref="WarpgroupMma.Offset"/>'s layout that a 64-token
/// tile's 64-column block is. Tokens past the sequence (a short last tile, a missing second tile) arrive as zeros.
/// </remarks>
public static class TensorMaps
{
    /// <summary>64-bit words of one tensor map (128 bytes).</summary>
    public const int Words = 16;

    /// <summary>Elements along a head's row in one box: a 128-byte line of the swizzle.</summary>
    public const int BoxColumns = 64;

    /// <summary>Tokens in one box.</summary>
    public const int BoxTokens = 64;

    /// <summary>Bytes one box delivers.</summary>
    public const int BoxBytes = BoxColumns * BoxTokens * 2;

    /// <summary>
    /// Encodes the map of the operand in <paramref name="view"/> (bf16 bits) laid out as <paramref name="layout"/> with heads
    /// of <paramref name="headDim"/> elements, <paramref name="rows"/> batch rows of <paramref name="seq"/> tokens, into
    /// <paramref name="target"/> (<see cref="Words"/> words). <paramref name="name"/> names the operand in errors.
    /// </summary>
    public static void Encode(GpuDevice device, string name, ArrayView<ushort> view, HeadLayout layout, int headDim, int seq, int rows, Span<ulong> target)
    {
        if (target.Length < Words) throw new ArgumentException($"tensor map of {name}: needs {Words} words, got {target.Length}", nameof(target));
        if (headDim % BoxColumns != 0) throw new ArgumentException($"tensor map of {name}: head dim {headDim} is not a multiple of {BoxColumns}", nameof(headDim));
        if (layout.HeadStride != headDim) throw new ArgumentException($"tensor map of {name}: heads must be packed along the token row (head stride {layout.HeadStride} ≠ {headDim})", nameof(layout));
        long address = (long)view.LoadEffectiveAddressAsPtr() + 2 * layout.Offset;
        if (address % 16 != 0) throw new ArgumentException($"tensor map of {name}: the first element (offset {layout.Offset}) is not 16-byte aligned (address 0x{address:x})", nameof(view));
        long[] strides = [2 * layout.HeadStride, 2 * layout.TokenStride, 2 * layout.BatchStride];
        string[] strideNames = ["head stride", "token stride", "batch stride"];
        for (int i = 0; i < strides.Length; i++)
            if (strides[i] % 16 != 0 || strides[i] <= 0 || strides[i] >= 1L << 40)
                throw new ArgumentException($"tensor map of {name}: {strideNames[i]} {strides[i] / 2} elements is not a positive multiple of 8 below 2^39", nameof(layout));
        long end = layout.Offset + (rows - 1) * layout.BatchStride + (seq - 1) * layout.TokenStride + (layout.Heads - 1) * layout.HeadStride + headDim;
        if (end > view.Length) throw new ArgumentException($"tensor map of {name}: the layout reaches element {end}, the view has {view.Length}", nameof(view));
        ulong[] dims = [(ulong)headDim, (ulong)layout.Heads, (ulong)seq, (ulong)rows];
        target[..Words].Clear();
        if (device.Kind == GpuKind.Cpu)
        {
            Emulated.Write(target, new Emulated(address, dims, strides));
            return;
        }
        Driver.Encode(name, address, dims, strides, target);
    }

    /// <summary>The CPU accelerator's descriptor: host address, shape (innermost first), byte strides of dims 1–3, box.</summary>
    internal readonly record struct Emulated(long Address, long Dim0, long Dim1, long Dim2, long Dim3, long Stride1, long Stride2, long Stride3, int Box0, int Box2)
    {
        private const ulong Magic = 0x50414D524F534E54; // "TNSORMAP"

        public Emulated(long address, ulong[] dims, long[] strides)
            : this(address, (long)dims[0], (long)dims[1], (long)dims[2], (long)dims[3], strides[0], strides[1], strides[2], BoxColumns, BoxTokens) { }

        public static void Write(Span<ulong> target, Emulated d)
        {
            target[0] = Magic;
            target[1] = (ulong)d.Address;
            target[2] = (ulong)d.Dim0; target[3] = (ulong)d.Dim1; target[4] = (ulong)d.Dim2; target[5] = (ulong)d.Dim3;
            target[6] = (ulong)d.Stride1; target[7] = (ulong)d.Stride2; target[8] = (ulong)d.Stride3;
            target[9] = (ulong)d.Box0; target[10] = (ulong)d.Box2;
        }

        /// <summary>The descriptor at <paramref name="map"/>; anything else (a driver map on the CPU, say) is a clear error.</summary>
        public static Emulated Read(ref ulong map)
        {
            var w = new ulong[11];
            for (int i = 0; i < w.Length; i++) w[i] = Unsafe.Add(ref map, i);
            if (w[0] != Magic) throw new InvalidOperationException("Tma emulation: the tensor map is not a CPU emulation descriptor (encode it with TensorMaps.Encode on the CPU accelerator)");
            return new((long)w[1], (long)w[2], (long)w[3], (long)w[4], (long)w[5], (long)w[6], (long)w[7], (long)w[8], (int)w[9], (int)w[10]);
        }
    }

    /// <summary><c>cuTensorMapEncodeTiled</c> (CUDA 12+ driver).</summary>
    private static class Driver
    {
        private const int DataTypeUInt16 = 1;     // CU_TENSOR_MAP_DATA_TYPE_UINT16: bf16 bits copied as they are
        private const int InterleaveNone = 0;
        private const int Swizzle128B = 3;        // CU_TENSOR_MAP_SWIZZLE_128B
        private const int L2Promotion256B = 3;    // CU_TENSOR_MAP_L2_PROMOTION_L2_256B
        private const int OobFillNone = 0;        // out-of-bounds elements are zeros

        [DllImport("cuda")]
        private static extern unsafe int cuTensorMapEncodeTiled(void* tensorMap, int dataType, uint rank, void* globalAddress, ulong* globalDim,
            ulong* globalStrides, uint* boxDim, uint* elementStrides, int interleave, int swizzle, int l2Promotion, int oobFill);

        public static unsafe void Encode(string name, long address, ulong[] dims, long[] strides, Span<ulong> target)
        {
            // The driver wants the map 64-byte aligned.
            void* map = NativeMemory.AlignedAlloc(Words * 8, 64);
            try
            {
                ulong* globalDim = stackalloc ulong[4];
                ulong* globalStrides = stackalloc ulong[3];
                uint* box = stackalloc uint[4];
                uint* elementStrides = stackalloc uint[4];
                for (int i = 0; i < 4; i++) { globalDim[i] = dims[i]; elementStrides[i] = 1; }
                for (int i = 0; i < 3; i++) globalStrides[i] = (ulong)strides[i];
                box[0] = BoxColumns; box[1] = 1; box[2] = BoxTokens; box[3] = 1;
                int status = cuTensorMapEncodeTiled(map, DataTypeUInt16, 4, (void*)address, globalDim, globalStrides, box, elementStrides,
                    InterleaveNone, Swizzle128B, L2Promotion256B, OobFillNone);
                if (status != 0)
                    throw new GpuUnavailableException($"tensor map of {name}: cuTensorMapEncodeTiled failed with CUDA error {status} (dims {string.Join('×', dims)}, byte strides {string.Join(", ", strides)})");
                new ReadOnlySpan<ulong>(map, Words).CopyTo(target);
            }
            finally
            {
                NativeMemory.AlignedFree(map);
            }
        }
    }
}
