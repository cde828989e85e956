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
