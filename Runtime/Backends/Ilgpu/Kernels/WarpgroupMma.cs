using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.IR.Intrinsics;
using ILGPU.IR.Values;
using Registers = ILGPU.Backends.RegisterAllocator<ILGPU.Backends.PTX.PTXRegisterKind>;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>
/// A 64×128 fp32 accumulator of a warpgroup MMA, 64 values per thread: chunk j holds columns 8j..8j+7 in the layout of
/// <see cref="F4"/> (thread t of the warpgroup: warp w = t / 32 owns rows 16w..16w+15; lane l holds rows 16w + l/4 and
/// 16w + l/4 + 8, columns 8j + 2(l%4) and 8j + 2(l%4) + 1).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct Acc128
{
    /// <summary>Columns 8j..8j+7.</summary>
    public F4 C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15;

    /// <summary>Value <paramref name="i"/> of this thread (chunk i / 4, component i % 4).</summary>
    public float this[int i]
    {
        readonly get => Unsafe.Add(ref Unsafe.As<F4, float>(ref Unsafe.AsRef(in C0)), i);
        set => Unsafe.Add(ref Unsafe.As<F4, float>(ref C0), i) = value;
    }
}

/// <summary>A 64×64 fp32 accumulator of a warpgroup MMA, 32 values per thread, in the layout of <see cref="Acc128"/> (chunk j: columns 8j..8j+7).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct Acc64
{
    /// <summary>Columns 8j..8j+7.</summary>
    public F4 C0, C1, C2, C3, C4, C5, C6, C7;

    /// <summary>Value <paramref name="i"/> of this thread (chunk i / 4, component i % 4).</summary>
    public float this[int i]
    {
        readonly get => Unsafe.Add(ref Unsafe.As<F4, float>(ref Unsafe.AsRef(in C0)), i);
        set => Unsafe.Add(ref Unsafe.As<F4, float>(ref C0), i) = value;
    }
}

/// <summary>Two 64×128 accumulators: the result of <see cref="WarpgroupMma.MmaRN2"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct Acc256
{
    /// <summary>The first and second products.</summary>
    public Acc128 A, B;
}

/// <summary>Eight A fragments of a warpgroup MMA from registers (one per 16 columns of A), each in the layout of <see cref="TensorCore.Mma"/>'s A over the warp's 16 rows.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct U4x8
{
    /// <summary>Columns 16s..16s+15.</summary>
    public U4 K0, K1, K2, K3, K4, K5, K6, K7;

    /// <summary>Register <paramref name="i"/> (fragment i / 4, register i % 4).</summary>
    public uint this[int i]
    {
        readonly get => Unsafe.Add(ref Unsafe.As<U4, uint>(ref Unsafe.AsRef(in K0)), i);
        set => Unsafe.Add(ref Unsafe.As<U4, uint>(ref K0), i) = value;
    }
}

/// <summary>
/// Hopper's warpgroup MMA (<c>wgmma.mma_async</c>, SM_90a) as custom PTX intrinsics, for kernels loaded through
/// <see cref="GpuDevice.HopperKernel{TArgs}"/> (ILGPU emits <c>.target sm_80</c>; that path retargets the PTX).
/// </summary>
/// <remarks>
/// <para>
/// Operands in shared memory use one layout, <see cref="Offset"/>: a tile of rows of 64 bf16 (128 bytes) whose 16-byte
/// chunks are swizzled by the row (chunk c of row r sits at chunk c ⊕ (r mod 8)), column blocks of 64 <c>region</c>
/// elements apart, each region 1024-byte aligned. It is the 128-byte swizzle of the wgmma descriptors, read K-major
/// (rows = M or N, columns = K) or MN-major (rows = K, columns = M or N), and it is what <c>cp.async</c> writes with
/// one 16-byte copy per chunk.
/// </para>
/// <para>
/// Each call is one group: <c>wgmma.fence</c>, the MMAs over <c>kSteps</c> × 16 columns of K, <c>commit_group</c> and
/// <c>wait_group 0</c>, so the accumulator is never read while the tensor cores write it. Shared memory written by
/// threads (st.shared or cp.async) must be made visible to the tensor cores' proxy with <see cref="FenceProxyAsync"/>
/// before the group barrier that precedes the MMA. On the CPU accelerator the C# bodies compute the same result per
/// thread from the same layout (A fragments in registers are gathered with warp shuffles), with 4 warps of 32 lanes
/// per warpgroup.
/// </para>
/// </remarks>
public static class WarpgroupMma
{
    /// <summary>Threads in a warpgroup.</summary>
    public const int Threads = 128;

