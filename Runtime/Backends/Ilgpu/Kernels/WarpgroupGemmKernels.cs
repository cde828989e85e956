using System.Runtime.CompilerServices;
using ILGPU;
using TC = ModelGen.Backends.Ilgpu.Kernels.TensorCore;
using WG = ModelGen.Backends.Ilgpu.Kernels.WarpgroupMma;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>Arguments of <see cref="WarpgroupGemmKernels"/>: C [M, N] (fp32) = A [M, K] · B, bf16 bits, row-major.</summary>
public struct WarpgroupGemmArgs
{
    /// <summary>A [M, K].</summary>
    public ArrayView<ushort> A;
    /// <summary>B: [N, K] for <see cref="WarpgroupGemmKernels.GemmNT"/> (C = A·Bᵀ), [K, N] for <see cref="WarpgroupGemmKernels.GemmNN"/>.</summary>
    public ArrayView<ushort> B;
    /// <summary>C [M, N].</summary>
    public ArrayView<float> C;
    /// <summary>Shape: multiples of <see cref="WarpgroupGemmKernels.Tile"/>.</summary>
    public int M, N, K;
    /// <summary>
    /// Times each loaded pair of tiles is multiplied into C (1 for a GEMM): above 1 the kernel measures the tensor cores
    /// with their operands in shared memory, and C = Repeats · A·B.
    /// </summary>
    public int Repeats;
}

/// <summary>
/// GEMMs on Hopper's warpgroup MMA: the operands of <see cref="WarpgroupMma"/> checked end to end (layouts, descriptors,
/// fragments) on the CPU accelerator in CI and on the H200, and its throughput measured by <c>modelgen bench-wgmma</c>.
/// One group of two warpgroups (256 threads) per 128 × 128 tile of C; K in steps of 128 through 64 KB of shared memory.
/// </summary>
public static class WarpgroupGemmKernels
{
    /// <summary>Rows and columns of C per group, and the K step.</summary>
    public const int Tile = 128;

    /// <summary>Threads per group: two warpgroups of 64 rows each.</summary>
    public const int Threads = 2 * WG.Threads;

    /// <summary>Dynamic shared memory per group, bytes: an A and a B tile of 128 × 128 bf16.</summary>
    public const int SharedBytes = 2 * Tile * Tile * 2;

    private const int Region = Tile * 64; // elements between the two 64-column blocks of a tile
    private const int BTile = Tile * Tile; // B's tile follows A's

    /// <summary>C = A · Bᵀ with B [N, K]: both operands K-major in shared memory (<see cref="WarpgroupMma.MmaKK"/>).</summary>
    public static void GemmNT(WarpgroupGemmArgs a)
    {
        var smem = SharedMemory.GetDynamic<ushort>();
        ref ushort sm = ref smem[0];
        int tilesN = a.N / Tile, m0 = Grid.IdxX / tilesN * Tile, n0 = Grid.IdxX % tilesN * Tile;
        int wg = Group.IdxX / WG.Threads;
        var acc = default(Acc128);
        for (int k0 = 0; k0 < a.K; k0 += Tile)
        {
            Load(ref sm, 0, a.A, m0, a.K, k0);
            Load(ref sm, BTile, a.B, n0, a.K, k0);
            for (int r = 0; r < a.Repeats; r++)
                acc = WG.MmaKK(ref sm, wg * 64 * 64, Region, BTile, Region, 8, acc, true);
            Group.Barrier();
        }
        Store(a, acc, m0 + wg * 64, n0);
    }

