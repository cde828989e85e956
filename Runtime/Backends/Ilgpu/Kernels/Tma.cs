using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.IR.Intrinsics;
using ILGPU.IR.Values;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>
/// Hopper's tensor memory accelerator (TMA) and its transaction barriers (<c>mbarrier</c>, SM_90) as custom PTX
/// intrinsics: one thread hands the copy engine a tile of a tensor described by a tensor map (<see cref="TensorMaps"/>)
/// and the engine writes it to shared memory in the 128-byte swizzled layout of <see cref="WarpgroupMma.Offset"/>, then
/// completes the bytes it moved on a barrier in shared memory that the consumers wait on. No consumer thread computes a
/// copy address.
/// </summary>
/// <remarks>
/// <para>
/// A barrier takes 8 bytes of shared memory (4 bf16 elements, 8-byte aligned) and is initialized for one arrival: the
/// issuing thread's <see cref="ExpectBytes"/>. A phase completes when that arrival has happened and the loads issued
/// against it have delivered the bytes it announced; a waiter asks for the completion of the phase of a given parity
/// (<see cref="TryWait"/>), the k-th use of a barrier being parity k mod 2.
/// </para>
/// <para>
/// On the CPU accelerator the C# bodies emulate all of it: the tensor map is then <see cref="TensorMaps"/>' emulation
/// descriptor (the operand's host address, shape and strides), a load copies its box at once, and a barrier is two
/// 32-bit words (completed phases × 2 + arrived, bytes outstanding) written by the issuing thread and read with acquire
/// semantics by the waiters, who yield until it completes and fail after <see cref="EmulatedWaitLimit"/>.
/// </para>
/// </remarks>
public static class Tma
{
    /// <summary>Shared-memory elements (bf16) of one barrier: 8 bytes.</summary>
    public const int BarrierElements = 4;

    /// <summary>How long an emulated wait yields before it reports a barrier that never completes.</summary>
    public static readonly TimeSpan EmulatedWaitLimit = TimeSpan.FromSeconds(30);

    /// <summary><c>mbarrier.init.shared::cta.b64</c> for one arrival, at <paramref name="shared"/> + <paramref name="barrier"/> (elements, 8-byte aligned).</summary>
    [IntrinsicImplementation]
    public static void InitBarrier(ref ushort shared, int barrier)
    {
        Volatile.Write(ref Word(ref shared, barrier, 1), 0);
        Volatile.Write(ref Word(ref shared, barrier, 0), 0);
    }

    /// <summary><c>fence.mbarrier_init.release.cluster</c>: makes the initialized barriers visible to the copy engine (then a group barrier).</summary>
    [IntrinsicImplementation]
    public static void FenceBarrierInit() { }

    /// <summary>
    /// <c>fence.proxy.tensormap::generic.acquire.gpu</c> on the 128-byte tensor map at <paramref name="map"/>: the map
    /// written into global memory before the launch is what this thread's loads read.
    /// </summary>
    [IntrinsicImplementation]
    public static void FenceMap(ref ulong map) { }

    /// <summary>
    /// <c>mbarrier.arrive.expect_tx.shared::cta.b64</c>: this thread's arrival on the barrier, announcing
    /// <paramref name="bytes"/> to be delivered by loads issued against it in this phase.
    /// </summary>
    [IntrinsicImplementation]
    public static void ExpectBytes(ref ushort shared, int barrier, int bytes)
    {
        ref int state = ref Word(ref shared, barrier, 0);
        ref int pending = ref Word(ref shared, barrier, 1);
        if ((state & 1) != 0) throw new InvalidOperationException($"Tma emulation: a second arrival on the barrier at element {barrier} in one phase (it counts one)");
        Volatile.Write(ref pending, pending + bytes);
        Volatile.Write(ref state, state | 1);
        Complete(ref state, ref pending);
    }

    /// <summary>
    /// <c>cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes</c>: the box of the tensor
    /// map <paramref name="map"/> at coordinates (<paramref name="c0"/>, <paramref name="c1"/>, <paramref name="c2"/>,
    /// <paramref name="c3"/>) (innermost first) to <paramref name="shared"/> + <paramref name="element"/> (1024-byte
    /// aligned), its bytes completed on the barrier at <paramref name="barrier"/>. Elements outside the tensor arrive as zeros.
    /// </summary>
    [IntrinsicImplementation]
    public static void Load(ref ushort shared, int element, int barrier, ref ulong map, int c0, int c1, int c2, int c3)
    {
        var d = TensorMaps.Emulated.Read(ref map);
        int box0 = d.Box0, box2 = d.Box2;
        unsafe
        {
            var source = (byte*)d.Address;
            for (int r = 0; r < box2; r++)
                for (int e = 0; e < box0; e++)
                {
                    long x0 = c0 + e, x2 = c2 + r;
                    bool inside = x0 >= 0 && x0 < d.Dim0 && c1 >= 0 && c1 < d.Dim1 && x2 >= 0 && x2 < d.Dim2 && c3 >= 0 && c3 < d.Dim3;
                    ushort value = inside ? *(ushort*)(source + 2 * x0 + c1 * d.Stride1 + x2 * d.Stride2 + c3 * d.Stride3) : (ushort)0;
                    Unsafe.Add(ref shared, element + WarpgroupMma.Offset(r, e, 0)) = value;
                }
        }
        ref int state = ref Word(ref shared, barrier, 0);
        ref int pending = ref Word(ref shared, barrier, 1);
        Volatile.Write(ref pending, pending - 2 * box0 * box2);
        Complete(ref state, ref pending);
    }

