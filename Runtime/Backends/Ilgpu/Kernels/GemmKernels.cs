using ILGPU;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>Arguments of <see cref="GemmKernels.LinearNT{T, TE}"/>: Y[M, N] = X[M, K] · W[N, K]ᵀ.</summary>
public struct GemmArgs<T> where T : unmanaged
{
    /// <summary>Input rows.</summary>
    public ArrayView<T> X;
    /// <summary>Weight, HF layout [out, in].</summary>
    public ArrayView<T> W;
    /// <summary>Output.</summary>
    public ArrayView<T> Y;
    /// <summary>Output columns.</summary>
    public int N;
    /// <summary>Inner dimension.</summary>
    public int K;
}

/// <summary>The portable GEMM (used on the CPU accelerator; CUDA uses cuBLAS).</summary>
public static class GemmKernels
{
    /// <summary>One thread per output element, fp32 accumulation.</summary>
    public static void LinearNT<T, TE>(Index1D index, GemmArgs<T> a) where T : unmanaged where TE : struct, IElement<T>
    {
        var e = default(TE);
        int m = index / a.N, n = index - m * a.N;
        long x = (long)m * a.K, w = (long)n * a.K;
        float sum = 0f;
        for (int k = 0; k < a.K; k++) sum += e.Load(a.X[x + k]) * e.Load(a.W[w + k]);
        a.Y[index] = e.Store(sum);
    }
}
