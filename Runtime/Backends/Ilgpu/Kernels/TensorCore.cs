using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.IR.Intrinsics;
using ILGPU.IR.Types;
using ILGPU.IR.Values;
using Registers = ILGPU.Backends.RegisterAllocator<ILGPU.Backends.PTX.PTXRegisterKind>;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>Four fp32 values: an <c>mma</c> accumulator fragment (c0..c3), kept in registers.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct F4
{
    /// <summary>Row g, column 2t.</summary>
    public float X;
    /// <summary>Row g, column 2t + 1.</summary>
    public float Y;
    /// <summary>Row g + 8, column 2t.</summary>
    public float Z;
    /// <summary>Row g + 8, column 2t + 1.</summary>
    public float W;

    /// <summary>Σ this·<paramref name="other"/>, component by component in order.</summary>
    public readonly float Dot(F4 other) => X * other.X + Y * other.Y + Z * other.Z + W * other.W;
}

/// <summary>Four 32-bit registers (eight bf16): an <c>mma</c> A fragment or the result of <c>ldmatrix.x4</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct U4
{
    /// <summary>Register 0.</summary>
    public uint X;
    /// <summary>Register 1.</summary>
    public uint Y;
    /// <summary>Register 2.</summary>
    public uint Z;
    /// <summary>Register 3.</summary>
    public uint W;
}

/// <summary>
/// Tensor-core and asynchronous-copy instructions as custom PTX intrinsics. On CUDA each call becomes one PTX
/// instruction whose operands stay in registers (ILGPU's <c>CudaAsm</c> routes operands through local memory). On
/// the CPU accelerator the C# bodies run instead: warp-collective emulations built on <see cref="Warp.Shuffle{T}(T, int)"/>
/// with the instruction's exact fragment layout, so the same kernels are tested in CI without a GPU. They need
/// 32-lane warps (<c>CPUDeviceKind.Nvidia</c>).
/// </summary>
/// <remarks>
/// Fragment layouts (PTX ISA, <c>mma.m16n8k16</c> with .bf16): lane l, g = l / 4, t = l % 4. A (16×16, row-major):
/// register 0 = row g, columns 2t, 2t+1; register 1 = row g+8; registers 2, 3 = the same at columns + 8. B (16×8):
/// register 0 = rows 2t, 2t+1 of column g; register 1 = rows + 8. C/D: <see cref="F4"/>. The lower-indexed element
/// of a pair sits in the low 16 bits.
/// </remarks>
public static class TensorCore
{
    /// <summary>D = A·B + C with bf16 A (16×16) and B (16×8), fp32 C and D (16×8): <c>mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32</c>.</summary>
    [IntrinsicImplementation]
    public static F4 Mma(U4 a, uint b0, uint b1, F4 c)
    {
        int lane = Warp.LaneIdx, g = lane >> 2, t = lane & 3;
        // Row g needs A[g][0..15] (lanes 4g..4g+3, registers 0, 2) and row g+8 (registers 1, 3); column 2t, 2t+1 need
        // B[0..15][2t], B[0..15][2t+1] (lanes 4·2t + j and 4·(2t+1) + j). Every lane takes part in every shuffle.
        float d0 = c.X, d1 = c.Y, d2 = c.Z, d3 = c.W;
        for (int j = 0; j < 4; j++)
        {
            uint a0 = Warp.Shuffle(a.X, 4 * g + j), a1 = Warp.Shuffle(a.Y, 4 * g + j);
            uint a2 = Warp.Shuffle(a.Z, 4 * g + j), a3 = Warp.Shuffle(a.W, 4 * g + j);
            uint c0b0 = Warp.Shuffle(b0, 4 * (2 * t) + j), c0b1 = Warp.Shuffle(b1, 4 * (2 * t) + j);
            uint c1b0 = Warp.Shuffle(b0, 4 * (2 * t + 1) + j), c1b1 = Warp.Shuffle(b1, 4 * (2 * t + 1) + j);
            // k = 2j, 2j+1 (low halves: register 0/1 of A, register 0 of B); k = 2j+8, 2j+9 (registers 2/3 of A, 1 of B).
            d0 += Dot(a0, c0b0) + Dot(a2, c0b1);
            d1 += Dot(a0, c1b0) + Dot(a2, c1b1);
            d2 += Dot(a1, c0b0) + Dot(a3, c0b1);
            d3 += Dot(a1, c1b0) + Dot(a3, c1b1);
        }
        return new F4 { X = d0, Y = d1, Z = d2, W = d3 };
    }

