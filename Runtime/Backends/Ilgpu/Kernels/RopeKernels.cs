using ILGPU;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>
/// Arguments of the RoPE kernels. Element (token t, head h, dim d) of the rotated tensor lives at
/// <c>Offset + (t / Seq)·BatchStride + (t % Seq)·TokenStride + h·HeadStride + d</c>, which covers both the fused
/// QKV projection output ([tokens, (Hq + 2·Hkv)·D]) and the [B, H, S, D] layout attention libraries use.
/// </summary>
public struct RopeArgs<T> where T : unmanaged
{
    /// <summary>Rotated in place.</summary>
    public ArrayView<T> X;
    /// <summary>Position id per token [tokens].</summary>
    public ArrayView<int> Positions;
    /// <summary>cos table [positions, Half], fp32, attention scaling included.</summary>
    public ArrayView<float> Cos;
    /// <summary>sin table [positions, Half], fp32, attention scaling included.</summary>
    public ArrayView<float> Sin;
    /// <summary>Tokens per batch row.</summary>
    public int Seq;
    /// <summary>Tokens in all rows.</summary>
    public int Tokens;
    /// <summary>Heads rotated per token.</summary>
    public int Heads;
    /// <summary>Rotary dim / 2: dims i and i + Half rotate together (HF's rotate_half pairing).</summary>
    public int Half;
    /// <summary>First element.</summary>
    public long Offset;
    /// <summary>Elements between batch rows.</summary>
    public long BatchStride;
    /// <summary>Elements between tokens.</summary>
    public long TokenStride;
    /// <summary>Elements between heads.</summary>
    public long HeadStride;
    /// <summary>1: cos/sin and every product rounded to bf16 (HF with bf16 activations); 0: fp32 rotation, one rounding.</summary>
    public int Bf16Rotation;
}

/// <summary>RoPE from position ids with fp32 angle tables, in place.</summary>
public static class RopeKernels
{
    /// <summary>One thread per rotated pair (t, h, i).</summary>
    public static void Rotate<T, TE>(Index1D index, RopeArgs<T> a) where T : unmanaged where TE : struct, IElement<T>
    {
        var e = default(TE);
        int i = index % a.Half;
        int th = index / a.Half;
        int h = th % a.Heads, t = th / a.Heads;
        long base0 = Base(a, t, h);
        long table = (long)a.Positions[t] * a.Half + i;
        float x1 = e.Load(a.X[base0 + i]), x2 = e.Load(a.X[base0 + i + a.Half]);
        var (o1, o2) = Pair(x1, x2, a.Cos[table], a.Sin[table], a.Bf16Rotation != 0);
        a.X[base0 + i] = e.Store(o1);
        a.X[base0 + i + a.Half] = e.Store(o2);
    }

    /// <summary>
    /// bf16 storage, four pairs per thread through 8-byte loads and stores (needs Half, offsets and strides to be
    /// multiples of 4): the bandwidth-bound path. One thread per (token, group of four pairs) walks every head, so each
    /// cos/sin value is read once per token instead of once per head (the fp32 tables would otherwise move as many bytes
    /// through L2 as the tensor itself).
    /// </summary>
    public static void RotateBf16x4(Index1D index, RopeArgs<ushort> a)
    {
        int quarter = a.Half >> 2;
        int t = index / quarter, i4 = index - t * quarter;
        long table = (long)a.Positions[t] * a.Half + i4 * 4;
        bool bf16 = a.Bf16Rotation != 0;
        float c0 = a.Cos[table], c1 = a.Cos[table + 1], c2 = a.Cos[table + 2], c3 = a.Cos[table + 3];
        float s0 = a.Sin[table], s1 = a.Sin[table + 1], s2 = a.Sin[table + 2], s3 = a.Sin[table + 3];
        var packed = a.X.Cast<ulong>();
        long base0 = Base(a, t, 0);
        for (int h = 0; h < a.Heads; h++, base0 += a.HeadStride)
        {
            long lo = (base0 >> 2) + i4, hi = ((base0 + a.Half) >> 2) + i4;
            ulong w1 = packed[lo], w2 = packed[hi];
            ulong r1 = 0, r2 = 0;
            Rotate4(w1, w2, 0, c0, s0, bf16, ref r1, ref r2);
            Rotate4(w1, w2, 16, c1, s1, bf16, ref r1, ref r2);
            Rotate4(w1, w2, 32, c2, s2, bf16, ref r1, ref r2);
            Rotate4(w1, w2, 48, c3, s3, bf16, ref r1, ref r2);
            packed[lo] = r1;
            packed[hi] = r2;
        }
    }

    private static void Rotate4(ulong w1, ulong w2, int shift, float c, float s, bool bf16, ref ulong r1, ref ulong r2)
    {
        var (o1, o2) = Pair(Bf16.ToFloat((ushort)(w1 >> shift)), Bf16.ToFloat((ushort)(w2 >> shift)), c, s, bf16);
        r1 |= (ulong)Bf16.FromFloat(o1) << shift;
        r2 |= (ulong)Bf16.FromFloat(o2) << shift;
    }

    private static long Base<T>(in RopeArgs<T> a, int t, int h) where T : unmanaged
    {
        int b = t / a.Seq, s = t - b * a.Seq;
        return a.Offset + b * a.BatchStride + s * a.TokenStride + h * a.HeadStride;
    }

    /// <summary>(x1·c − x2·s, x2·c + x1·s), in fp32 or with HF's bf16 roundings.</summary>
    public static (float, float) Pair(float x1, float x2, float c, float s, bool bf16)
    {
        if (!bf16) return (x1 * c - x2 * s, x2 * c + x1 * s);
        c = Bf16.ToFloat(Bf16.FromFloat(c));
        s = Bf16.ToFloat(Bf16.FromFloat(s));
        return (R(R(x1 * c) + R(-x2 * s)), R(R(x2 * c) + R(x1 * s)));
    }

    private static float R(float v) => Bf16.ToFloat(Bf16.FromFloat(v));
}
