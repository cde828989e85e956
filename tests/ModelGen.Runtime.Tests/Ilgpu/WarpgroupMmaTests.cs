using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Ilgpu.Kernels;

namespace ModelGen.Tests.Ilgpu;

/// <summary>
/// Hopper's warpgroup MMA: the PTX retargeting, the swizzled shared-memory layout and both MMA forms run end to end
/// through <see cref="WarpgroupGemmKernels"/> on the CPU accelerator (two warpgroups of four 32-lane warps), against
/// an fp64 product of the same bf16 inputs. The H200 runs the same kernels (<c>modelgen bench-wgmma</c>).
/// </summary>
public class WarpgroupMmaTests(FlashCpuFixture cpu) : IClassFixture<FlashCpuFixture>
{
    private const string Ptx = "//\n.version 8.8\n.target sm_80\n.address_size 64\n\n.extern .shared .align 4 .b8 __dyn_shared_alloca[];\n.visible .entry K() { ret; }\n";

    [Fact]
    public void Retarget_names_sm_90a_and_aligns_dynamic_shared_memory()
    {
        string ptx = Hopper.Retarget(Ptx);
        Assert.Contains("\n.target sm_90a\n", ptx);
        Assert.DoesNotContain("sm_80", ptx);
        Assert.Contains(".extern .shared .align 1024 .b8 __dyn_shared_alloca[];", ptx);
        Assert.Contains(".version 8.8", ptx);
        Assert.Equal(Ptx.Length + ".align 1024".Length - ".align 4".Length + "sm_90a".Length - "sm_80".Length, ptx.Length);
        // ILGPU's offline compiler writes ISA 8.0, the first with wgmma: raised to 8.3, the first with the tensor-map fence.
        Assert.Contains("\n.version 8.3\n", Hopper.Retarget(Ptx.Replace(".version 8.8", ".version 8.0")));
        Assert.Contains("\n.version 8.5\n", Hopper.Retarget(Ptx.Replace(".version 8.8", ".version 8.5")));
    }

    [Fact]
    public void Retarget_refuses_ptx_without_wgmma()
    {
        var old = Assert.Throws<InvalidOperationException>(() => Hopper.Retarget(Ptx.Replace(".version 8.8", ".version 7.8")));
        Assert.Contains("7.8", old.Message);
        var noTarget = Assert.Throws<InvalidOperationException>(() => Hopper.Retarget(Ptx.Replace(".target sm_80\n", "")));
        Assert.Contains(".target", noTarget.Message);
    }

    [Fact]
    public void Swizzled_offsets_cover_a_tile_once_and_keep_16_byte_chunks_whole()
    {
        const int rows = 128, columns = 128, region = rows * 64;
        var seen = new bool[rows * columns];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
            {
                int at = WarpgroupMma.Offset(r, c, region);
                Assert.False(seen[at]);
                seen[at] = true;
                Assert.Equal(c & 7, at & 7); // elements of a chunk stay together and in order
            }
        // Row 9's chunk 2 is at chunk 2 xor 1 = 3 of its 128-byte line; column 64 starts the second region.
        Assert.Equal(9 * 64 + 3 * 8, WarpgroupMma.Offset(9, 16, region));
        Assert.Equal(region + 5 * 64 + (0 ^ 5) * 8, WarpgroupMma.Offset(5, 64, region));
    }

    [Theory]
    [InlineData(true, 1)]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    public void Gemm_on_the_cpu_accelerator_matches_fp64(bool transposedB, int repeats)
    {
        const int m = 128, n = 128, k = 256;
        var random = new Random(transposedB ? 5 : 6);
        ushort[] Values(int count) => Enumerable.Range(0, count).Select(_ => Bf16.FromFloat((float)(random.NextDouble() * 2 - 1))).ToArray();
        var a = Values(m * k);
        var b = Values(n * k);
        var c = WarpgroupGemm.Multiply(cpu.Device, a, b, m, n, k, transposedB, repeats);
        double worst = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                    sum += Bf16.ToFloat(a[i * k + p]) * (double)Bf16.ToFloat(transposedB ? b[j * k + p] : b[p * n + j]);
                worst = Math.Max(worst, Math.Abs(c[i * n + j] - repeats * sum));
            }
        // fp32 sums of k = 256 products of magnitude ≤ 1: rounding stays far below 1e-3; a wrong element is off by O(1).
        Assert.True(worst < 1e-3, $"max |error| {worst}");
    }

    [Fact]
    public void Gemm_refuses_shapes_that_are_not_tiles()
    {
        var e = Assert.Throws<ArgumentException>(() => WarpgroupGemm.Multiply(cpu.Device, new ushort[128 * 100], new ushort[128 * 100], 128, 128, 100, true));
        Assert.Contains("k = 100", e.Message);
    }
}
