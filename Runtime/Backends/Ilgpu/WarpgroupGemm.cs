using ILGPU;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu.Kernels;

namespace ModelGen.Backends.Ilgpu;

/// <summary>Host side of <see cref="WarpgroupGemmKernels"/>: launches on device buffers, with the shape checked first.</summary>
public static class WarpgroupGemm
{
    /// <summary>
    /// C [m, n] = A [m, k] · Bᵀ (<paramref name="transposedB"/>: B is [n, k], both operands K-major) or A · B (B is [k, n],
    /// A from registers and B N-major), each product added <paramref name="repeats"/> times. m, n, k: positive multiples of 128.
    /// </summary>
    public static void Launch(GpuDevice device, ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<float> c, int m, int n, int k, bool transposedB, int repeats = 1)
    {
        const int tile = WarpgroupGemmKernels.Tile;
        foreach (var (name, value) in new[] { ("m", m), ("n", n), ("k", k) })
            if (value <= 0 || value % tile != 0) throw new ArgumentException($"WarpgroupGemm: {name} = {value} is not a positive multiple of {tile}");
        if (repeats < 1) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, "at least 1");
        if (a.Length < (long)m * k || b.Length < (long)n * k || c.Length < (long)m * n)
            throw new ArgumentException($"WarpgroupGemm: buffers of {a.Length}, {b.Length}, {c.Length} elements are too small for {m}×{k}, {(transposedB ? $"{n}×{k}" : $"{k}×{n}")}, {m}×{n}");
        var launch = device.HopperKernel<WarpgroupGemmArgs>(transposedB ? WarpgroupGemmKernels.GemmNT : WarpgroupGemmKernels.GemmNN, WarpgroupGemmKernels.SharedBytes);
        var config = new KernelConfig(new Index3D(m / tile * (n / tile), 1, 1), new Index3D(WarpgroupGemmKernels.Threads, 1, 1),
            SharedMemoryConfig.RequestDynamic<ushort>(WarpgroupGemmKernels.SharedBytes / 2));
        launch(device.Stream, config, new WarpgroupGemmArgs { A = a, B = b, C = c, M = m, N = n, K = k, Repeats = repeats });
    }

    /// <summary><see cref="Launch"/> on host arrays (bf16 bits): the product, fp32.</summary>
    public static float[] Multiply(GpuDevice device, ushort[] a, ushort[] b, int m, int n, int k, bool transposedB, int repeats = 1)
    {
        using var da = device.Accelerator.Allocate1D(a);
        using var db = device.Accelerator.Allocate1D(b);
        using var dc = device.Allocate<float>((long)m * n, "WarpgroupGemm output");
        Launch(device, da.View, db.View, dc.View, m, n, k, transposedB, repeats);
        device.Stream.Synchronize();
        return dc.GetAsArray1D();
    }
}