    /// <summary>The element offset of (<paramref name="row"/>, <paramref name="column"/>) in a swizzled tile whose 64-column blocks are <paramref name="region"/> elements apart.</summary>
    public static int Offset(int row, int column, int region) =>
        (column >> 6) * region + row * 64 + ((((column & 63) >> 3) ^ (row & 7)) << 3) + (column & 7);

    /// <summary>
    /// D (64 × 128) = A · Bᵀ (+ C when <paramref name="accumulate"/>) over K = 16·<paramref name="kSteps"/>, both operands
    /// K-major in shared memory: A's 64 rows start at element <paramref name="a"/> (column blocks <paramref name="aRegion"/>
    /// apart), B's 128 rows at <paramref name="b"/> (blocks <paramref name="bRegion"/> apart). <paramref name="aRegion"/>,
    /// <paramref name="bRegion"/>, <paramref name="kSteps"/> (1–8) and <paramref name="accumulate"/> must be constants.
    /// </summary>
    [IntrinsicImplementation]
    public static Acc128 MmaKK(ref ushort shared, int a, int aRegion, int b, int bRegion, int kSteps, Acc128 c, bool accumulate)
    {
        var d = accumulate ? c : default;
        var sums = Emulate(ref shared, a, aRegion, false, b, bRegion, false, kSteps, 128);
        for (int i = 0; i < sums.Length; i++) d[i] += sums[i];
        return d;
    }

    /// <summary>As <see cref="MmaKK"/> with N = 64: D (64 × 64) = A · Bᵀ, B's 64 rows K-major from element <paramref name="b"/>.</summary>
    [IntrinsicImplementation]
    public static Acc64 MmaKK64(ref ushort shared, int a, int aRegion, int b, int bRegion, int kSteps, Acc64 c, bool accumulate)
    {
        var d = accumulate ? c : default;
        var sums = Emulate(ref shared, a, aRegion, false, b, bRegion, false, kSteps, 64);
        for (int i = 0; i < sums.Length; i++) d[i] += sums[i];
        return d;
    }

    /// <summary>
    /// D (64 × 64) = A · B (+ C) over K = 16·<paramref name="kSteps"/>, both operands transposed in shared memory: A
    /// M-major (K rows of 64 columns from element <paramref name="a"/>), B N-major (K rows, its 64 columns from element
    /// <paramref name="b"/>). Constants as in <see cref="MmaKK"/>.
    /// </summary>
    [IntrinsicImplementation]
    public static Acc64 MmaMN64(ref ushort shared, int a, int aRegion, int b, int bRegion, int kSteps, Acc64 c, bool accumulate)
    {
        var d = accumulate ? c : default;
        var sums = Emulate(ref shared, a, aRegion, true, b, bRegion, true, kSteps, 64);
        for (int i = 0; i < sums.Length; i++) d[i] += sums[i];
        return d;
    }

    /// <summary>
    /// This thread's accumulator values of A · B over K = 16·<paramref name="kSteps"/> with A (64 rows) and B
    /// (<paramref name="n"/> columns) in shared memory, each K-major or M/N-major (<paramref name="aMN"/>, <paramref name="bMN"/>).
    /// </summary>
    private static float[] Emulate(ref ushort shared, int a, int aRegion, bool aMN, int b, int bRegion, bool bMN, int kSteps, int n)
    {
        Lane(out int r0, out int col);
        var sums = new float[n / 2];
        for (int j = 0; j < n / 8; j++)
            for (int h = 0; h < 4; h++)
            {
                int row = r0 + (h >> 1) * 8, column = 8 * j + col + (h & 1);
                float sum = 0f;
                for (int k = 0; k < 16 * kSteps; k++)
                    sum += Element(ref shared, a + (aMN ? Offset(k, row, aRegion) : Offset(row, k, aRegion)))
                         * Element(ref shared, b + (bMN ? Offset(k, column, bRegion) : Offset(column, k, bRegion)));
                sums[4 * j + h] = sum;
            }
        return sums;
    }

