using ILGPU;

namespace ModelGen.Backends.Ilgpu.Kernels;

/// <summary>Arguments of <see cref="ReductionKernels.RmsNorm{T, TE}"/>.</summary>
public struct RmsNormArgs<T> where T : unmanaged
{
    /// <summary>Input [rows, width].</summary>
    public ArrayView<T> Input;
    /// <summary>Weight [width].</summary>
    public ArrayView<T> Weight;
    /// <summary>Output [rows, width].</summary>
    public ArrayView<T> Output;
    /// <summary>Row width.</summary>
    public int Width;
    /// <summary>Epsilon inside the square root.</summary>
    public float Eps;
}

/// <summary>Arguments of <see cref="ReductionKernels.CrossEntropy{T, TE}"/>.</summary>
public struct CrossEntropyArgs<T> where T : unmanaged
{
    /// <summary>Logits [rows, vocab].</summary>
    public ArrayView<T> Logits;
    /// <summary>Target ids [rows]; negative = ignored.</summary>
    public ArrayView<int> Labels;
    /// <summary>Per-row loss [rows] (0 for ignored rows).</summary>
    public ArrayView<float> Loss;
    /// <summary>Vocabulary size.</summary>
    public int Vocab;
}

/// <summary>One thread group per row (any multiple of 32 threads up to 1024; see <see cref="GpuDevice.WarpsPerGroup"/>).</summary>
public static class ReductionKernels
{
    /// <summary>
    /// HF's <c>LlamaRMSNorm</c>: variance in fp32, x·rsqrt(var + eps) rounded to the storage type, times the weight.
    /// </summary>
    public static void RmsNorm<T, TE>(RmsNormArgs<T> a) where T : unmanaged where TE : struct, IElement<T>
    {
        var e = default(TE);
        long row = (long)Grid.IdxX * a.Width;
        float sum = 0;
        for (int c = Group.IdxX; c < a.Width; c += Group.DimX)
        {
            float v = e.Load(a.Input[row + c]);
            sum += v * v;
        }
        sum = GroupSum(sum);
        float r = 1f / MathF.Sqrt(sum / a.Width + a.Eps);
        for (int c = Group.IdxX; c < a.Width; c += Group.DimX)
            a.Output[row + c] = e.Store(e.Load(a.Weight[c]) * e.Round(e.Load(a.Input[row + c]) * r));
    }

    /// <summary>Per-row softmax cross-entropy: logsumexp(logits) − logits[label], in fp32.</summary>
    public static void CrossEntropy<T, TE>(CrossEntropyArgs<T> a) where T : unmanaged where TE : struct, IElement<T>
    {
        var e = default(TE);
        int r = Grid.IdxX;
        long row = (long)r * a.Vocab;
        float max = float.NegativeInfinity;
        for (int c = Group.IdxX; c < a.Vocab; c += Group.DimX) max = MathF.Max(max, e.Load(a.Logits[row + c]));
        max = GroupMax(max);
        float sum = 0;
        for (int c = Group.IdxX; c < a.Vocab; c += Group.DimX) sum += MathF.Exp(e.Load(a.Logits[row + c]) - max);
        sum = GroupSum(sum);
        if (Group.IdxX == 0)
        {
            int label = a.Labels[r];
            a.Loss[r] = label < 0 ? 0f : max + MathF.Log(sum) - e.Load(a.Logits[row + label]);
        }
    }

    /// <summary>Sum over the group; every thread gets the result.</summary>
    public static float GroupSum(float v) => GroupReduce<SumOp>(v);

    /// <summary>Max over the group; every thread gets the result.</summary>
    public static float GroupMax(float v) => GroupReduce<MaxOp>(v);

    /// <summary>Sum over the warp (butterfly); every lane gets the result.</summary>
    public static float WarpSum(float v) => WarpReduce<SumOp>(v);

    /// <summary>Max over the warp (butterfly); every lane gets the result.</summary>
    public static float WarpMax(float v) => WarpReduce<MaxOp>(v);

    /// <summary>Reduces over the group (at most 32 warps): per warp, then the warps' partials in every warp.</summary>
    private static float GroupReduce<TOp>(float v) where TOp : struct, IReduceOp
    {
        var partial = SharedMemory.Allocate<float>(32);
        v = WarpReduce<TOp>(v);
        if (Warp.LaneIdx == 0) partial[Warp.WarpIdx] = v;
        Group.Barrier();
        int warps = (Group.DimX + Warp.WarpSize - 1) / Warp.WarpSize;
        float total = default(TOp).Identity;
        for (int w = Warp.LaneIdx; w < warps; w += Warp.WarpSize) total = default(TOp).Apply(total, partial[w]);
        total = WarpReduce<TOp>(total);
        Group.Barrier();
        return total;
    }

    private static float WarpReduce<TOp>(float v) where TOp : struct, IReduceOp
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset >>= 1) v = default(TOp).Apply(v, Warp.ShuffleXor(v, offset));
        return v;
    }

    private interface IReduceOp
    {
        float Identity { get; }
        float Apply(float a, float b);
    }

    private readonly struct SumOp : IReduceOp
    {
        public float Identity => 0f;
        public float Apply(float a, float b) => a + b;
    }

    private readonly struct MaxOp : IReduceOp
    {
        public float Identity => float.NegativeInfinity;
        public float Apply(float a, float b) => MathF.Max(a, b);
    }
}
