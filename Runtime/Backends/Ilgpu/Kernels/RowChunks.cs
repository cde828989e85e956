using ILGPU;
using TC = ModelGen.Backends.Ilgpu.Kernels.TensorCore;
using static ModelGen.Backends.Ilgpu.Bf16;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>
/// Rows of a head (64 or 128 bf16) read by eight lanes each, as the passes before the backward kernel read them: lane j
/// of the eight holds elements 8j..8j+7 and 64+8j..64+8j+7, each eight one 16-byte load, so a warp works on four rows at
/// once, each of its loads covers whole 128-byte lines and a sum over a row takes three shuffles. On head dim 64 the
/// second chunk repeats the first and weighs 0.
/// </summary>
internal static class RowChunks
{
    /// <summary>A lane's two chunks of one row.</summary>
    internal struct Chunks
    {
        public U4 A, B;
    }

    /// <summary>The first elements of this lane's two chunks, and whether the second is its own (false on head dim 64, where it repeats the first).</summary>
    internal static (int E0, int E1, bool Two) Elements(int lane, int headDim)
    {
        int e0 = 8 * (lane & 7);
        bool two = headDim > 64;
        return (e0, two ? e0 + 64 : e0, two);
    }

    /// <summary>The chunks of the row at element <paramref name="row"/> of <paramref name="view"/>.</summary>
    internal static Chunks Load(ArrayView<ushort> view, long row, int e0, int e1)
    {
        ref ushort g = ref view[0];
        return new Chunks { A = TC.LoadGlobal16(ref g, row + e0), B = TC.LoadGlobal16(ref g, row + e1) };
    }

    /// <summary>Σ of the eight bf16 products of two chunks, in element order.</summary>
    internal static float Dot(U4 x, U4 y) =>
        Lo(x.X) * Lo(y.X) + Hi(x.X) * Hi(y.X) + Lo(x.Y) * Lo(y.Y) + Hi(x.Y) * Hi(y.Y)
        + Lo(x.Z) * Lo(y.Z) + Hi(x.Z) * Hi(y.Z) + Lo(x.W) * Lo(y.W) + Hi(x.W) * Hi(y.W);

    /// <summary>This lane's part of a row's dot product: the first chunks', plus the second ones' where <paramref name="two"/> (weighted 0 otherwise: a select, not a branch).</summary>
    internal static float Dot(in Chunks x, in Chunks y, bool two) => Dot(x.A, y.A) + (two ? 1f : 0f) * Dot(x.B, y.B);

    /// <summary>The sum over the eight lanes of this lane's row (three shuffles, written out: ILGPU does not unroll loops).</summary>
    internal static float Sum8(float x)
    {
        x += Warp.ShuffleXor(x, 1);
        x += Warp.ShuffleXor(x, 2);
        return x + Warp.ShuffleXor(x, 4);
    }
}