    /// <summary>
    /// D (64 × 128) = A · B (+ C when <paramref name="accumulate"/>) over K = 16·<paramref name="kSteps"/>: A from registers
    /// (<paramref name="fragments"/>, one per 16 columns), B N-major in shared memory (K rows of 128 columns from element
    /// <paramref name="b"/>, column blocks <paramref name="bRegion"/> apart). Constants as in <see cref="MmaKK"/>.
    /// </summary>
    [IntrinsicImplementation]
    public static Acc128 MmaRN(U4x8 fragments, ref ushort shared, int b, int bRegion, int kSteps, Acc128 c, bool accumulate)
    {
        var d = accumulate ? c : default;
        int lane = Warp.LaneIdx, g = lane >> 2;
        Lane(out _, out int col);
        for (int s = 0; s < kSteps; s++)
            for (int j = 0; j < 4; j++)
            {
                // Lane 4g + j holds columns 16s + 2j, +1 (registers 0, 1: rows g, g + 8) and 16s + 2j + 8, +9 (registers 2, 3).
                uint x = Warp.Shuffle(fragments[4 * s], 4 * g + j), y = Warp.Shuffle(fragments[4 * s + 1], 4 * g + j);
                uint z = Warp.Shuffle(fragments[4 * s + 2], 4 * g + j), w = Warp.Shuffle(fragments[4 * s + 3], 4 * g + j);
                int k0 = 16 * s + 2 * j, k1 = k0 + 8;
                for (int n8 = 0; n8 < 16; n8++)
                    for (int e = 0; e < 2; e++)
                    {
                        int n = 8 * n8 + col + e;
                        float b00 = Element(ref shared, b + Offset(k0, n, bRegion)), b01 = Element(ref shared, b + Offset(k0 + 1, n, bRegion));
                        float b10 = Element(ref shared, b + Offset(k1, n, bRegion)), b11 = Element(ref shared, b + Offset(k1 + 1, n, bRegion));
                        d[4 * n8 + e] += Bf16.Lo(x) * b00 + Bf16.Hi(x) * b01 + Bf16.Lo(z) * b10 + Bf16.Hi(z) * b11;
                        d[4 * n8 + 2 + e] += Bf16.Lo(y) * b00 + Bf16.Hi(y) * b01 + Bf16.Lo(w) * b10 + Bf16.Hi(w) * b11;
                    }
            }
        return d;
    }

    /// <summary>
    /// Two products of <see cref="MmaKK64"/> in one group (one wait for both): chunks 0–7 of the result are
    /// A₁·B₁ᵀ, chunks 8–15 A₂·B₂ᵀ, with the same region sizes; neither accumulates.
    /// </summary>
    [IntrinsicImplementation]
    public static Acc128 MmaKK64x2(ref ushort shared, int a1, int b1, int a2, int b2, int aRegion, int bRegion, int kSteps)
    {
        var first = MmaKK64(ref shared, a1, aRegion, b1, bRegion, kSteps, default, false);
        var second = MmaKK64(ref shared, a2, aRegion, b2, bRegion, kSteps, default, false);
        return new Acc128 { C0 = first.C0, C1 = first.C1, C2 = first.C2, C3 = first.C3, C4 = first.C4, C5 = first.C5, C6 = first.C6, C7 = first.C7,
            C8 = second.C0, C9 = second.C1, C10 = second.C2, C11 = second.C3, C12 = second.C4, C13 = second.C5, C14 = second.C6, C15 = second.C7 };
    }

    /// <summary>Two accumulating <see cref="MmaRN"/> products in one group: (C₁ + F₁·B₁, C₂ + F₂·B₂), the B operands with the same region size.</summary>
    [IntrinsicImplementation]
    public static Acc256 MmaRN2(U4x8 f1, U4x8 f2, ref ushort shared, int b1, int b2, int bRegion, int kSteps, Acc128 c1, Acc128 c2) =>
        new() { A = MmaRN(f1, ref shared, b1, bRegion, kSteps, c1, true), B = MmaRN(f2, ref shared, b2, bRegion, kSteps, c2, true) };

    /// <summary><c>st.shared.v2.f32</c>: <paramref name="x"/> and <paramref name="y"/> to <paramref name="shared"/> + <paramref name="element"/> (8-byte aligned), through a 32-bit address.</summary>
    [IntrinsicImplementation]
    public static void StoreShared64(ref ushort shared, int element, float x, float y)
    {
        Unsafe.As<ushort, float>(ref Unsafe.Add(ref shared, element)) = x;
        Unsafe.As<ushort, float>(ref Unsafe.Add(ref shared, element + 2)) = y;
    }

