using ILGPU.Runtime;
using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Ilgpu.Kernels;
using ModelGen.Rope;

namespace ModelGen.Tests.Ilgpu;

/// <summary>
/// The RoPE kernels against a host loop over the same fp32 tables and the same pair arithmetic: bit-identical, for the
/// packed bf16 path (four pairs per thread, all heads per thread) and the generic one, in both rotation precisions,
/// on 32-lane warps.
/// </summary>
public class RopeKernelTests(CpuAcceleratorFixture cpu) : IClassFixture<CpuAcceleratorFixture>
{
    [Theory]
    [InlineData(GpuDType.BF16, false, 16)] // packed path
    [InlineData(GpuDType.BF16, true, 16)]
    [InlineData(GpuDType.BF16, false, 6)]  // Half not a multiple of 4: generic path
    [InlineData(GpuDType.F32, false, 16)]
    [InlineData(GpuDType.F32, true, 16)]
    public void Rotation_matches_the_host_reference_bit_for_bit(GpuDType dtype, bool bf16Rotation, int headDim)
    {
        var device = cpu.Nvidia;
        int rows = 2, seq = 5, heads = 3;
        var frequencies = new RopeFrequencies(new RopeConfig { Theta = 10_000 }, headDim, 64);
        int half = headDim / 2, tokens = rows * seq;
        var random = new Random(headDim);
        var x = Enumerable.Range(0, tokens * heads * headDim).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        if (dtype == GpuDType.BF16) x = Bf16.ToFloats(Bf16.FromFloats(x));
        var positions = Enumerable.Range(0, tokens).Select(t => (t * 7 + 3) % 40).ToArray();
        var (cos, sin) = GpuRopeTable.Build(frequencies, 40, 40);

        var expected = (float[])x.Clone();
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++)
                {
                    long b = ((long)t * heads + h) * headDim;
                    int p = positions[t] * half + i;
                    var (o1, o2) = RopeKernels.Pair(x[b + i], x[b + i + half], cos[p], sin[p], bf16Rotation);
                    (expected[b + i], expected[b + i + half]) = dtype == GpuDType.BF16
                        ? (Bf16.ToFloat(Bf16.FromFloat(o1)), Bf16.ToFloat(Bf16.FromFloat(o2))) : (o1, o2);
                }

        var ops = new GpuOps(device, dtype);
        using var tensor = GpuTensor.FromHost(device, dtype, "x", x, tokens, heads * headDim);
        using var pos = device.Allocate<int>(tokens, "positions");
        pos.View.CopyFromCPU(positions);
        using var table = new GpuRopeTable(device, frequencies);
        table.Prepare(39);
        ops.Rope(tensor, HeadLayout.Packed(seq, heads * headDim, 0, heads, headDim), seq, pos.View, table, bf16Rotation, positions.Max());
        Assert.Equal(expected, tensor.ToHost());
    }

    [Fact]
    public void A_tensor_too_small_for_the_layout_is_a_clear_error()
    {
        var device = cpu.Device;
        var ops = new GpuOps(device, GpuDType.F32);
        using var tensor = GpuTensor.Allocate(device, GpuDType.F32, "q", 4, 16);
        using var pos = device.Allocate<int>(8, "positions");
        using var table = new GpuRopeTable(device, new RopeFrequencies(new RopeConfig(), 16, 64));
        table.Prepare(7);
        var e = Assert.Throws<ArgumentException>(() => ops.Rope(tensor, HeadLayout.Packed(8, 16, 0, 1, 16), 8, pos.View, table, false, 7));
        Assert.Contains("do not fit", e.Message);
    }
}
