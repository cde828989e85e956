using ModelGen.Backends.Ilgpu;

namespace ModelGen.Tests.Ilgpu;

/// <summary>
/// Every kernel specialization compiles to PTX for SM_80 without a GPU (ILGPU's PTX backend runs offline), so a kernel
/// that only the CUDA backend rejects — an intrinsic without a PTX implementation, a non-blittable argument — fails
/// in CI instead of on the GPU machine.
/// </summary>
public class PtxCompileTests
{
    public static IEnumerable<object[]> Kernels() => PtxCompiler.Kernels().Select(k => new object[] { k.Name });

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_compiles_to_ptx(string kernel)
    {
        var method = PtxCompiler.Kernels().Single(k => k.Name == kernel).Method;
        string ptx = PtxCompiler.Compile(method);
        Assert.Contains(".entry", ptx);
        if (kernel.StartsWith("FlashKernels.Forward", StringComparison.Ordinal))
        {
            // The tensor-core path is really taken: mma, ldmatrix and cp.async appear as instructions.
            Assert.Contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", ptx);
            Assert.Contains("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", ptx);
            Assert.Contains("cp.async.cg.shared.global", ptx);
        }
        if (kernel == "FlashKernels.SwizzledToBf16")
        {
            // A chunk per thread: two 16-byte loads from the swizzled accumulator, one 16-byte store of eight bf16.
            Assert.Contains("ld.global.nc.v4.u32", ptx);
            Assert.Contains("st.global.v4.f32", ptx);
        }
        if (kernel == "AnchorKernels.Prepare")
        {
            // The rows move in 16-byte loads and stores, and the lane sums are written out (no shuffle loop).
            Assert.Contains("ld.global.nc.v4.u32", ptx);
            Assert.Contains("st.global.v4.f32", ptx);
            Assert.DoesNotContain("ld.global.b64", ptx);
            Assert.Contains("shfl.sync.bfly.b32", ptx);
        }
        if (kernel.StartsWith("WarpgroupGemmKernels", StringComparison.Ordinal) || kernel.StartsWith("HopperFlashKernels", StringComparison.Ordinal))
        {
            // wgmma exists on sm_90a only: the kernel comes retargeted (ILGPU's offline ISA 8.0 raised to 8.3, the first
            // with the tensor-map fence), with shared memory aligned for the swizzle, through Hopper.WithPtx: the
            // reflection the device's loader relies on.
            Assert.Contains(".target sm_90a", ptx);
            Assert.Contains(".version 8.3", ptx);
            Assert.Contains(".align 1024", ptx);
            Assert.Contains("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16", ptx);
            Assert.Contains("wgmma.wait_group.sync.aligned", ptx);
            if (kernel.StartsWith("HopperFlashKernels", StringComparison.Ordinal))
            {
                // Every tile arrives through the tensor memory accelerator against transaction barriers, issued by one
                // thread: forward, Q's four boxes and each step's eight (K and V, two tiles of two 64-column boxes);
                // backward, K and V's eight boxes and each step's four (Q and dO). One arrival announcing the bytes per
                // issue site (the first tiles, the first step's, the next step's), one fence per tensor map.
                bool forward = kernel.StartsWith("HopperFlashKernels.Forward", StringComparison.Ordinal);
                int Count(string pattern) => System.Text.RegularExpressions.Regex.Matches(ptx, pattern).Count;
                Assert.Equal(forward ? 4 + 8 + 8 : 8 + 4 + 4, Count(
                    @"cp\.async\.bulk\.tensor\.4d\.shared::cluster\.global\.tile\.mbarrier::complete_tx::bytes \[%r\d+\], \[%rd\d+, \{%r\d+, %r\d+, %r\d+, %r\d+\}\], \[%r\d+\];"));
                Assert.Equal(3, Count(@"mbarrier\.init\.shared::cta\.b64 \[%r\d+\], 1;"));
                Assert.Equal(3, Count(@"mbarrier\.arrive\.expect_tx\.shared::cta\.b64 _, \[%r\d+\], %r\d+;"));
                Assert.Equal(forward ? 3 : 4, Count(@"fence\.proxy\.tensormap::generic\.acquire\.gpu \[%rd\d+\], 128;"));
                Assert.Contains("fence.mbarrier_init.release.cluster;", ptx);
                Assert.Matches(@"mbarrier\.try_wait\.parity\.shared::cta\.b64 %p\d+, \[%r\d+\], %r\d+;", ptx);
                Assert.DoesNotContain("cp.async.cg", ptx);
                Assert.DoesNotContain("cp.async.ca", ptx);
            }
            if (kernel.StartsWith("HopperFlashKernels.Backward", StringComparison.Ordinal))
            {
                // dQ rows are staged in shared memory and added by the copy engine, the staging reused after its reads.
                Assert.Contains("st.shared.v2.f32", ptx);
                Assert.Contains("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32", ptx);
                Assert.Contains("cp.async.bulk.wait_group.read", ptx);
                // One bulk reduction per warp and step (a 4 KB block), its size in a register: the last block may be short.
                int sites = System.Text.RegularExpressions.Regex.Matches(ptx, @"cp\.reduce\.async\.bulk").Count;
                Assert.True(sites > 0);
                Assert.Equal(sites, System.Text.RegularExpressions.Regex.Matches(ptx, @"cp\.reduce\.async\.bulk\.global\S+\s+\[%rd\d+\], \[%r\d+\], %r\d+;").Count);
                Assert.DoesNotContain("red.global.add", ptx);
            }
        }
        else
        {
            Assert.DoesNotContain("sm_90a", ptx);
        }
    }
}