    /// <summary>
    /// <c>cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32</c>, then <c>cp.async.bulk.commit_group</c> (SM_90):
    /// the copy engine adds <paramref name="bytes"/> / 4 floats from <paramref name="shared"/> + <paramref name="element"/>
    /// to <paramref name="global"/> and the floats after it, in one operation (both 16-byte aligned, <paramref name="bytes"/>
    /// a positive multiple of 16). The threads that wrote the source make it visible with <see cref="FenceProxyAsync"/> and
    /// a barrier first; it may be written again after <see cref="BulkWaitRead"/>.
    /// </summary>
    [IntrinsicImplementation]
    public static void BulkReduceAdd(ref float global, ref ushort shared, int element, int bytes)
    {
        for (int i = 0; i < bytes / 4; i++)
            Atomic.Add(ref Unsafe.Add(ref global, i), Unsafe.As<ushort, float>(ref Unsafe.Add(ref shared, element + 2 * i)));
    }

    /// <summary><c>cp.async.bulk.wait_group.read 0</c>: this thread's bulk operations have read their shared-memory sources.</summary>
    [IntrinsicImplementation]
    public static void BulkWaitRead() { }

    /// <summary><c>fence.proxy.async.shared::cta</c>: makes this thread's shared-memory writes visible to warpgroup MMAs (then barrier).</summary>
    [IntrinsicImplementation]
    public static void FenceProxyAsync() { }

    /// <summary>The warpgroup row (of 64) of this thread's first accumulator row, and its first column within each 8-column chunk.</summary>
    private static void Lane(out int row, out int column)
    {
        int t = Group.IdxX & (Threads - 1), lane = t & 31;
        row = 16 * (t >> 5) + (lane >> 2);
        column = 2 * (lane & 3);
    }

    private static float Element(ref ushort shared, int element) => Bf16.ToFloat(Unsafe.Add(ref shared, element));

    /// <summary>Registers the PTX code of the intrinsics above with a context under construction.</summary>
    public static void Register(Context.Builder builder) => PtxIntrinsics.Register(builder, typeof(WarpgroupMma),
            (nameof(MmaKK), nameof(EmitMmaKK)),
            (nameof(MmaKK64), nameof(EmitMmaKK64)),
            (nameof(MmaMN64), nameof(EmitMmaMN64)),
            (nameof(MmaRN), nameof(EmitMmaRN)),
            (nameof(MmaKK64x2), nameof(EmitMmaKK64x2)),
            (nameof(MmaRN2), nameof(EmitMmaRN2)),
            (nameof(FenceProxyAsync), nameof(EmitFenceProxyAsync)),
            (nameof(StoreShared64), nameof(EmitStoreShared64)),
            (nameof(BulkReduceAdd), nameof(EmitBulkReduceAdd)),
            (nameof(BulkWaitRead), nameof(EmitBulkWaitRead)));

    // ---- PTX code generation ------------------------------------------------------------------------------------

    private const int Accumulators = 64;

    private static string Instruction(int n) => $"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.bf16.bf16";

    /// <summary>Descriptor bits beside the address: 128-byte swizzle (mode 1, bits 62–63), 8-row groups 1024 bytes apart (bits 32–45, in 16-byte units).</summary>
    private const long SwizzleBits = (1L << 62) | ((1024L >> 4) << 32);

    private static void EmitMmaKK(PTXBackend backend, PTXCodeGenerator cg, Value value) => EmitShared(cg, (MethodCall)value, 128, false, false);

    private static void EmitMmaKK64(PTXBackend backend, PTXCodeGenerator cg, Value value) => EmitShared(cg, (MethodCall)value, 64, false, false);

    private static void EmitMmaMN64(PTXBackend backend, PTXCodeGenerator cg, Value value) => EmitShared(cg, (MethodCall)value, 64, true, true);

