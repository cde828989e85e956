using System.Collections.Concurrent;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Algorithms;

namespace ModelGen.Backends.Ilgpu;

/// <summary>Which ILGPU accelerator to run on.</summary>
public enum GpuKind
{
    /// <summary>The first CUDA GPU.</summary>
    Cuda,
    /// <summary>ILGPU's CPU accelerator, configured like an NVIDIA GPU (32-lane warps): slow, for tests.</summary>
    Cpu,
}

/// <summary>Raised when the requested accelerator does not exist or cannot hold what is asked of it.</summary>
public sealed class GpuUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// One ILGPU context and accelerator, with the kernels compiled for it. Every kernel is compiled once per
/// (method, generic arguments) — a model's specialization structs and mask types are generic arguments — and the
/// compiled launcher is cached for the life of the device, so a new batch never recompiles.
/// </summary>
public sealed class GpuDevice : IDisposable
{
    private readonly Context _context;
    private readonly ConcurrentDictionary<(MethodInfo, LoadKind), Delegate> _kernels = new();

    /// <summary>How a cached kernel was loaded: one method may be loaded more than one way.</summary>
    private enum LoadKind { ImplicitlyGrouped, Grouped, Hopper }

    private GpuDevice(Context context, Accelerator accelerator, GpuKind kind)
    {
        (_context, Accelerator, Kind) = (context, accelerator, kind);
    }

    /// <summary>The accelerator.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>CUDA or the CPU emulator.</summary>
    public GpuKind Kind { get; }

    /// <summary>The stream every kernel and library call of this device runs on.</summary>
    public AcceleratorStream Stream => Accelerator.DefaultStream;

    /// <summary>Device name and memory, for logs.</summary>
    public string Description => Kind == GpuKind.Cuda
        ? $"{Accelerator.Name} ({Accelerator.MemorySize / (1024.0 * 1024 * 1024):F0} GiB, {((CudaAccelerator)Accelerator).Architecture}, " +
          $"{(MaxSharedBytesPerGroup is int shared ? $"{shared / 1024} KB" : "unknown")} shared memory per group)"
        : $"ILGPU CPU accelerator ({Accelerator.WarpSize}-lane warps)";

    /// <summary>
    /// Warps per thread group for the row-wise kernels (reductions, attention). On CUDA four; on the CPU accelerator
    /// one, because ILGPU emulates every lane as an OS thread and a group barrier then costs a context switch per thread.
    /// </summary>
    public int WarpsPerGroup => Kind == GpuKind.Cpu ? 1 : 4;

    /// <summary>Threads per group of the row-wise kernels: <see cref="WarpsPerGroup"/> warps.</summary>
    public int GroupSize => WarpsPerGroup * Accelerator.WarpSize;

