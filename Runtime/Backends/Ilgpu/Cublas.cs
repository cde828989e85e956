using System.Reflection;
using System.Runtime.InteropServices;

namespace ModelGen.Backends.Ilgpu;

/// <summary>
/// The few cuBLAS entry points ModelGen needs, bound by hand: ILGPU's bundled wrapper has no bf16 and only knows
/// libcublas 10–12, while CUDA 13 machines ship <c>libcublas.so.13</c>. The library is looked up under its versioned
/// names and in <c>/usr/local/cuda/lib64</c>.
/// </summary>
internal static partial class CublasNative
{
    private const string Library = "modelgen-cublas";

    static CublasNative() => NativeLibrary.SetDllImportResolver(typeof(CublasNative).Assembly, Resolve);

    /// <summary>Makes sure the resolver is registered before the first call.</summary>
    public static void EnsureResolver() { }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Library) return IntPtr.Zero;
        foreach (var candidate in Candidates())
            if (NativeLibrary.TryLoad(candidate, out var handle)) return handle;
        throw new DllNotFoundException($"cuBLAS not found: tried {string.Join(", ", Candidates())}");
    }

    public static IEnumerable<string> Candidates()
    {
        foreach (var v in new[] { "13", "12", "11" })
        {
            yield return $"libcublas.so.{v}";
            yield return $"/usr/local/cuda/lib64/libcublas.so.{v}";
        }
        yield return "libcublas.so";
    }

    public const int OpN = 0, OpT = 1;
    public const int R32F = 0, R16BF = 14;
    public const int Compute32F = 68;
    public const int GemmDefault = -1;

    [LibraryImport(Library, EntryPoint = "cublasCreate_v2")]
    public static partial int Create(out IntPtr handle);

    [LibraryImport(Library, EntryPoint = "cublasDestroy_v2")]
    public static partial int Destroy(IntPtr handle);

    [LibraryImport(Library, EntryPoint = "cublasSetStream_v2")]
    public static partial int SetStream(IntPtr handle, IntPtr stream);

    [LibraryImport(Library, EntryPoint = "cublasGemmEx")]
    public static partial int GemmEx(IntPtr handle, int transA, int transB, int m, int n, int k,
        ref float alpha, IntPtr a, int aType, int lda, IntPtr b, int bType, int ldb,
        ref float beta, IntPtr c, int cType, int ldc, int computeType, int algo);

    public static void Check(int status, string call)
    {
        if (status == 0) return;
        string name = status switch
        {
            1 => "NOT_INITIALIZED", 3 => "ALLOC_FAILED", 7 => "INVALID_VALUE", 8 => "ARCH_MISMATCH",
            11 => "MAPPING_ERROR", 13 => "EXECUTION_FAILED", 14 => "INTERNAL_ERROR", 15 => "NOT_SUPPORTED", 16 => "LICENSE_ERROR",
            _ => "unknown",
        };
        throw new InvalidOperationException($"{call} failed: CUBLAS_STATUS_{name} ({status})");
    }
}

/// <summary>A cuBLAS handle bound to a device's stream: row-major Y = X·Wᵀ with fp32 accumulation.</summary>
public sealed class Cublas : IDisposable
{
    private IntPtr _handle;

    /// <summary>Creates a handle on <paramref name="stream"/> (a CUDA stream pointer).</summary>
    public Cublas(IntPtr stream)
    {
        CublasNative.EnsureResolver();
        try
        {
            CublasNative.Check(CublasNative.Create(out _handle), "cublasCreate");
        }
        catch (DllNotFoundException e)
        {
            throw new GpuUnavailableException($"cuBLAS is not installed: {e.Message}", e);
        }
        CublasNative.Check(CublasNative.SetStream(_handle, stream), "cublasSetStream");
    }

    /// <summary>
    /// Y[M, N] = X[M, K] · W[N, K]ᵀ for row-major buffers (HF linear weights are [out, in]). In cuBLAS's column-major
    /// terms that is Yᵀ[N, M] = op(W)·Xᵀ with W read transposed. <paramref name="bf16"/>: inputs and output bf16;
    /// accumulation is fp32 in both cases.
    /// </summary>
    public void LinearNT(IntPtr x, IntPtr w, IntPtr y, int m, int n, int k, bool bf16, float beta = 0f)
    {
        float alpha = 1f;
        int type = bf16 ? CublasNative.R16BF : CublasNative.R32F;
        CublasNative.Check(CublasNative.GemmEx(_handle, CublasNative.OpT, CublasNative.OpN, n, m, k,
            ref alpha, w, type, k, x, type, k, ref beta, y, type, n, CublasNative.Compute32F, CublasNative.GemmDefault), "cublasGemmEx");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_handle != IntPtr.Zero) CublasNative.Destroy(_handle);
        _handle = IntPtr.Zero;
    }
}
