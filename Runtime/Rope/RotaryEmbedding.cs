using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Rope;

/// <summary>
/// Rotates queries and keys by RoPE, as HF's <c>apply_rotary_pos_emb</c> with <c>rotate_half</c>: the first
/// rotary dimensions of each head are split into halves x1, x2 and become <c>x·cos + (−x2, x1)·sin</c>; the
/// remaining dimensions pass through unchanged (the partial-rotary convention of Phi, GPT-NeoX and Qwen3-Next).
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>
    /// Rotates <paramref name="q"/> [B, Hq, S, D] and <paramref name="k"/> [B, Hk, S, D] by <paramref name="cos"/> and
    /// <paramref name="sin"/> [B, S, R] (from <see cref="RopeTable.CosSin"/>), R ≤ D. Each result has its input's dtype.
    /// <see cref="RopePrecision.Fp32"/> rotates in fp32 and rounds once at the end; <see cref="RopePrecision.Bf16"/>
    /// rounds cos, sin and the input to bf16 and rounds after every multiply and the add, as HF does when the
    /// activations are bf16 (its rotary module casts cos/sin to the activation dtype).
    /// </summary>
    public static (Tensor q, Tensor k) Apply(Tensor q, Tensor k, Tensor cos, Tensor sin, RopePrecision precision)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(cos);
        ArgumentNullException.ThrowIfNull(sin);
        if (cos.dim() != 3 || !cos.shape.SequenceEqual(sin.shape))
            throw new ArgumentException($"cos and sin must both be [batch, seq, rotary_dim], got [{string.Join(", ", cos.shape)}] and [{string.Join(", ", sin.shape)}]");
        var dtype = precision switch
        {
            RopePrecision.Fp32 => ScalarType.Float32,
            RopePrecision.Bf16 => ScalarType.BFloat16,
            _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, null),
        };
        using var scope = NewDisposeScope();
        // [B, S, R] -> [B, 1, S, R] broadcasts over the heads (HF's unsqueeze_dim=1).
        var c = cos.unsqueeze(1).to(dtype);
        var s = sin.unsqueeze(1).to(dtype);
        var qOut = Rotate(q, c, s, dtype);
        var kOut = Rotate(k, c, s, dtype);
        return (qOut.MoveToOuterDisposeScope(), kOut.MoveToOuterDisposeScope());
    }

    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin, ScalarType dtype)
    {
        long rotary = cos.shape[^1], dim = x.shape[^1];
        if (x.dim() != 4 || rotary > dim || rotary % 2 != 0)
            throw new ArgumentException($"expected [batch, heads, seq, head_dim ≥ {rotary}], got [{string.Join(", ", x.shape)}]", nameof(x));
        var part = x.narrow(-1, 0, rotary).to(dtype);
        var rotated = (part * cos + RotateHalf(part) * sin).to(x.dtype);
        // The pass-through dimensions are taken from the input itself so they are bit-identical whatever the precision.
        return rotary == dim ? rotated : cat([rotated, x.narrow(-1, rotary, dim - rotary)], -1);
    }

    // HF's rotate_half: (x1, x2) -> (-x2, x1) over the two halves of the last dimension.
    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }
}