    /// <summary>
    /// Both operands in shared memory; arguments (shared, a, aRegion, b, bRegion, kSteps, c, accumulate). K-major: the
    /// leading-byte offset is unused with swizzling (1 by convention) and step s reads 16 columns, 32 bytes further
    /// within a 64-column block, the next block every 4 steps. M/N-major: the leading-byte offset is the distance between
    /// 64-column blocks and step s reads the next 16 rows (2048 bytes).
    /// </summary>
    private static void EmitShared(PTXCodeGenerator cg, MethodCall call, int n, bool aMN, bool bMN)
    {
        int aRegion = Constant(call, 2, "aRegion"), bRegion = Constant(call, 4, "bRegion"), kSteps = Constant(call, 5, "kSteps");
        bool accumulate = Constant(call, 7, "accumulate") != 0;
        CheckSteps(kSteps);
        var da = Descriptor(cg, call[0].Resolve(), call[1].Resolve(), Leading(aMN, aRegion) | SwizzleBits);
        var db = Descriptor(cg, call[0].Resolve(), call[3].Resolve(), Leading(bMN, bRegion) | SwizzleBits);
        var d = Begin(cg, call, 6, n / 2, accumulate);
        var sa = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        var sb = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        for (int s = 0; s < kSteps; s++)
        {
            AddUnits(cg, sa, da, Step(aMN, aRegion, s));
            AddUnits(cg, sb, db, Step(bMN, bRegion, s));
            using var command = cg.BeginCommand(Instruction(n));
            command.AppendVectorArgument(d);
            command.AppendArgument(sa);
            command.AppendArgument(sb);
            command.AppendConstant(s == 0 && !accumulate ? 0L : 1L);
            command.AppendConstant(1L);
            command.AppendConstant(1L);
            command.AppendConstant(aMN ? 1L : 0L);
            command.AppendConstant(bMN ? 1L : 0L);
        }
        End(cg);
        foreach (var r in new[] { da, db, sa, sb }) cg.FreeRegister(r);
    }

    /// <summary>The leading-byte-offset field (bits 16–29): 1 for K-major, the 64-column blocks' distance for M/N-major.</summary>
    private static long Leading(bool mn, int region) => (mn ? 2L * region >> 4 : 1L) << 16;

    /// <summary>The descriptor's advance for K step <paramref name="s"/>, in 16-byte units.</summary>
    private static long Step(bool mn, int region, int s) => mn ? s * 2048L >> 4 : ((s >> 2) * 2L * region + (s & 3) * 32L) >> 4;

    private static void EmitMmaRN(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        int bRegion = Constant(call, 3, "bRegion"), kSteps = Constant(call, 4, "kSteps");
        bool accumulate = Constant(call, 6, "accumulate") != 0;
        CheckSteps(kSteps);
        var a = Operands(cg, call[0].Resolve(), 4 * kSteps);
        var db = Descriptor(cg, call[1].Resolve(), call[2].Resolve(), Leading(true, bRegion) | SwizzleBits);
        var d = Begin(cg, call, 5, Accumulators, accumulate);
        var sb = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        for (int s = 0; s < kSteps; s++)
        {
            AddUnits(cg, sb, db, Step(true, bRegion, s));
            using var command = cg.BeginCommand(Instruction(128));
            command.AppendVectorArgument(d);
            command.AppendVectorArgument(a[(4 * s)..(4 * s + 4)]);
            command.AppendArgument(sb);
            command.AppendConstant(s == 0 && !accumulate ? 0L : 1L);
            command.AppendConstant(1L);
            command.AppendConstant(1L);
            command.AppendConstant(1L);
        }
        End(cg);
        cg.FreeRegister(db);
        cg.FreeRegister(sb);
    }

    /// <summary>Arguments (shared, a1, b1, a2, b2, aRegion, bRegion, kSteps): two K-major chains of N = 64 into one 64-register result.</summary>
    private static void EmitMmaKK64x2(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        int aRegion = Constant(call, 5, "aRegion"), bRegion = Constant(call, 6, "bRegion"), kSteps = Constant(call, 7, "kSteps");
        CheckSteps(kSteps);
        var bits = Leading(false, 0) | SwizzleBits;
        var descriptors = new[] { 1, 2, 3, 4 }.Select(i => Descriptor(cg, call[0].Resolve(), call[i].Resolve(), bits)).ToArray();
        var d = Begin(cg, call, -1, Accumulators, accumulate: false);
        var sa = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        var sb = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        for (int chain = 0; chain < 2; chain++)
            for (int s = 0; s < kSteps; s++)
            {
                AddUnits(cg, sa, descriptors[2 * chain], Step(false, aRegion, s));
                AddUnits(cg, sb, descriptors[2 * chain + 1], Step(false, bRegion, s));
                using var command = cg.BeginCommand(Instruction(64));
                command.AppendVectorArgument(d[(32 * chain)..(32 * chain + 32)]);
                command.AppendArgument(sa);
                command.AppendArgument(sb);
                command.AppendConstant(s == 0 ? 0L : 1L);
                command.AppendConstant(1L);
                command.AppendConstant(1L);
                command.AppendConstant(0L);
                command.AppendConstant(0L);
            }
        End(cg);
        foreach (var r in descriptors.Append(sa).Append(sb)) cg.FreeRegister(r);
    }

