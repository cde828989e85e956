using ILGPU;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>Arguments of <see cref="ElementwiseKernels.Embed{T}"/>.</summary>
public struct EmbedArgs<T> where T : unmanaged
{
    /// <summary>Token ids [tokens].</summary>
    public ArrayView<int> Ids;
    /// <summary>Embedding table [vocab, hidden].</summary>
    public ArrayView<T> Table;
    /// <summary>Output [tokens, hidden].</summary>
    public ArrayView<T> Output;
    /// <summary>Row width.</summary>
    public int Hidden;
}

/// <summary>Arguments of the two-operand element-wise kernels.</summary>
public struct BinaryArgs<T> where T : unmanaged
{
    /// <summary>Read and written.</summary>
    public ArrayView<T> X;
    /// <summary>Read.</summary>
    public ArrayView<T> Y;
    /// <summary>Row width for broadcasts (bias add).</summary>
    public int Width;
}

/// <summary>Arguments of <see cref="ElementwiseKernels.SwiGlu{T, TE}"/>.</summary>
public struct SwiGluArgs<T> where T : unmanaged
{
    /// <summary>gate ‖ up projections [tokens, 2 × intermediate].</summary>
    public ArrayView<T> GateUp;
    /// <summary>Output [tokens, intermediate].</summary>
    public ArrayView<T> Output;
    /// <summary>Intermediate size.</summary>
    public int Intermediate;
}

/// <summary>One thread per element.</summary>
public static class ElementwiseKernels
{
    /// <summary>output[t, c] = table[ids[t], c].</summary>
    public static void Embed<T>(Index1D i, EmbedArgs<T> a) where T : unmanaged
    {
        int t = i / a.Hidden, c = i - t * a.Hidden;
        a.Output[i] = a.Table[(long)a.Ids[t] * a.Hidden + c];
    }

    /// <summary>x += y (residual connections), rounded to the storage type.</summary>
    public static void Add<T, TE>(Index1D i, BinaryArgs<T> a) where T : unmanaged where TE : struct, IElement<T>
    {
        var e = default(TE);
        a.X[i] = e.Store(e.Load(a.X[i]) + e.Load(a.Y[i]));
    }

    /// <summary>x[r, c] += y[c] (a bias over rows of <c>Width</c>).</summary>
    public static void AddRow<T, TE>(Index1D i, BinaryArgs<T> a) where T : unmanaged where TE : struct, IElement<T>
    {
        var e = default(TE);
        a.X[i] = e.Store(e.Load(a.X[i]) + e.Load(a.Y[i % a.Width]));
    }

    /// <summary>
    /// out = SiLU(gate) × up, with SiLU's result rounded to the storage type before the product, as
    /// <c>act_fn(gate_proj(x)) * up_proj(x)</c> does in HF.
    /// </summary>
    public static void SwiGlu<T, TE>(Index1D i, SwiGluArgs<T> a) where T : unmanaged where TE : struct, IElement<T>
    {
        var e = default(TE);
        int t = i / a.Intermediate, j = i - t * a.Intermediate;
        long row = (long)t * 2 * a.Intermediate;
        float g = e.Load(a.GateUp[row + j]), u = e.Load(a.GateUp[row + a.Intermediate + j]);
        float silu = e.Round(g / (1f + MathF.Exp(-g)));
        a.Output[i] = e.Store(silu * u);
    }

    /// <summary>Converts storage types (e.g. bf16 logits to fp32).</summary>
    public static void ToFloat<T, TE>(Index1D i, ConvertArgs<T> a) where T : unmanaged where TE : struct, IElement<T> =>
        a.Output[i] = default(TE).Load(a.Input[i]);
}

/// <summary>Arguments of <see cref="ElementwiseKernels.ToFloat{T, TE}"/>.</summary>
public struct ConvertArgs<T> where T : unmanaged
{
    /// <summary>Read.</summary>
    public ArrayView<T> Input;
    /// <summary>Written.</summary>
    public ArrayView<float> Output;
}

/// <summary>Arguments of <see cref="RandomKernels.RandomNormalBf16"/>.</summary>
public struct RandomArgs
{
    /// <summary>Written: bf16 bits.</summary>
    public ArrayView<ushort> Output;
    /// <summary>Stream of the generator: equal seeds give equal values.</summary>
    public ulong Seed;
    /// <summary>Standard deviation.</summary>
    public float Scale;
}

/// <summary>Random inputs generated on the device (benchmarks and GPU checks of large shapes).</summary>
public static class RandomKernels
{
    /// <summary>
    /// output[i] = bf16(Scale · N(0, 1)): a counter-based generator (SplitMix64 of seed and index) and Box–Muller, so
    /// every element is independent of the launch geometry and the same on every device.
    /// </summary>
    public static void RandomNormalBf16(Index1D i, RandomArgs a)
    {
        ulong bits = Mix(a.Seed * 0x9E3779B97F4A7C15UL + (ulong)(int)i);
        // Two 24-bit uniforms in (0, 1] and [0, 1).
        float u1 = ((bits >> 40) + 1) * (1f / 16777216f);
        float u2 = ((bits >> 16) & 0xFFFFFF) * (1f / 16777216f);
        float normal = MathF.Sqrt(-2f * MathF.Log(u1)) * MathF.Cos(2f * MathF.PI * u2);
        a.Output[i] = Bf16.FromFloat(a.Scale * normal);
    }

    /// <summary>SplitMix64's finalizer.</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
