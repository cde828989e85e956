using System.Reflection;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Masks;

namespace ModelGen.Tests.Ilgpu;

/// <summary>
/// Every kernel specialization compiles to PTX for SM_80 without a GPU (ILGPU's PTX backend runs offline), so a kernel
/// that only the CUDA backend rejects — an intrinsic without a PTX implementation, a non-blittable argument — fails
/// in CI instead of on the GPU machine.
/// </summary>
public class PtxCompileTests
{
    private static readonly Type[][] Elements = [[typeof(float), typeof(F32)], [typeof(ushort), typeof(BF16)]];

    public static IEnumerable<object[]> Kernels()
    {
        foreach (var name in new[] { "ElementwiseKernels.Add", "ElementwiseKernels.AddRow", "ElementwiseKernels.SwiGlu", "ElementwiseKernels.ToFloat",
                     "GemmKernels.LinearNT", "ReductionKernels.RmsNorm", "ReductionKernels.CrossEntropy", "RopeKernels.Rotate" })
            foreach (var e in Elements) yield return [name, e[0].Name, new[] { e[0], e[1] }];
        yield return ["ElementwiseKernels.Embed", "Single", new[] { typeof(float) }];
        yield return ["RopeKernels.RotateBf16x4", "UInt16", Type.EmptyTypes];
        yield return ["AttentionKernels.TileMap", "MaskTerms", new[] { typeof(MaskTerms) }];
        foreach (var e in Elements) yield return ["AttentionKernels.Forward", e[0].Name, new[] { e[0], e[1], typeof(MaskTerms) }];
        foreach (var d in FlashKernels.HeadDims)
            foreach (var pass in new[] { "Forward", "Backward" }) yield return [$"FlashKernels.{pass}D{d}", "MaskTerms", new[] { typeof(MaskTerms) }];
        foreach (var helper in new[] { "RowLists", "ColumnLists", "Delta", "ScaleToBf16" }) yield return [$"FlashKernels.{helper}", "", Type.EmptyTypes];
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_compiles_to_ptx(string kernel, string element, Type[] typeArguments)
    {
        _ = element;
        var (typeName, methodName) = (kernel.Split('.')[0], kernel.Split('.')[1]);
        var type = typeof(GpuDevice).Assembly.GetType($"ModelGen.Backends.Ilgpu.Kernels.{typeName}", throwOnError: true)!;
        var method = type.GetMethod(methodName, BindingFlags.Public | BindingFlags.Static)!;
        if (typeArguments.Length > 0) method = method.MakeGenericMethod(typeArguments);
        using var context = Context.Create(b =>
        {
            b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2);
            TensorCore.Register(b);
        });
        var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_80, null);
        bool grouped = method.GetParameters().Length == 1;
        var entry = grouped ? EntryPointDescription.FromExplicitlyGroupedKernel(method) : EntryPointDescription.FromImplicitlyGroupedKernel(method);
        var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
        Assert.Contains(".entry", compiled.PTXAssembly);
        if (methodName.StartsWith("Forward") && typeName == "FlashKernels")
        {
            // The tensor-core path is really taken: mma, ldmatrix and cp.async appear as instructions.
            Assert.Contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", compiled.PTXAssembly);
            Assert.Contains("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", compiled.PTXAssembly);
            Assert.Contains("cp.async.cg.shared.global", compiled.PTXAssembly);
        }
    }
}
