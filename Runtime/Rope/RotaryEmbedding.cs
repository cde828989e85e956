using static TorchSharp.torch;

namespace ModelGen.Rope;

/// <summary>
/// Applies RoPE to queries and keys: x·cos + rotate_half(x)·sin on the first rotary_dim dims of each head (the
/// rest pass through, as in partial-rotary models). The precision of the rotation is the caller's choice.
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>
    /// q [B, Hq, S, D] and k [B, Hk, S, D] rotated with cos/sin [B, S, R] (R ≤ D, fp32). Returns tensors of the
    /// input dtypes. <see cref="RopePrecision.Fp32"/> rotates in fp32 and rounds once at the end;
    /// <see cref="RopePrecision.Bf16"/> rounds cos/sin and the inputs to bf16 and rotates in bf16, as HF does for
    /// bf16 activations.
    /// </summary>
    public static (Tensor Q, Tensor K) Apply(Tensor q, Tensor k, Tensor cos, Tensor sin, RopePrecision precision)
    {
        var compute = precision == RopePrecision.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        var c = cos.unsqueeze(1).to(compute);
        var s = sin.unsqueeze(1).to(compute);
        return (Rotate(q, c, s, compute), Rotate(k, c, s, compute));
    }

    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin, ScalarType compute)
    {
        long rotary = cos.shape[^1], dim = x.shape[^1];
        var dtype = x.dtype;
        var xr = x.to(compute);
        Tensor? pass = null;
        if (rotary < dim)
        {
            pass = xr[.., .., .., TensorIndex.Slice(rotary, null)];
            xr = xr[.., .., .., TensorIndex.Slice(0, rotary)];
        }
        var rotated = xr * cos + RotateHalf(xr) * sin;
        if (pass is not null) rotated = cat([rotated, pass], -1);
        return rotated.to(dtype);
    }

    /// <summary>[x1, x2] → [−x2, x1] over the last dimension.</summary>
    public static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        var x1 = x[.., .., .., TensorIndex.Slice(0, half)];
        var x2 = x[.., .., .., TensorIndex.Slice(half, null)];
        return cat([-x2, x1], -1);
    }
}
