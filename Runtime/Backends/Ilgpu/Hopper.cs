using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU.Backends;
using ILGPU.Backends.PTX;

namespace ModelGen.Backends.Ilgpu;

/// <summary>
/// Retargets ILGPU's PTX to <c>sm_90a</c>, the only target on which Hopper's warpgroup MMA (<c>wgmma</c>) exists.
/// ILGPU 1.5.3 emits <c>.target sm_80</c> on an H100/H200 and knows no architecture-specific (<c>a</c>) targets; the
/// PTX it writes is otherwise valid for SM_90, so the target line is replaced and the dynamic shared memory is aligned to
/// 1024 bytes (the period of the 128-byte swizzle the wgmma descriptors read; ILGPU declares 4). The driver then
/// compiles the PTX for the device as usual. ILGPU's offline compiler writes ISA 8.0; the
/// version is raised to 8.3 for the tensor-map fence (<see cref="Retarget"/>).
/// </summary>
public static partial class Hopper
{
    /// <summary>The target the retargeted PTX names.</summary>
    public const string Target = "sm_90a";

    /// <summary>Alignment of the dynamic shared memory in retargeted PTX, bytes.</summary>
    public const int SharedAlignment = 1024;

    [GeneratedRegex(@"^\.target\s+sm_\d+a?\s*$", RegexOptions.Multiline)]
    private static partial Regex TargetLine();

    [GeneratedRegex(@"^\.version\s+(\d+)\.(\d+)\s*$", RegexOptions.Multiline)]
    private static partial Regex VersionLine();

    [GeneratedRegex(@"(\.extern\s+\.shared\s+)\.align\s+\d+(\s+\.b8\s+\w+\[\])")]
    private static partial Regex DynamicShared();

    /// <summary>
    /// <paramref name="ptx"/> with <c>.target sm_90a</c>, 1024-byte aligned dynamic shared memory and PTX ISA 8.3 or later
    /// (the first with <c>fence.proxy.tensormap</c>, which <see cref="Kernels.Tma.FenceMap"/> emits; a later version is
    /// kept); a clear error when the PTX has no target line or a version below 8.0 (the first with <c>wgmma</c> and the
    /// bulk copies the kernels use).
    /// </summary>
    public static string Retarget(string ptx)
    {
        var version = VersionLine().Match(ptx);
        if (!version.Success) throw new InvalidOperationException("Hopper.Retarget: the PTX has no .version line");
        int major = int.Parse(version.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        int minor = int.Parse(version.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        if (major < 8)
            throw new InvalidOperationException($"Hopper.Retarget: PTX ISA {major}.{minor} has no wgmma (needs 8.0 or later)");
        if (!TargetLine().IsMatch(ptx)) throw new InvalidOperationException("Hopper.Retarget: the PTX has no .target line");
        string result = TargetLine().Replace(ptx, $".target {Target}", 1);
        if (major == 8 && minor < 3) result = VersionLine().Replace(result, ".version 8.3", 1);
        return DynamicShared().Replace(result, $"$1.align {SharedAlignment}$2");
    }

    /// <summary>The PTX of a kernel compiled by ILGPU's CUDA backend.</summary>
    public static string PtxOf(CompiledKernel kernel) =>
        (kernel as PTXCompiledKernel ?? throw new InvalidOperationException($"{kernel.Name} was not compiled to PTX")).PTXAssembly;

    /// <summary>
    /// A copy of <paramref name="kernel"/> with other PTX. ILGPU loads a <see cref="PTXCompiledKernel"/>'s text as it is
    /// (<c>cuModuleLoadData</c>), but its constructor and the entry point it needs are internal: both are reached
    /// through reflection, and their absence (another ILGPU version) is a clear error.
    /// </summary>
    public static CompiledKernel WithPtx(CompiledKernel kernel, string ptx)
    {
        var constructor = typeof(PTXCompiledKernel).GetConstructors(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)
            .SingleOrDefault(c => c.GetParameters().Select(p => p.ParameterType.Name).SequenceEqual(["Context", "EntryPoint", "KernelInfo", "String"]))
            ?? throw new InvalidOperationException("Hopper.WithPtx: this ILGPU version has no PTXCompiledKernel(Context, EntryPoint, KernelInfo, string) constructor (written for ILGPU 1.5.3)");
        var entryPoint = typeof(CompiledKernel).GetProperty("EntryPoint", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)
            ?? throw new InvalidOperationException("Hopper.WithPtx: this ILGPU version's CompiledKernel has no EntryPoint (written for ILGPU 1.5.3)");
        return (CompiledKernel)constructor.Invoke([kernel.Context, entryPoint.GetValue(kernel), kernel.Info, ptx]);
    }
}