    private static float Dot(uint x, uint y) => Lo(x) * Lo(y) + Hi(x) * Hi(y);
    private static float Lo(uint x) => Bf16.ToFloat((ushort)x);
    private static float Hi(uint x) => Bf16.ToFloat((ushort)(x >> 16));

    /// <summary>
    /// <c>ldmatrix.sync.aligned.m8n8.x4.shared.b16</c>: four 8×8 bf16 matrices from shared memory; lane l gives the
    /// address (<paramref name="shared"/> + <paramref name="element"/>, 16-byte aligned) of row l % 8 of matrix l / 8 and
    /// receives, in register j, row l / 4, elements 2(l % 4), 2(l % 4)+1 of matrix j.
    /// </summary>
    [IntrinsicImplementation]
    public static U4 LoadMatrix(ref ushort shared, int element)
    {
        int lane = Warp.LaneIdx;
        int column = 2 * (lane & 3);
        int r0 = Warp.Shuffle(element, lane >> 2), r1 = Warp.Shuffle(element, 8 + (lane >> 2));
        int r2 = Warp.Shuffle(element, 16 + (lane >> 2)), r3 = Warp.Shuffle(element, 24 + (lane >> 2));
        return new U4 { X = Pair(ref shared, r0 + column, r0 + column + 1), Y = Pair(ref shared, r1 + column, r1 + column + 1),
            Z = Pair(ref shared, r2 + column, r2 + column + 1), W = Pair(ref shared, r3 + column, r3 + column + 1) };
    }

    /// <summary>
    /// <c>ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16</c>: as <see cref="LoadMatrix"/>, transposed: register j holds
    /// elements (2(l % 4), l / 4) and (2(l % 4)+1, l / 4) of matrix j.
    /// </summary>
    [IntrinsicImplementation]
    public static U4 LoadMatrixTransposed(ref ushort shared, int element)
    {
        int lane = Warp.LaneIdx;
        int row = 2 * (lane & 3), column = lane >> 2;
        uint x = 0, y = 0, z = 0, w = 0;
        for (int j = 0; j < 4; j++)
        {
            int a = Warp.Shuffle(element, 8 * j + row), b = Warp.Shuffle(element, 8 * j + row + 1);
            uint value = Pair(ref shared, a + column, b + column);
            if (j == 0) x = value; else if (j == 1) y = value; else if (j == 2) z = value; else w = value;
        }
        return new U4 { X = x, Y = y, Z = z, W = w };
    }

    private static uint Pair(ref ushort shared, int lo, int hi) => Unsafe.Add(ref shared, lo) | ((uint)Unsafe.Add(ref shared, hi) << 16);

    /// <summary><c>ld.shared.b32</c>: the 32 bits at <paramref name="shared"/> + <paramref name="element"/> (an even element), through a 32-bit address.</summary>
    [IntrinsicImplementation]
    public static uint LoadShared32(ref ushort shared, int element) => Pair(ref shared, element, element + 1);

    /// <summary><c>st.shared.b32</c>: <paramref name="value"/> to <paramref name="shared"/> + <paramref name="element"/> (an even element), through a 32-bit address.</summary>
    [IntrinsicImplementation]
    public static void StoreShared32(ref ushort shared, int element, uint value)
    {
        Unsafe.Add(ref shared, element) = (ushort)value;
        Unsafe.Add(ref shared, element + 1) = (ushort)(value >> 16);
    }

    /// <summary>
    /// <c>cp.async.cg.shared.global</c> of 16 bytes (eight bf16) from <paramref name="global"/> + <paramref name="source"/>
    /// to <paramref name="shared"/> + <paramref name="target"/>; with <paramref name="bytes"/> = 0 the target is zero-filled
    /// (the source address must still be valid). Completes at <see cref="WaitAsync0"/>/<see cref="WaitAsync1"/>.
    /// </summary>
    [IntrinsicImplementation]
    public static void CopyAsync(ref ushort shared, int target, ref ushort global, long source, int bytes)
    {
        for (int i = 0; i < 8; i++) Unsafe.Add(ref shared, target + i) = bytes == 0 ? (ushort)0 : Unsafe.Add(ref global, (nint)(source + i));
    }

    /// <summary><c>cp.async.commit_group</c>: closes the group of copies issued since the last commit.</summary>
    [IntrinsicImplementation]
    public static void CommitAsync() { }

    /// <summary><c>cp.async.wait_group 0</c>: waits for every committed group (follow with a group barrier).</summary>
    [IntrinsicImplementation]
    public static void WaitAsync0() { }

    /// <summary><c>cp.async.wait_group 1</c>: waits for all but the most recent committed group.</summary>
    [IntrinsicImplementation]
    public static void WaitAsync1() { }

