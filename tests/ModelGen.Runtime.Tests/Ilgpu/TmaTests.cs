using ILGPU;
using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Ilgpu.Kernels;

namespace ModelGen.Tests.Ilgpu;

/// <summary>
/// The tensor memory accelerator's CPU emulation (<see cref="Tma"/>) and the tensor maps it reads
/// (<see cref="TensorMaps"/>): a box lands in the swizzled layout the warpgroup MMAs read, with zeros past the tensor,
/// and completes its barrier's phase only when its arrival and all announced bytes are in. The warpgroup-MMA forward
/// runs through the same emulation in <see cref="FlashAttentionTests"/>; the H200 runs the PTX (<c>tools/gpu-flash.sh</c>).
/// </summary>
public class TmaTests(FlashCpuFixture cpu) : IClassFixture<FlashCpuFixture>
{
    private const int Seq = 100, Heads = 2, HeadDim = 128;

    private static ushort[] Operand() => Enumerable.Range(0, Seq * Heads * HeadDim).Select(i => (ushort)(i * 7 + 1)).ToArray();

    private static HeadLayout Layout => HeadLayout.Packed(Seq, Heads * HeadDim, 0, Heads, HeadDim);

    [Fact]
    public void A_box_lands_swizzled_with_zeros_past_the_end_and_completes_the_phase_with_its_last_bytes()
    {
        var host = Operand();
        using var buffer = cpu.Device.Accelerator.Allocate1D(host);
        var map = new ulong[TensorMaps.Words];
        TensorMaps.Encode(cpu.Device, "K", buffer.View, Layout, HeadDim, Seq, 1, map);
        const int barrier = 2 * 64 * 64;
        var shared = new ushort[barrier + Tma.BarrierElements];
        Tma.InitBarrier(ref shared[0], barrier);
        // Before its first phase completes, a barrier counts the phase before it (parity 1) as complete.
        Assert.Equal(1, Tma.TryWait(ref shared[0], barrier, 1));
        Tma.ExpectBytes(ref shared[0], barrier, 2 * TensorMaps.BoxBytes);
        // Head 1, columns 64–127, tokens 80–143 of 100: the first 20 rows from the operand, the rest zeros.
        Tma.Load(ref shared[0], 0, barrier, ref map[0], 64, 1, 80, 0);
        Assert.Equal(0, Tma.EmulatedPhases(ref shared[0], barrier));
        Tma.Load(ref shared[0], 64 * 64, barrier, ref map[0], 0, 0, 0, 0);
        Assert.Equal(1, Tma.EmulatedPhases(ref shared[0], barrier));
        Assert.Equal(1, Tma.TryWait(ref shared[0], barrier, 0));
        for (int r = 0; r < 64; r++)
            for (int e = 0; e < 64; e++)
            {
                int token = 80 + r;
                ushort expected = token < Seq ? host[token * Heads * HeadDim + HeadDim + 64 + e] : (ushort)0;
                Assert.Equal(expected, shared[WarpgroupMma.Offset(r, e, 0)]);
                Assert.Equal(host[r * Heads * HeadDim + e], shared[64 * 64 + WarpgroupMma.Offset(r, e, 0)]);
            }
        // The next phase (parity 1) starts open again.
        Tma.ExpectBytes(ref shared[0], barrier, TensorMaps.BoxBytes);
        Tma.Load(ref shared[0], 0, barrier, ref map[0], 0, 1, 0, 0);
        Assert.Equal(2, Tma.EmulatedPhases(ref shared[0], barrier));
        Assert.Equal(1, Tma.TryWait(ref shared[0], barrier, 1));
    }

    [Fact]
    public void A_barrier_counts_one_arrival_per_phase()
    {
        var shared = new ushort[Tma.BarrierElements];
        Tma.InitBarrier(ref shared[0], 0);
        Tma.ExpectBytes(ref shared[0], 0, TensorMaps.BoxBytes);
        var e = Assert.Throws<InvalidOperationException>(() => Tma.ExpectBytes(ref shared[0], 0, TensorMaps.BoxBytes));
        Assert.Contains("second arrival", e.Message);
    }

    [Fact]
    public void Maps_refuse_operands_the_copy_engine_cannot_address()
    {
        using var buffer = cpu.Device.Accelerator.Allocate1D(Operand());
        var map = new ulong[TensorMaps.Words];
        var misaligned = Assert.Throws<ArgumentException>(() =>
            TensorMaps.Encode(cpu.Device, "Q", buffer.View, Layout with { Offset = 4 }, HeadDim, Seq - 1, 1, map));
        Assert.Contains("tensor map of Q", misaligned.Message);
        Assert.Contains("16-byte aligned", misaligned.Message);
        var stride = Assert.Throws<ArgumentException>(() =>
            TensorMaps.Encode(cpu.Device, "K", buffer.View, Layout with { TokenStride = 260, BatchStride = 260 * Seq }, HeadDim, Seq - 2, 1, map));
        Assert.Contains("token stride 260", stride.Message);
        var small = Assert.Throws<ArgumentException>(() =>
            TensorMaps.Encode(cpu.Device, "V", buffer.View.SubView(0, 1000), Layout, HeadDim, Seq, 1, map));
        Assert.Contains("the view has 1000", small.Message);
        var packed = Assert.Throws<ArgumentException>(() => TensorMaps.Encode(cpu.Device, "V", buffer.View, Layout, 64, Seq, 1, map));
        Assert.Contains("head stride 128", packed.Message);
    }

    [Fact]
    public void The_emulation_refuses_a_map_it_did_not_encode()
    {
        var map = new ulong[TensorMaps.Words];
        map[0] = 0x1234;
        var shared = new ushort[64 * 64 + Tma.BarrierElements];
        var e = Assert.Throws<InvalidOperationException>(() => Tma.Load(ref shared[0], 0, 64 * 64, ref map[0], 0, 0, 0, 0));
        Assert.Contains("not a CPU emulation descriptor", e.Message);
    }
}