    /// <summary>Opens <paramref name="kind"/>; a missing CUDA device is a <see cref="GpuUnavailableException"/>.</summary>
    /// <param name="kind">CUDA or the CPU accelerator.</param>
    /// <param name="cpuWarpSize">
    /// Lanes per warp on the CPU accelerator: 32 (NVIDIA's) by default; the kernels are written for any power of two,
    /// and fewer lanes make the emulation much faster (every lane is an OS thread, every warp barrier a context switch each).
    /// </param>
    /// <param name="cpuWarpsPerGroup">Warps per group on the CPU accelerator (the flash kernels need 8 warps of 32 lanes: the backward's groups).</param>
    public static GpuDevice Open(GpuKind kind, int cpuWarpSize = 32, int cpuWarpsPerGroup = 1)
    {
        if (kind == GpuKind.Cpu && (cpuWarpSize < 2 || cpuWarpSize > 32 || (cpuWarpSize & (cpuWarpSize - 1)) != 0))
            throw new ArgumentOutOfRangeException(nameof(cpuWarpSize), cpuWarpSize, "the CPU accelerator's warp size must be a power of two from 2 to 32");
        var context = Context.Create(builder =>
        {
            builder.Optimize(OptimizationLevel.O2);
            // Accurate exp/log on CUDA (PTX has only approximations): ILGPU.Algorithms supplies them.
            builder.EnableAlgorithms();
            // mma.sync, ldmatrix and cp.async as PTX intrinsics (CPU emulations elsewhere).
            Kernels.TensorCore.Register(builder);
            // wgmma (Hopper's warpgroup MMA) and TMA loads for the kernels loaded by HopperKernel.
            Kernels.WarpgroupMma.Register(builder);
            Kernels.Tma.Register(builder);
            // One warp (32 lanes unless asked for fewer) on one multiprocessor: few enough emulated threads that a 2-core
            // CI machine is not swamped (CPUDeviceKind.Nvidia emulates 1024 threads per group, each an OS thread).
            if (kind == GpuKind.Cpu) builder.CPU(new CPUDevice(numThreadsPerWarp: cpuWarpSize, numWarpsPerMultiprocessor: cpuWarpsPerGroup, numMultiprocessors: 1));
            else builder.Cuda();
        });
        try
        {
            if (kind == GpuKind.Cpu) return new GpuDevice(context, context.CreateCPUAccelerator(0), kind);
            var devices = context.GetCudaDevices();
            if (devices.Count == 0)
                throw new GpuUnavailableException("no CUDA device found: ILGPU could not load the CUDA driver (libcuda.so) or the driver reports no GPU. Use the CPU accelerator (--device cpu) instead.");
            return new GpuDevice(context, devices[0].CreateAccelerator(context), kind);
        }
        catch (Exception e) when (e is not GpuUnavailableException)
        {
            context.Dispose();
            throw new GpuUnavailableException($"could not open the {kind} accelerator: {e.Message}", e);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>Parses a <c>--device</c> value: <c>cuda</c> or <c>cpu</c>.</summary>
    public static bool TryParse(string? text, out GpuKind kind)
    {
        kind = text?.ToLowerInvariant() switch { "cuda" or "gpu" => GpuKind.Cuda, "cpu" => GpuKind.Cpu, _ => (GpuKind)(-1) };
        return (int)kind >= 0;
    }

    /// <summary>An uninitialized device buffer of <paramref name="length"/> elements, with a clear error when it does not fit.</summary>
    public MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length, string what) where T : unmanaged
    {
        try
        {
            return Accelerator.Allocate1D<T>(Math.Max(1, length));
        }
        catch (Exception e) when (e is OutOfMemoryException or CudaException or AcceleratorException)
        {
            long bytes = length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
            throw new GpuUnavailableException($"{what}: cannot allocate {Bytes(bytes)} on {Description}: {e.Message}", e);
        }
    }

    /// <summary>Throws a clear error when <paramref name="bytes"/> more would not fit in device memory.</summary>
    public void EnsureFits(long bytes, string what)
    {
        if (Kind == GpuKind.Cuda && bytes > Accelerator.MemorySize)
            throw new GpuUnavailableException($"{what} needs {Bytes(bytes)} but {Description} has {Bytes(Accelerator.MemorySize)} of memory");
    }

    /// <summary>Human-readable byte count.</summary>
    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        _ => $"{bytes} B",
    };

    /// <summary>
    /// The launcher of an implicitly grouped kernel <c>static void K(Index1D i, TArgs args)</c> (a closed generic method
    /// when specialized), compiled on first use and cached. Launch with <c>(Stream, extent, args)</c>.
    /// </summary>
    public Action<AcceleratorStream, Index1D, TArgs> Kernel<TArgs>(Action<Index1D, TArgs> kernel) where TArgs : struct =>
        (Action<AcceleratorStream, Index1D, TArgs>)_kernels.GetOrAdd((kernel.Method, LoadKind.ImplicitlyGrouped),
            static (key, acc) => acc.LoadAutoGroupedKernel(key.Item1).CreateLauncherDelegate<Action<AcceleratorStream, Index1D, TArgs>>(), Accelerator);

    /// <summary>
    /// The launcher of an explicitly grouped kernel <c>static void K(TArgs args)</c> (it reads <c>Grid</c>/<c>Group</c>
    /// indices itself), compiled on first use and cached. Launch with <c>(Stream, (grid, group), args)</c>.
    /// </summary>
    public Action<AcceleratorStream, KernelConfig, TArgs> GroupedKernel<TArgs>(Action<TArgs> kernel) where TArgs : struct =>
        GroupedKernel(kernel, dynamicSharedBytes: 0);

    /// <summary>
    /// A kernel with explicit groups that uses <paramref name="dynamicSharedBytes"/> of dynamic shared memory; above the
    /// default 48 KB, the CUDA function's limit is raised once with <c>cuFuncSetAttribute</c>.
    /// </summary>
    public Action<AcceleratorStream, KernelConfig, TArgs> GroupedKernel<TArgs>(Action<TArgs> kernel, int dynamicSharedBytes) where TArgs : struct =>
        (Action<AcceleratorStream, KernelConfig, TArgs>)_kernels.GetOrAdd((kernel.Method, LoadKind.Grouped),
            static (key, state) => Launcher<TArgs>(state.Accelerator.LoadKernel(key.Item1), key.Item1, state.Bytes), (Accelerator, Bytes: dynamicSharedBytes));

