namespace ModelGen.Rope;

/// <summary>
/// Inverse frequencies and the cos/sin scale of one RoPE configuration, computed as transformers'
/// <c>modeling_rope_utils</c> does: in fp32 (the paper's point is that the angles must never be bf16).
/// </summary>
public sealed class RopeFrequencies
{
    private RopeFrequencies(float[] inverse, float attentionScaling)
    {
        InverseFrequencies = inverse;
        AttentionScaling = attentionScaling;
    }

    /// <summary>inv_freq, length rotary_dim / 2.</summary>
    public float[] InverseFrequencies { get; }

    /// <summary>Factor on cos and sin (YaRN and LongRoPE's attention factor; 1 otherwise).</summary>
    public float AttentionScaling { get; }

    /// <summary>
    /// The frequencies for a batch whose largest position id is <paramref name="sequenceLength"/> − 1 (null = the
    /// initialization-time frequencies). Only dynamic NTK and LongRoPE depend on it: dynamic stretches θ once the
    /// sequence exceeds <c>max_position_embeddings</c>; LongRoPE switches to its long factors past the original
    /// context. (HF's dynamic variant also keeps the largest frequencies it has seen across calls; ModelGen
    /// computes them per batch, which equals HF for every single forward pass.)
    /// </summary>
    public static RopeFrequencies For(RopeConfig rope, int headDim, int maxPositions, long? sequenceLength = null)
    {
        int dim = rope.RotaryDim(headDim);
        int half = dim / 2;
        switch (rope.Scaling)
        {
            case RopeScaling.Default:
                return new(Plain(rope.Theta, dim), 1f);

            case RopeScaling.Linear:
            {
                var inv = Plain(rope.Theta, dim);
                for (int i = 0; i < half; i++) inv[i] /= (float)rope.Factor;
                return new(inv, 1f);
            }

            case RopeScaling.Dynamic:
            {
                // HF: seq_len = max(seq_len, max_position_embeddings); the expression runs on fp32 tensors.
                float seq = Math.Max(sequenceLength ?? maxPositions, maxPositions);
                float factor = (float)rope.Factor;
                float stretch = factor * seq / maxPositions - (factor - 1f);
                double theta = rope.Theta * Math.Pow(stretch, dim / (double)(dim - 2));
                return new(Plain(theta, dim), 1f);
            }

            case RopeScaling.Yarn:
                return Yarn(rope, dim, maxPositions);

            case RopeScaling.Llama3:
                return Llama3(rope, dim, maxPositions);

            case RopeScaling.LongRope:
            {
                int original = rope.OriginalContext > 0 ? rope.OriginalContext : maxPositions;
                double factor = rope.Factor > 0 ? rope.Factor : maxPositions / (double)original;
                double attention = rope.AttentionFactor > 0 ? rope.AttentionFactor
                    : factor <= 1.0 ? 1.0 : Math.Sqrt(1 + Math.Log(factor) / Math.Log(original));
                var ext = sequenceLength is { } s && s > original ? rope.LongFactor! : rope.ShortFactor!;
                var inv = new float[half];
                for (int i = 0; i < half; i++)
                    inv[i] = 1f / ((float)ext[i] * MathF.Pow((float)rope.Theta, Exponent(i, dim)));
                return new(inv, (float)attention);
            }

            default:
                throw new ArgumentOutOfRangeException(nameof(rope), rope.Scaling, "unknown RoPE scaling");
        }
    }

    /// <summary>θ^(-2i/d) in fp32, as <c>1 / base ** (arange(0, dim, 2).float() / dim)</c>.</summary>
    internal static float[] Plain(double theta, int dim)
    {
        var inv = new float[dim / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = 1f / MathF.Pow((float)theta, Exponent(i, dim));
        return inv;
    }

    private static float Exponent(int i, int dim) => (float)(2 * i) / dim;

    private static RopeFrequencies Yarn(RopeConfig rope, int dim, int maxPositions)
    {
        int original = rope.OriginalContext > 0 ? rope.OriginalContext : maxPositions;
        double factor = rope.Factor > 0 ? rope.Factor : maxPositions / (double)original;
        static double MScale(double scale, double m = 1) => scale <= 1 ? 1.0 : 0.1 * m * Math.Log(scale) + 1.0;
        double attention = rope.AttentionFactor > 0 ? rope.AttentionFactor
            : rope.Mscale > 0 && rope.MscaleAllDim > 0 ? MScale(factor, rope.Mscale) / MScale(factor, rope.MscaleAllDim)
            : MScale(factor);
        double betaFast = rope.BetaFast > 0 ? rope.BetaFast : 32;
        double betaSlow = rope.BetaSlow > 0 ? rope.BetaSlow : 1;

        double CorrectionDim(double rotations) =>
            dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(rope.Theta));
        double low = CorrectionDim(betaFast), high = CorrectionDim(betaSlow);
        if (rope.Truncate) { low = Math.Floor(low); high = Math.Ceiling(high); }
        low = Math.Max(low, 0);
        high = Math.Min(high, dim - 1);
        if (low == high) high += 0.001; // HF: prevent a singular ramp

        int half = dim / 2;
        var inv = new float[half];
        for (int i = 0; i < half; i++)
        {
            float pos = MathF.Pow((float)rope.Theta, Exponent(i, dim));
            float extrapolation = 1f / pos;
            float interpolation = 1f / ((float)factor * pos);
            float ramp = Math.Clamp((float)((i - low) / (high - low)), 0f, 1f);
            float extrapolationFactor = 1f - ramp;
            inv[i] = interpolation * (1f - extrapolationFactor) + extrapolation * extrapolationFactor;
        }
        return new(inv, (float)attention);
    }

    private static RopeFrequencies Llama3(RopeConfig rope, int dim, int maxPositions)
    {
        var inv = Plain(rope.Theta, dim);
        double old = rope.OriginalContext > 0 ? rope.OriginalContext : maxPositions;
        float factor = (float)rope.Factor;
        double lowWavelen = old / rope.LowFreqFactor;
        double highWavelen = old / rope.HighFreqFactor;
        for (int i = 0; i < inv.Length; i++)
        {
            float wavelen = (float)(2 * Math.PI) / inv[i];
            if (wavelen > lowWavelen) { inv[i] /= factor; continue; }      // low frequencies: interpolate fully
            if (wavelen < highWavelen) continue;                           // high frequencies: keep
            float smooth = (float)((old / wavelen - rope.LowFreqFactor) / (rope.HighFreqFactor - rope.LowFreqFactor));
            inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
        }
        return new(inv, 1f);
    }
}
