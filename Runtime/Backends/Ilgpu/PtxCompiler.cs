using System.Reflection;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Masks;

namespace ModelGen.Backends.Ilgpu;

/// <summary>
/// Compiles kernels to PTX without a GPU (ILGPU's PTX backend runs offline), with the same context settings as
/// <see cref="GpuDevice.Open"/>: for CI, and for <c>ptxas -v</c> on a machine with the CUDA toolkit.
/// </summary>
public static class PtxCompiler
{
    /// <summary>Every kernel specialization the runtime launches, by display name (fp32 and bf16 where both exist).</summary>
    public static IReadOnlyList<(string Name, MethodInfo Method)> Kernels()
    {
        var list = new List<(string, MethodInfo)>();
        Type[][] elements = [[typeof(float), typeof(F32)], [typeof(ushort), typeof(BF16)]];
        void Add(Type type, string method, params Type[] arguments)
        {
            var m = type.GetMethod(method, BindingFlags.Public | BindingFlags.Static)
                ?? throw new InvalidOperationException($"{type.Name}.{method} does not exist");
            if (arguments.Length > 0) m = m.MakeGenericMethod(arguments);
            string suffix = arguments.Length == 0 ? "" : $"<{string.Join(",", arguments.Select(a => a.Name))}>";
            list.Add(($"{type.Name}.{method}{suffix}", m));
        }
        foreach (var e in elements)
        {
            foreach (var name in new[] { "Add", "AddRow", "SwiGlu", "ToFloat" }) Add(typeof(ElementwiseKernels), name, e);
            Add(typeof(GemmKernels), "LinearNT", e);
            Add(typeof(ReductionKernels), "RmsNorm", e);
            Add(typeof(ReductionKernels), "CrossEntropy", e);
            Add(typeof(RopeKernels), "Rotate", e);
            Add(typeof(AttentionKernels), "Forward", e[0], e[1], typeof(MaskTerms));
        }
        Add(typeof(ElementwiseKernels), "Embed", typeof(float));
        Add(typeof(RopeKernels), "RotateBf16x4");
        Add(typeof(AttentionKernels), "TileMap", typeof(MaskTerms));
        Add(typeof(RandomKernels), "RandomNormalBf16");
        foreach (int d in FlashKernels.HeadDims)
            foreach (var pass in new[] { "Forward", "Backward" }) Add(typeof(FlashKernels), $"{pass}D{d}", typeof(MaskTerms));
        foreach (var helper in new[] { "RowLists", "ColumnLists", "BackwardPrepare", "ScaleToBf16", "SwizzledToBf16" }) Add(typeof(FlashKernels), helper);
        Add(typeof(FlashKernels), "TokenSpans", typeof(MaskTerms));
        foreach (var anchor in new[] { "Prepare", "Finish" }) Add(typeof(AnchorKernels), anchor);
        foreach (var gemm in new[] { "GemmNT", "GemmNN" }) Add(typeof(WarpgroupGemmKernels), gemm);
        foreach (var pass in new[] { "Forward", "Backward" }) Add(typeof(HopperFlashKernels), $"{pass}D128", typeof(MaskTerms));
        return list;
    }

    /// <summary>
    /// The PTX of <paramref name="method"/> (an implicitly grouped kernel when it takes an index and arguments, explicitly
    /// grouped otherwise); a kernel that uses Hopper's warpgroup MMA comes retargeted to <c>sm_90a</c>, as the device loads it.
    /// </summary>
    public static string Compile(MethodInfo method, CudaArchitecture? architecture = null)
    {
        var arch = architecture ?? CudaArchitecture.SM_80;
        using var context = Context.Create(b =>
        {
            b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2);
            TensorCore.Register(b);
            WarpgroupMma.Register(b);
            Tma.Register(b);
        });
        var backend = new PTXBackend(context, new CudaCapabilityContext(arch), arch, CudaInstructionSet.ISA_80, null);
        bool grouped = method.GetParameters().Length == 1;
        var entry = grouped ? EntryPointDescription.FromExplicitlyGroupedKernel(method) : EntryPointDescription.FromImplicitlyGroupedKernel(method);
        var compiled = backend.Compile(entry, KernelSpecialization.Empty);
        string ptx = Hopper.PtxOf(compiled);
        // A Hopper kernel goes the device's way (GpuDevice.HopperKernel): retargeted and rebuilt as a compiled kernel.
        return ptx.Contains("wgmma.", StringComparison.Ordinal) ? Hopper.PtxOf(Hopper.WithPtx(compiled, Hopper.Retarget(ptx))) : ptx;
    }
}