    /// <summary>
    /// As <see cref="GroupedKernel{TArgs}(Action{TArgs}, int)"/>, for a kernel that uses Hopper's instructions
    /// (<see cref="Kernels.WarpgroupMma"/>): its PTX is retargeted to <c>sm_90a</c> (<see cref="Hopper.Retarget"/>) before
    /// the driver loads it. On the CPU accelerator the kernel runs as any other (the intrinsics' C# bodies); a CUDA device
    /// older than SM_90 is a <see cref="GpuUnavailableException"/>.
    /// </summary>
    public Action<AcceleratorStream, KernelConfig, TArgs> HopperKernel<TArgs>(Action<TArgs> kernel, int dynamicSharedBytes) where TArgs : struct
    {
        if (Kind == GpuKind.Cpu) return GroupedKernel(kernel, dynamicSharedBytes);
        if (!SupportsHopper)
            throw new GpuUnavailableException($"{kernel.Method.Name} uses Hopper's warpgroup MMA (SM_90), which {Description} does not have");
        return (Action<AcceleratorStream, KernelConfig, TArgs>)_kernels.GetOrAdd((kernel.Method, LoadKind.Hopper),
            static (key, state) =>
            {
                var entry = ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel(key.Item1);
                var compiled = state.Accelerator.CompileKernel(entry);
                return Launcher<TArgs>(state.Accelerator.LoadKernel(Hopper.WithPtx(compiled, Hopper.Retarget(Hopper.PtxOf(compiled)))), key.Item1, state.Bytes);
            }, (Accelerator, Bytes: dynamicSharedBytes));
    }

    /// <summary>Whether this is a CUDA device of compute capability 9.0 (Hopper) exactly: <c>sm_90a</c> code runs on no other.</summary>
    public bool SupportsHopper => Accelerator is CudaAccelerator cuda && CudaDriver.ComputeCapability(cuda.DeviceId) == (9, 0);

    /// <summary>The launcher of a loaded kernel, with its dynamic shared-memory limit raised above the default 48 KB when asked.</summary>
    private static Action<AcceleratorStream, KernelConfig, TArgs> Launcher<TArgs>(Kernel loaded, MethodInfo method, int bytes) where TArgs : struct
    {
        if (loaded is CudaKernel cuda && bytes > 48 * 1024)
        {
            int status = CudaDriver.cuFuncSetAttribute(cuda.FunctionPtr, CudaDriver.MaxDynamicSharedSizeBytes, bytes);
            if (status != 0)
                throw new GpuUnavailableException($"{method.Name}: cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, {bytes}) failed with CUDA error {status}");
        }
        return loaded.CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, TArgs>>();
    }

    /// <summary>
    /// Most dynamic shared memory a kernel group may opt into on this CUDA device, bytes
    /// (<c>CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN</c>: 227 KB on the H100/H200, 163 KB on the A100, 99 KB
    /// on the RTX 30 and 40 series); null on the CPU accelerator, which sets no such limit, or when the driver does not say.
    /// </summary>
    public int? MaxSharedBytesPerGroup => _maxSharedBytes ??= Accelerator is CudaAccelerator cuda ? CudaDriver.OptInSharedBytes(cuda.DeviceId) : null;

    private int? _maxSharedBytes;

    private static class CudaDriver
    {
        public const int MaxDynamicSharedSizeBytes = 8; // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        private const int MaxSharedMemoryPerBlockOptin = 97; // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN

        [System.Runtime.InteropServices.DllImport("cuda")]
        public static extern int cuFuncSetAttribute(IntPtr function, int attribute, int value);

        [System.Runtime.InteropServices.DllImport("cuda")]
        private static extern int cuDeviceGet(out int device, int ordinal);

        [System.Runtime.InteropServices.DllImport("cuda")]
        private static extern int cuDeviceGetAttribute(out int value, int attribute, int device);

        public static (int Major, int Minor)? ComputeCapability(int ordinal) =>
            cuDeviceGet(out int device, ordinal) == 0 && cuDeviceGetAttribute(out int major, 75, device) == 0 && cuDeviceGetAttribute(out int minor, 76, device) == 0
                ? (major, minor) : null; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR

        public static int? OptInSharedBytes(int ordinal) =>
            cuDeviceGet(out int device, ordinal) == 0 && cuDeviceGetAttribute(out int bytes, MaxSharedMemoryPerBlockOptin, device) == 0 ? bytes : null;
    }

    /// <summary>Number of kernels compiled so far (each specialization once).</summary>
    public int CompiledKernels => _kernels.Count;

    /// <summary>Waits for all queued work.</summary>
    public void Synchronize() => Stream.Synchronize();

    /// <inheritdoc/>
    public void Dispose()
    {
        Accelerator.Dispose();
        _context.Dispose();
    }
}