    /// <summary>Arguments (f1, f2, shared, b1, b2, bRegion, kSteps, c1, c2): two accumulating register-A chains into one 128-register result.</summary>
    private static void EmitMmaRN2(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        int bRegion = Constant(call, 5, "bRegion"), kSteps = Constant(call, 6, "kSteps");
        CheckSteps(kSteps);
        var fragments = new[] { Operands(cg, call[0].Resolve(), 4 * kSteps), Operands(cg, call[1].Resolve(), 4 * kSteps) };
        var bits = Leading(true, bRegion) | SwizzleBits;
        var descriptors = new[] { Descriptor(cg, call[2].Resolve(), call[3].Resolve(), bits), Descriptor(cg, call[2].Resolve(), call[4].Resolve(), bits) };
        var d = Flatten(cg.Allocate(call), 2 * Accumulators);
        Move(cg, d, Operands(cg, call[7].Resolve(), Accumulators).Concat(Operands(cg, call[8].Resolve(), Accumulators)).ToArray());
        cg.Command("wgmma.fence.sync.aligned", null);
        var sb = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        for (int chain = 0; chain < 2; chain++)
            for (int s = 0; s < kSteps; s++)
            {
                AddUnits(cg, sb, descriptors[chain], Step(true, bRegion, s));
                using var command = cg.BeginCommand(Instruction(128));
                command.AppendVectorArgument(d[(64 * chain)..(64 * chain + 64)]);
                command.AppendVectorArgument(fragments[chain][(4 * s)..(4 * s + 4)]);
                command.AppendArgument(sb);
                command.AppendConstant(1L);
                command.AppendConstant(1L);
                command.AppendConstant(1L);
                command.AppendConstant(1L);
            }
        End(cg);
        foreach (var r in descriptors.Append(sb)) cg.FreeRegister(r);
    }

    /// <summary><c>st.shared.v2.f32</c> [address], {x, y}.</summary>
    private static void EmitStoreShared64(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var address = TensorCore.SharedAddress(cg, call[0].Resolve(), call[1].Resolve());
        var x = cg.EnsureHardwareRegister(cg.LoadPrimitive(call[2].Resolve()));
        var y = cg.EnsureHardwareRegister(cg.LoadPrimitive(call[3].Resolve()));
        using (var command = cg.BeginCommand("st.shared.v2.f32"))
        {
            command.AppendArgumentValue(address);
            command.AppendVectorArgument(new[] { x, y });
        }
        cg.FreeRegister(address);
    }

    /// <summary>Arguments (global, shared, element, bytes): one bulk reduction and its commit; a constant size is checked here.</summary>
    private static void EmitBulkReduceAdd(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        var call = (MethodCall)value;
        var size = call[3].Resolve();
        if (size is PrimitiveValue constant && (constant.Int32Value <= 0 || constant.Int32Value % 16 != 0))
            throw new InvalidOperationException($"WarpgroupMma: bulk reductions move a positive multiple of 16 bytes, got {constant.Int32Value}");
        var bytes = cg.EnsureHardwareRegister(cg.LoadPrimitive(size));
        var target = TensorCore.GlobalAddress(cg, call[0].Resolve());
        var source = TensorCore.SharedAddress(cg, call[1].Resolve(), call[2].Resolve());
        using (var command = cg.BeginCommand("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32"))
        {
            command.AppendArgumentValue(target);
            command.AppendArgumentValue(source);
            command.AppendArgument(bytes);
        }
        cg.Command("cp.async.bulk.commit_group", null);
        cg.FreeRegister(target);
        cg.FreeRegister(source);
    }

    private static void EmitBulkWaitRead(PTXBackend backend, PTXCodeGenerator cg, Value value)
    {
        using var command = cg.BeginCommand("cp.async.bulk.wait_group.read");
        command.AppendConstant(0L);
    }

