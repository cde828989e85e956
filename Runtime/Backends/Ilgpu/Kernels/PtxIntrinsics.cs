using System.Reflection;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.IR.Intrinsics;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>Registration of custom PTX intrinsics (<see cref="TensorCore"/>, <see cref="WarpgroupMma"/>, <see cref="Tma"/>).</summary>
internal static class PtxIntrinsics
{
    /// <summary>
    /// Registers each public static method of <paramref name="type"/> named in <paramref name="pairs"/> with the private
    /// static code generator beside it, for a context under construction (<c>[IntrinsicImplementation]</c> methods whose
    /// C# bodies are what the CPU accelerator runs).
    /// </summary>
    public static void Register(Context.Builder builder, Type type, params (string Method, string Handler)[] pairs)
    {
        var manager = builder.GetIntrinsicManager();
        foreach (var (method, handler) in pairs)
            manager.RegisterMethod(
                type.GetMethod(method, BindingFlags.Public | BindingFlags.Static) ?? throw new InvalidOperationException($"{type.Name} has no public static {method}"),
                new PTXIntrinsic(type.GetMethod(handler, BindingFlags.NonPublic | BindingFlags.Static) ?? throw new InvalidOperationException($"{type.Name} has no private static {handler}"),
                    IntrinsicImplementationMode.GenerateCode));
    }
}