    /// <summary>
    /// <c>ld.global.nc.v4.u32</c>: eight bf16 (16 bytes, 16-byte aligned) at <paramref name="global"/> +
    /// <paramref name="element"/> in one load, through the read-only cache (nothing may write them while the kernel runs).
    /// </summary>
    [IntrinsicImplementation]
    public static U4 LoadGlobal16(ref ushort global, long element)
    {
        ref ushort at = ref Unsafe.Add(ref global, (nint)element);
        return new U4 { X = Pair(ref at, 0, 1), Y = Pair(ref at, 2, 3), Z = Pair(ref at, 4, 5), W = Pair(ref at, 6, 7) };
    }

    /// <summary><c>st.global.v4.f32</c>: four floats to <paramref name="global"/> (16-byte aligned) in one store.</summary>
    [IntrinsicImplementation]
    public static void StoreGlobal16(ref float global, F4 value)
    {
        global = value.X;
        Unsafe.Add(ref global, 1) = value.Y;
        Unsafe.Add(ref global, 2) = value.Z;
        Unsafe.Add(ref global, 3) = value.W;
    }

    /// <summary><c>cvt.rn.bf16x2.f32</c>: two floats rounded to bf16, <paramref name="lo"/> in the low half.</summary>
    [IntrinsicImplementation]
    public static uint Pack(float lo, float hi) => Bf16.FromFloat(lo) | ((uint)Bf16.FromFloat(hi) << 16);

    /// <summary><c>ex2.approx.ftz.f32</c> (2^x; 2^-inf = 0).</summary>
    [IntrinsicImplementation]
    public static float Exp2(float x) => MathF.Pow(2f, x);

    /// <summary><c>lg2.approx.ftz.f32</c>.</summary>
    [IntrinsicImplementation]
    public static float Log2(float x) => MathF.Log2(x);

    /// <summary>Registers the PTX code of every intrinsic above with a context under construction.</summary>
    public static void Register(Context.Builder builder) => PtxIntrinsics.Register(builder, typeof(TensorCore),
            (nameof(Mma), nameof(EmitMma)),
            (nameof(LoadMatrix), nameof(EmitLoadMatrix)),
            (nameof(LoadMatrixTransposed), nameof(EmitLoadMatrixTransposed)),
            (nameof(LoadShared32), nameof(EmitLoadShared32)),
            (nameof(StoreShared32), nameof(EmitStoreShared32)),
            (nameof(CopyAsync), nameof(EmitCopyAsync)),
            (nameof(LoadGlobal16), nameof(EmitLoadGlobal16)),
            (nameof(StoreGlobal16), nameof(EmitStoreGlobal16)),
            (nameof(CommitAsync), nameof(EmitCommit)),
            (nameof(WaitAsync0), nameof(EmitWait0)),
            (nameof(WaitAsync1), nameof(EmitWait1)),
            (nameof(Pack), nameof(EmitPack)),
            (nameof(Exp2), nameof(EmitExp2)),
            (nameof(Log2), nameof(EmitLog2)));

    // ---- PTX code generation ------------------------------------------------------------------------------------

    private static Registers.PrimitiveRegister[] Children(PTXCodeGenerator cg, Value value, int count)
    {
        var compound = (Registers.CompoundRegister)cg.Load(value);
        var result = new Registers.PrimitiveRegister[count];
        // Operands must be registers: constants (a zero accumulator, say) are moved into registers first.
        for (int i = 0; i < count; i++) result[i] = cg.EnsureHardwareRegister((Registers.PrimitiveRegister)compound.Children[i]);
        return result;
    }

    private static Registers.PrimitiveRegister[] Targets(PTXCodeGenerator cg, Value value, int count)
    {
        var compound = (Registers.CompoundRegister)cg.Allocate(value);
        var result = new Registers.PrimitiveRegister[count];
        for (int i = 0; i < count; i++) result[i] = (Registers.PrimitiveRegister)compound.Children[i];
        return result;
    }