    /// <summary>
    /// <c>mbarrier.try_wait.parity.shared::cta.b64</c>: 1 when the phase of parity <paramref name="parity"/> (0 or 1) of
    /// the barrier has completed, and its loads' writes are visible to this thread; 0 after the hardware's time limit.
    /// Wait with <c>while (TryWait(…) == 0) { }</c>.
    /// </summary>
    [IntrinsicImplementation]
    public static int TryWait(ref ushort shared, int barrier, int parity)
    {
        var started = DateTime.UtcNow;
        while (((Volatile.Read(ref Word(ref shared, barrier, 0)) >> 1) & 1) == parity)
        {
            if (DateTime.UtcNow - started > EmulatedWaitLimit)
                throw new InvalidOperationException($"Tma emulation: the phase of parity {parity} of the barrier at element {barrier} did not complete within {EmulatedWaitLimit.TotalSeconds} s");
            Thread.Yield();
        }
        return 1;
    }

    /// <summary>Phases the emulated barrier at <paramref name="barrier"/> has completed (CPU emulation only).</summary>
    internal static int EmulatedPhases(ref ushort shared, int barrier) => Volatile.Read(ref Word(ref shared, barrier, 0)) >> 1;

    private static ref int Word(ref ushort shared, int barrier, int word) => ref Unsafe.As<ushort, int>(ref Unsafe.Add(ref shared, barrier + 2 * word));

    /// <summary>Completes the phase (state → completed + 1, not arrived) once its arrival is in and no bytes are outstanding.</summary>
    private static void Complete(ref int state, ref int pending)
    {
        if ((state & 1) == 0 || pending != 0) return;
        Volatile.Write(ref state, (state & ~1) + 2);
    }

    /// <summary>Registers the PTX code of the intrinsics above with a context under construction.</summary>
    public static void Register(Context.Builder builder) => PtxIntrinsics.Register(builder, typeof(Tma),
            (nameof(InitBarrier), nameof(EmitInitBarrier)),
            (nameof(FenceBarrierInit), nameof(EmitFenceBarrierInit)),
            (nameof(FenceMap), nameof(EmitFenceMap)),
            (nameof(ExpectBytes), nameof(EmitExpectBytes)),
            (nameof(Load), nameof(EmitLoad)),
            (nameof(TryWait), nameof(EmitTryWait)));

    // ---- PTX code generation ------------------------------------------------------------------------------------

    private static string Name(RegisterAllocator<PTXRegisterKind>.HardwareRegister register) => "%" + PTXRegisterAllocator.GetStringRepresentation(register);

    private static RegisterAllocator<PTXRegisterKind>.HardwareRegister Operand(PTXCodeGenerator cg, Value value) =>
        cg.EnsureHardwareRegister(cg.LoadPrimitive(value));

    private static void EmitInitBarrier(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var barrier = TensorCore.SharedAddress(cg, call[0].Resolve(), call[1].Resolve());
        cg.Command($"mbarrier.init.shared::cta.b64 [{Name(barrier)}], 1", null);
        cg.FreeRegister(barrier);
    }

    private static void EmitFenceBarrierInit(PTXBackend backend, PTXCodeGenerator cg, Value value) => cg.Command("fence.mbarrier_init.release.cluster", null);

    private static void EmitFenceMap(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        cg.Command($"fence.proxy.tensormap::generic.acquire.gpu [{Name(cg.LoadHardware(call[0].Resolve()))}], 128", null);
    }

    private static void EmitExpectBytes(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var bytes = Operand(cg, call[2].Resolve());
        var barrier = TensorCore.SharedAddress(cg, call[0].Resolve(), call[1].Resolve());
        cg.Command($"mbarrier.arrive.expect_tx.shared::cta.b64 _, [{Name(barrier)}], {Name(bytes)}", null);
        cg.FreeRegister(barrier);
    }

    /// <summary>Arguments (shared, element, barrier, map, c0, c1, c2, c3); the map's generic address as the pointer holds it.</summary>
    private static void EmitLoad(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var coordinates = string.Join(", ", Enumerable.Range(4, 4).Select(i => Name(Operand(cg, call[i].Resolve()))));
        var map = cg.LoadHardware(call[3].Resolve());
        var target = TensorCore.SharedAddress(cg, call[0].Resolve(), call[1].Resolve());
        var barrier = TensorCore.SharedAddress(cg, call[0].Resolve(), call[2].Resolve());
        cg.Command($"cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [{Name(target)}], [{Name(map)}, {{{coordinates}}}], [{Name(barrier)}]", null);
        cg.FreeRegister(target);
        cg.FreeRegister(barrier);
    }

    private static void EmitTryWait(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var parity = Operand(cg, call[2].Resolve());
        var barrier = TensorCore.SharedAddress(cg, call[0].Resolve(), call[1].Resolve());
        var done = cg.AllocateRegister(BasicValueType.Int1, PTXRegisterKind.Predicate);
        var result = cg.AllocateHardware(call);
        cg.Command($"mbarrier.try_wait.parity.shared::cta.b64 {Name(done)}, [{Name(barrier)}], {Name(parity)}", null);
        cg.Command($"selp.u32 {Name(result)}, 1, 0, {Name(done)}", null);
        cg.FreeRegister(done);
        cg.FreeRegister(barrier);
    }
}