    /// <summary>C = A · B with B [K, N]: A from registers, B N-major in shared memory (<see cref="WarpgroupMma.MmaRN"/>).</summary>
    public static void GemmNN(WarpgroupGemmArgs a)
    {
        var smem = SharedMemory.GetDynamic<ushort>();
        ref ushort sm = ref smem[0];
        int tilesN = a.N / Tile, m0 = Grid.IdxX / tilesN * Tile, n0 = Grid.IdxX % tilesN * Tile;
        int t = Group.IdxX, wg = t / WG.Threads, lane = t & 31, g = lane >> 2, q = lane & 3;
        int row = m0 + wg * 64 + 16 * ((t >> 5) & 3) + g;
        var acc = default(Acc128);
        for (int k0 = 0; k0 < a.K; k0 += Tile)
        {
            Load(ref sm, BTile, a.B, k0, a.N, n0);
            // A's fragments straight from global memory: rows g and g + 8 of the warp, columns 2q, 2q + 1 (+ 8) of each 16.
            long at = (long)row * a.K + k0 + 2 * q;
            var frag = new U4x8
            {
                K0 = Fragment(a.A, at, a.K), K1 = Fragment(a.A, at + 16, a.K), K2 = Fragment(a.A, at + 32, a.K), K3 = Fragment(a.A, at + 48, a.K),
                K4 = Fragment(a.A, at + 64, a.K), K5 = Fragment(a.A, at + 80, a.K), K6 = Fragment(a.A, at + 96, a.K), K7 = Fragment(a.A, at + 112, a.K),
            };
            for (int r = 0; r < a.Repeats; r++)
                acc = WG.MmaRN(frag, ref sm, BTile, Region, 8, acc, true);
            Group.Barrier();
        }
        Store(a, acc, m0 + wg * 64, n0);
    }

    /// <summary>An A fragment from global memory: rows g and g + 8 (<paramref name="width"/> apart), columns 2q, 2q + 1 and 2q + 8, 2q + 9 of 16 (from <paramref name="at"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static U4 Fragment(ArrayView<ushort> view, long at, int width) =>
        new() { X = Pair(view, at), Y = Pair(view, at + 8L * width), Z = Pair(view, at + 8), W = Pair(view, at + 8L * width + 8) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Pair(ArrayView<ushort> view, long at) => view[at] | ((uint)view[at + 1] << 16);

    /// <summary>
    /// Rows <paramref name="row0"/>.. + 127, columns <paramref name="column0"/>.. + 127 of a row-major matrix with
    /// <paramref name="width"/> columns into the swizzled tile at <paramref name="tile"/>: one 16-byte cp.async per chunk,
    /// then the wait, the proxy fence and a barrier.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load(ref ushort sm, int tile, ArrayView<ushort> source, int row0, int width, int column0)
    {
        ref ushort global = ref source[0];
        for (int i = Group.IdxX; i < Tile * Tile / 8; i += Threads)
        {
            int r = i >> 4, c = (i & 15) * 8;
            TC.CopyAsync(ref sm, tile + WG.Offset(r, c, Region), ref global, (long)(row0 + r) * width + column0 + c, 16);
        }
        TC.CommitAsync();
        TC.WaitAsync0();
        WG.FenceProxyAsync();
        Group.Barrier();
    }

    /// <summary>This thread's 64 accumulators to C: rows <paramref name="row0"/> + 16·warp + g (+ 8), columns 8j + 2q (+ 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(WarpgroupGemmArgs a, Acc128 acc, int row0, int n0)
    {
        int t = Group.IdxX, lane = t & 31;
        long r0 = row0 + 16 * ((t >> 5) & 3) + (lane >> 2), r1 = r0 + 8;
        int col = n0 + 2 * (lane & 3);
        StoreChunk(a, acc.C0, r0, r1, col); StoreChunk(a, acc.C1, r0, r1, col + 8);
        StoreChunk(a, acc.C2, r0, r1, col + 16); StoreChunk(a, acc.C3, r0, r1, col + 24);
        StoreChunk(a, acc.C4, r0, r1, col + 32); StoreChunk(a, acc.C5, r0, r1, col + 40);
        StoreChunk(a, acc.C6, r0, r1, col + 48); StoreChunk(a, acc.C7, r0, r1, col + 56);
        StoreChunk(a, acc.C8, r0, r1, col + 64); StoreChunk(a, acc.C9, r0, r1, col + 72);
        StoreChunk(a, acc.C10, r0, r1, col + 80); StoreChunk(a, acc.C11, r0, r1, col + 88);
        StoreChunk(a, acc.C12, r0, r1, col + 96); StoreChunk(a, acc.C13, r0, r1, col + 104);
        StoreChunk(a, acc.C14, r0, r1, col + 112); StoreChunk(a, acc.C15, r0, r1, col + 120);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreChunk(WarpgroupGemmArgs a, F4 c, long r0, long r1, int n)
    {
        a.C[r0 * a.N + n] = c.X;
        a.C[r0 * a.N + n + 1] = c.Y;
        a.C[r1 * a.N + n] = c.Z;
        a.C[r1 * a.N + n + 1] = c.W;
    }
}