    private static void EmitMma(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var a = Children(cg, call[0].Resolve(), 4);
        var b = new[] { cg.EnsureHardwareRegister(cg.LoadPrimitive(call[1].Resolve())), cg.EnsureHardwareRegister(cg.LoadPrimitive(call[2].Resolve())) };
        var c = Children(cg, call[3].Resolve(), 4);
        var d = Targets(cg, call, 4);
        using var command = cg.BeginCommand("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
        command.AppendVectorArgument(d);
        command.AppendVectorArgument(a);
        command.AppendVectorArgument(b);
        command.AppendVectorArgument(c);
    }

    /// <summary>A 64-bit global address: pointer + 2·element (converted from a generic pointer if need be).</summary>
    private static Registers.HardwareRegister GlobalAddress(PTXCodeGenerator cg, Value pointer, Value element)
    {
        var result = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        AddElementBytes(cg, result, cg.LoadHardware(pointer), element, wide: true);
        ToGlobal(cg, result, pointer);
        return result;
    }

    /// <summary>A 64-bit global address from a global or generic pointer.</summary>
    internal static Registers.HardwareRegister GlobalAddress(PTXCodeGenerator cg, Value pointer)
    {
        var result = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        using (var move = cg.BeginCommand("mov.b64"))
        {
            move.AppendArgument(result);
            move.AppendArgument(cg.LoadHardware(pointer));
        }
        ToGlobal(cg, result, pointer);
        return result;
    }

    /// <summary>Converts <paramref name="address"/>, computed from <paramref name="pointer"/>, to the .global window in place if the pointer is generic.</summary>
    private static void ToGlobal(PTXCodeGenerator cg, Registers.HardwareRegister address, Value pointer)
    {
        var space = ((PointerType)pointer.Type).AddressSpace;
        if (space == MemoryAddressSpace.Generic)
        {
            using var convert = cg.BeginCommand("cvta.to.global.u64");
            convert.AppendArgument(address);
            convert.AppendArgument(address);
        }
        else if (space != MemoryAddressSpace.Global)
        {
            throw new InvalidOperationException($"TensorCore: expected a global or generic pointer, got {space}");
        }
    }

    /// <summary>
    /// A 32-bit address in the .shared window: the pointer truncated to 32 bits (converted from a generic pointer first
    /// if need be) + 2·element. 32-bit arithmetic wraps, so ptxas may reassociate <c>base + 2·(lane offset + constant)</c>
    /// and fold the constant into the instruction's immediate offset; a sign-extended 64-bit index (<c>mul.wide.s32</c>)
    /// cannot be reassociated and cost three instructions per access.
    /// </summary>
    internal static Registers.HardwareRegister SharedAddress(PTXCodeGenerator cg, Value pointer, Value element)
    {
        var basePointer = cg.LoadHardware(pointer);
        var space = ((PointerType)pointer.Type).AddressSpace;
        var result = cg.AllocateRegister(BasicValueType.Int32, PTXRegisterKind.Int32);
        if (space == MemoryAddressSpace.Generic)
        {
            var wide = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
            using (var convert = cg.BeginCommand("cvta.to.shared.u64"))
            {
                convert.AppendArgument(wide);
                convert.AppendArgument(basePointer);
            }
            using (var narrow = cg.BeginCommand("cvt.u32.u64"))
            {
                narrow.AppendArgument(result);
                narrow.AppendArgument(wide);
            }
            cg.FreeRegister(wide);
        }
        else if (space == MemoryAddressSpace.Shared)
        {
            using var narrow = cg.BeginCommand("cvt.u32.u64");
            narrow.AppendArgument(result);
            narrow.AppendArgument(basePointer);
        }
        else
        {
            throw new InvalidOperationException($"TensorCore: expected a shared or generic pointer, got {space}");
        }
        AddElementBytes(cg, result, result, element, wide: false);
        return result;
    }

    /// <summary><paramref name="target"/> = <paramref name="address"/> + 2·<paramref name="element"/> (bf16 elements to bytes), in 64-bit or 32-bit arithmetic.</summary>
    private static void AddElementBytes(PTXCodeGenerator cg, Registers.HardwareRegister target, Registers.HardwareRegister address, Value element, bool wide)
    {
        var offset = wide ? cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64) : cg.AllocateRegister(BasicValueType.Int32, PTXRegisterKind.Int32);
        // A constant element is moved into a register first, outside the command being written.
        var index = cg.EnsureHardwareRegister(cg.LoadPrimitive(element));
        using (var shift = cg.BeginCommand(wide ? "shl.b64" : "shl.b32"))
        {
            shift.AppendArgument(offset);
            shift.AppendArgument(index);
            shift.AppendConstant(1L);
        }
        using (var add = cg.BeginCommand(wide ? "add.s64" : "add.s32"))
        {
            add.AppendArgument(target);
            add.AppendArgument(address);
            add.AppendArgument(offset);
        }
        cg.FreeRegister(offset);
    }

    private static void EmitLoadMatrix(PTXBackend backend, PTXCodeGenerator cg, Value value) => EmitMatrixLoad(cg, value, "ldmatrix.sync.aligned.m8n8.x4.shared.b16");