    private static void EmitFenceProxyAsync(PTXBackend backend, PTXCodeGenerator cg, Value value) => cg.Command("fence.proxy.async.shared::cta", null);

    private static void CheckSteps(int kSteps)
    {
        if (kSteps < 1 || kSteps > 8) throw new InvalidOperationException($"WarpgroupMma: kSteps must be 1..8, got {kSteps}");
    }

    /// <summary>The value of a constant argument (region sizes, step counts and flags shape the instruction sequence).</summary>
    private static int Constant(MethodCall call, int index, string name) => call[index].Resolve() switch
    {
        PrimitiveValue p => p.Int32Value,
        var other => throw new InvalidOperationException($"WarpgroupMma: argument '{name}' must be a compile-time constant, got {other}"),
    };

    /// <summary>
    /// The accumulator registers of the result: C moved in when accumulating (C is never written), then
    /// <c>wgmma.fence</c> so the MMAs see those writes.
    /// </summary>
    private static Registers.PrimitiveRegister[] Begin(PTXCodeGenerator cg, MethodCall call, int cIndex, int count, bool accumulate)
    {
        var result = Flatten(cg.Allocate(call), count);
        if (accumulate) Move(cg, result, Operands(cg, call[cIndex].Resolve(), count));
        cg.Command("wgmma.fence.sync.aligned", null);
        return result;
    }

    /// <summary><c>mov.f32</c> of each source register into its target (the accumulators an MMA group then adds to).</summary>
    private static void Move(PTXCodeGenerator cg, Registers.PrimitiveRegister[] targets, Registers.PrimitiveRegister[] sources)
    {
        for (int i = 0; i < targets.Length; i++)
        {
            using var move = cg.BeginCommand("mov.f32");
            move.AppendArgument(targets[i]);
            move.AppendArgument(sources[i]);
        }
    }

    private static void End(PTXCodeGenerator cg)
    {
        cg.Command("wgmma.commit_group.sync.aligned", null);
        using var wait = cg.BeginCommand("wgmma.wait_group.sync.aligned");
        wait.AppendConstant(0L);
    }

    private static Registers.PrimitiveRegister[] Operands(PTXCodeGenerator cg, Value value, int count)
    {
        var result = Flatten(cg.Load(value), count);
        for (int i = 0; i < count; i++) result[i] = cg.EnsureHardwareRegister(result[i]);
        return result;
    }

    /// <summary>The first <paramref name="count"/> primitive registers of a (possibly nested) compound register, in field order.</summary>
    private static Registers.PrimitiveRegister[] Flatten(Registers.Register register, int count)
    {
        var list = new List<Registers.PrimitiveRegister>();
        void Walk(Registers.Register r)
        {
            if (r is Registers.CompoundRegister compound) foreach (var child in compound.Children) Walk(child);
            else list.Add((Registers.PrimitiveRegister)r);
        }
        Walk(register);
        if (list.Count < count) throw new InvalidOperationException($"WarpgroupMma: expected {count} registers, got {list.Count}");
        return list.GetRange(0, count).ToArray();
    }

    /// <summary>A matrix descriptor: bits 0–13 the 16-byte unit of the shared address of <paramref name="pointer"/> + 2·<paramref name="element"/>, then <paramref name="bits"/>.</summary>
    private static Registers.HardwareRegister Descriptor(PTXCodeGenerator cg, Value pointer, Value element, long bits)
    {
        var address = TensorCore.SharedAddress(cg, pointer, element);
        var desc = cg.AllocateRegister(BasicValueType.Int64, PTXRegisterKind.Int64);
        void Op(string op, Registers.HardwareRegister source, long constant)
        {
            using var command = cg.BeginCommand(op);
            command.AppendArgument(desc);
            command.AppendArgument(source);
            command.AppendConstant(constant);
        }
        using (var widen = cg.BeginCommand("cvt.u64.u32"))
        {
            widen.AppendArgument(desc);
            widen.AppendArgument(address);
        }
        Op("shr.u64", desc, 4);
        Op("and.b64", desc, 0x3FFF);
        Op("or.b64", desc, bits);
        cg.FreeRegister(address);
        return desc;
    }

    private static void AddUnits(PTXCodeGenerator cg, Registers.HardwareRegister target, Registers.HardwareRegister desc, long units)
    {
        using var command = cg.BeginCommand("add.s64");
        command.AppendArgument(target);
        command.AppendArgument(desc);
        command.AppendConstant(units);
    }
}