    private static void EmitLoadMatrixTransposed(PTXBackend backend, PTXCodeGenerator cg, Value value) => EmitMatrixLoad(cg, value, "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16");

    private static void EmitMatrixLoad(PTXCodeGenerator cg, Value value, string instruction)
    {
        var call = (MethodCall)value;
        EmitLoad4(cg, call, instruction, SharedAddress(cg, call[0].Resolve(), call[1].Resolve()));
    }

    /// <summary><paramref name="instruction"/> {four registers of the call's result}, [<paramref name="address"/>]; the address register is freed.</summary>
    private static void EmitLoad4(PTXCodeGenerator cg, MethodCall call, string instruction, Registers.HardwareRegister address)
    {
        var d = Targets(cg, call, 4);
        using (var command = cg.BeginCommand(instruction))
        {
            command.AppendVectorArgument(d);
            command.AppendArgumentValue(address);
        }
        cg.FreeRegister(address);
    }

    private static void EmitLoadShared32(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var address = SharedAddress(cg, call[0].Resolve(), call[1].Resolve());
        var d = cg.AllocateHardware(call);
        using (var command = cg.BeginCommand("ld.shared.b32"))
        {
            command.AppendArgument(d);
            command.AppendArgumentValue(address);
        }
        cg.FreeRegister(address);
    }

    private static void EmitStoreShared32(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var address = SharedAddress(cg, call[0].Resolve(), call[1].Resolve());
        var v = cg.EnsureHardwareRegister(cg.LoadPrimitive(call[2].Resolve()));
        using (var command = cg.BeginCommand("st.shared.b32"))
        {
            command.AppendArgumentValue(address);
            command.AppendArgument(v);
        }
        cg.FreeRegister(address);
    }

    private static void EmitLoadGlobal16(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        EmitLoad4(cg, call, "ld.global.nc.v4.u32", GlobalAddress(cg, call[0].Resolve(), call[1].Resolve()));
    }

    private static void EmitStoreGlobal16(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var address = GlobalAddress(cg, call[0].Resolve());
        var x = Children(cg, call[1].Resolve(), 4);
        using (var command = cg.BeginCommand("st.global.v4.f32"))
        {
            command.AppendArgumentValue(address);
            command.AppendVectorArgument(x);
        }
        cg.FreeRegister(address);
    }

    private static void EmitCopyAsync(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var target = SharedAddress(cg, call[0].Resolve(), call[1].Resolve());
        var source = GlobalAddress(cg, call[2].Resolve(), call[3].Resolve());
        var bytes = cg.LoadPrimitive(call[4].Resolve());
        using (var command = cg.BeginCommand("cp.async.cg.shared.global"))
        {
            command.AppendArgumentValue(target);
            command.AppendArgumentValue(source);
            command.AppendConstant(16L);
            command.AppendArgument(bytes);
        }
        cg.FreeRegister(target);
        cg.FreeRegister(source);
    }

    private static void EmitCommit(PTXBackend backend, PTXCodeGenerator cg, Value value) => cg.Command("cp.async.commit_group", null);

    private static void EmitWait0(PTXBackend backend, PTXCodeGenerator cg, Value value) => Wait(cg, 0);

    private static void EmitWait1(PTXBackend backend, PTXCodeGenerator cg, Value value) => Wait(cg, 1);

    private static void Wait(PTXCodeGenerator cg, long groups)
    {
        using var command = cg.BeginCommand("cp.async.wait_group");
        command.AppendConstant(groups);
    }

    private static void EmitPack(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var lo = cg.LoadPrimitive(call[0].Resolve());
        var hi = cg.LoadPrimitive(call[1].Resolve());
        var d = cg.AllocateHardware(call);
        using var command = cg.BeginCommand("cvt.rn.bf16x2.f32");
        command.AppendArgument(d);
        command.AppendArgument(hi);
        command.AppendArgument(lo);
    }

    private static void EmitExp2(PTXBackend backend, PTXCodeGenerator cg, Value value) => Unary(cg, value, "ex2.approx.ftz.f32");

    private static void EmitLog2(PTXBackend backend, PTXCodeGenerator cg, Value value) => Unary(cg, value, "lg2.approx.ftz.f32");

    private static void Unary(PTXCodeGenerator cg, Value value, string instruction)
    {
        var call = (MethodCall)value;
        var x = cg.LoadPrimitive(call[0].Resolve());
        var d = cg.AllocateHardware(call);
        using var command = cg.BeginCommand(instruction);
        command.AppendArgument(d);
        command.AppendArgument(x);
    }
}
