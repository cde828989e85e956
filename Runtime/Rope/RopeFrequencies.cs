using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Rope;

/// <summary>
/// The inverse frequencies and the cos/sin scale of one RoPE configuration, computed as transformers 5
/// (<c>modeling_rope_utils.py</c>) computes them: each variant's formula is replayed with the same torch
/// operations in the same order and dtypes, so that the fp32 results run through the same ATen kernels as HF's
/// buffers. (Bit equality with HF is the intent; no HF-generated RoPE buffer checks it yet.)
/// </summary>
/// <remarks>
/// Which context length counts as "original" differs per variant, as in HF:
/// <list type="bullet">
/// <item><c>dynamic</c> uses <c>max_position_embeddings</c> (<see cref="MaxPositions"/>), never
/// <c>original_max_position_embeddings</c>.</item>
/// <item><c>yarn</c>, <c>longrope</c> and <c>llama3</c> use <c>rope_parameters["original_max_position_embeddings"]</c>,
/// which HF's <c>standardize_rope_params</c> defaults to <c>max_position_embeddings</c> when absent
/// (<see cref="OriginalContext"/>). A top-level <c>original_max_position_embeddings</c> (Phi-3) takes priority in
/// HF; the config binder is expected to have put it into <see cref="RopeConfig.OriginalContext"/>.</item>
/// </list>
/// </remarks>
public sealed class RopeFrequencies
{
    /// <summary>The configuration the frequencies were computed from.</summary>
    public RopeConfig Config { get; }
    /// <summary>Per-head dimension.</summary>
    public int HeadDim { get; }
    /// <summary><c>max_position_embeddings</c> of the model.</summary>
    public int MaxPositions { get; }
    /// <summary>Dimensions of each head that rotate: <c>int(head_dim × partial_rotary_factor)</c>.</summary>
    public int RotaryDim { get; }
    /// <summary>
    /// The pretraining context the variant measures against: <see cref="MaxPositions"/> for default, linear and
    /// dynamic; <see cref="RopeConfig.OriginalContext"/> (or <see cref="MaxPositions"/> when 0) for yarn, longrope and llama3.
    /// </summary>
    public int OriginalContext { get; }
    /// <summary>
    /// HF's <c>inv_freq</c> buffer right after construction (length <see cref="RotaryDim"/>/2): what a sequence no
    /// longer than the original context uses.
    /// </summary>
    public float[] InverseFrequencies { get; }
    /// <summary>HF's <c>attention_scaling</c>: the factor cos and sin are multiplied by (1 except for yarn and longrope).</summary>
    public float AttentionScaling { get; }
    /// <summary>True for dynamic and longrope, whose frequencies change with the sequence length at forward time.</summary>
    public bool DependsOnSequenceLength => Config.Scaling is RopeScaling.Dynamic or RopeScaling.LongRope;

    // LongRoPE's long-context frequencies do not depend on how long the sequence is, only that it exceeds the
    // original context, so they are computed once (HF caches them as `long_inv_freq` as well).
    private float[]? _longInverseFrequencies;

    /// <summary>Computes the frequencies of <paramref name="config"/> for heads of <paramref name="headDim"/> dimensions.</summary>
    /// <exception cref="ModelConfigException">The configuration cannot produce a RoPE table.</exception>
    public RopeFrequencies(RopeConfig config, int headDim, int maxPositions)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate("rope", headDim);
        if (maxPositions <= 0) throw new ModelConfigException("rope", "max_position_embeddings", $"must be positive, got {maxPositions}");
        Config = config;
        HeadDim = headDim;
        MaxPositions = maxPositions;
        RotaryDim = config.RotaryDim(headDim);
        OriginalContext = OriginalContextOf(config, maxPositions);
        AttentionScaling = (float)AttentionScalingOf(config, maxPositions);
        // HF builds the initial buffer with seq_len=None: dynamic then falls back to max_position_embeddings
        // (θ unchanged) and longrope picks the short factors.
        InverseFrequencies = Compute(seqLen: null);
    }

    /// <summary>
    /// The frequencies a forward pass uses when its longest sequence is <paramref name="seqLen"/> positions
    /// (<c>max(position_ids) + 1</c>), as HF's <c>dynamic_rope_update</c> chooses them: dynamic NTK recomputes θ
    /// beyond <see cref="MaxPositions"/>, longrope switches to the long factors beyond <see cref="OriginalContext"/>;
    /// every other variant, and every length within the original context, gets <see cref="InverseFrequencies"/>.
    /// </summary>
    /// <remarks>
    /// HF's dynamic module is stateful: after growing to a length L it keeps L's frequencies for shorter sequences
    /// until one is shorter than <c>max_position_embeddings</c>. This method is the stateless function of the current
    /// length, i.e. what a freshly constructed HF module returns.
    /// </remarks>
    public float[] ForSequenceLength(long seqLen)
    {
        switch (Config.Scaling)
        {
            case RopeScaling.Dynamic when seqLen > MaxPositions:
                return Compute(seqLen);
            case RopeScaling.LongRope when seqLen > OriginalContext:
                // HF computes the long buffer with seq_len = original + 1, not the actual length.
                return _longInverseFrequencies ??= Compute(OriginalContext + 1L);
            default:
                return InverseFrequencies;
        }
    }

    /// <summary>
    /// The same formulas evaluated entirely in float64 with no intermediate fp32 rounding: a precision reference
    /// for tests, not what HF computes. <paramref name="seqLen"/> plays the role of HF's <c>seq_len</c> (null at
    /// construction). The yarn ramp and the llama3 bands are evaluated in float64 too, so a frequency that sits
    /// exactly on a band edge may fall on the other side than in the fp32 result.
    /// </summary>
    public static double[] Float64(RopeConfig config, int headDim, int maxPositions, long? seqLen = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        int dim = config.RotaryDim(headDim);
        int original = OriginalContextOf(config, maxPositions);
        double theta = config.Theta;
        if (config.Scaling == RopeScaling.Dynamic)
        {
            double len = Math.Max(seqLen ?? maxPositions, maxPositions);
            theta *= Math.Pow(config.Factor * len / maxPositions - (config.Factor - 1), dim / (double)(dim - 2));
        }
        var inv = new double[dim / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / dim);
        switch (config.Scaling)
        {
            case RopeScaling.Linear:
                for (int i = 0; i < inv.Length; i++) inv[i] /= config.Factor;
                break;
            case RopeScaling.Yarn:
            {
                double factor = YarnFactor(config, maxPositions);
                var (low, high) = YarnCorrectionRange(config, dim, original);
                if (low == high) high += 0.001;
                for (int i = 0; i < inv.Length; i++)
                {
                    double extrapolation = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
                    inv[i] = inv[i] / factor * (1 - extrapolation) + inv[i] * extrapolation;
                }
                break;
            }
            case RopeScaling.Llama3:
            {
                double lowWavelen = original / config.LowFreqFactor, highWavelen = original / config.HighFreqFactor;
                for (int i = 0; i < inv.Length; i++)
                {
                    double wavelen = 2 * Math.PI / inv[i];
                    if (wavelen > lowWavelen) inv[i] /= config.Factor;
                    else if (wavelen >= highWavelen)
                    {
                        double smooth = (original / wavelen - config.LowFreqFactor) / (config.HighFreqFactor - config.LowFreqFactor);
                        inv[i] = (1 - smooth) * inv[i] / config.Factor + smooth * inv[i];
                    }
                }
                break;
            }
            case RopeScaling.LongRope:
            {
                var ext = seqLen is { } s && s > original ? config.LongFactor! : config.ShortFactor!;
                for (int i = 0; i < inv.Length; i++) inv[i] /= ext[i];
                break;
            }
        }
        return inv;
    }

    /// <summary>The "original" context of <paramref name="config"/>'s variant (see the class remarks).</summary>
    public static int OriginalContextOf(RopeConfig config, int maxPositions) => config.Scaling switch
    {
        RopeScaling.Yarn or RopeScaling.LongRope or RopeScaling.Llama3 when config.OriginalContext > 0 => config.OriginalContext,
        _ => maxPositions,
    };

    /// <summary>
    /// HF's <c>attention_factor</c> in float64: the given value, else yarn's <c>get_mscale</c> (0.1·ln(factor)+1,
    /// or the mscale/mscale_all_dim ratio when both are given) and longrope's √(1 + ln(factor)/ln(original));
    /// 1 for the other variants and for factors ≤ 1.
    /// </summary>
    public static double AttentionScalingOf(RopeConfig config, int maxPositions)
    {
        ArgumentNullException.ThrowIfNull(config);
        int original = OriginalContextOf(config, maxPositions);
        switch (config.Scaling)
        {
            case RopeScaling.Yarn:
            {
                if (config.AttentionFactor != 0) return config.AttentionFactor;
                double factor = YarnFactor(config, maxPositions);
                static double MscaleOf(double scale, double mscale) => scale <= 1 ? 1.0 : 0.1 * mscale * Math.Log(scale) + 1.0;
                // HF tests `mscale and mscale_all_dim` for truthiness, so a 0 (= not given) in either falls back.
                return config.Mscale != 0 && config.MscaleAllDim != 0
                    ? MscaleOf(factor, config.Mscale) / MscaleOf(factor, config.MscaleAllDim)
                    : MscaleOf(factor, 1);
            }
            case RopeScaling.LongRope:
            {
                if (config.AttentionFactor != 0) return config.AttentionFactor;
                double factor = config.Factor != 0 ? config.Factor : (double)maxPositions / original;
                return factor <= 1.0 ? 1.0 : Math.Sqrt(1 + Math.Log(factor) / Math.Log(original));
            }
            default:
                return 1.0;
        }
    }

    // HF (yarn): a missing factor is the ratio of the extended to the original context (DeepSeek-V3's convention).
    private static double YarnFactor(RopeConfig config, int maxPositions) =>
        config.Factor != 0 ? config.Factor : (double)maxPositions / OriginalContextOf(config, maxPositions);

    // HF's find_correction_range, float64 as in Python. The upper clamp is `dim - 1` (not dim/2 - 1) in HF; kept.
    private static (double Low, double High) YarnCorrectionRange(RopeConfig config, int dim, int original)
    {
        double betaFast = config.BetaFast != 0 ? config.BetaFast : 32;
        double betaSlow = config.BetaSlow != 0 ? config.BetaSlow : 1;
        double CorrectionDim(double rotations) =>
            dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(config.Theta));
        double low = CorrectionDim(betaFast), high = CorrectionDim(betaSlow);
        if (config.Truncate)
        {
            low = Math.Floor(low);
            high = Math.Ceiling(high);
        }
        return (Math.Max(low, 0), Math.Min(high, dim - 1));
    }

    // Replays HF's torch code. Python's `a / t` on a tensor is `t.reciprocal() * a` (Tensor.__rtruediv__), and a
    // Python float meeting an fp32 tensor is rounded to fp32 first; both are reproduced by the same ATen ops here.
    private float[] Compute(long? seqLen)
    {
        if (!TorchAvailable.Value) return ComputeWithoutTorch(seqLen);
        using var scope = NewDisposeScope();
        int dim = RotaryDim;
        var exponents = arange(0, dim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / dim;
        Tensor inv;
        switch (Config.Scaling)
        {
            case RopeScaling.Dynamic:
                inv = DefaultInverse(DynamicBase(seqLen), exponents);
                break;
            case RopeScaling.Linear:
                inv = DefaultInverse(tensor((float)Config.Theta), exponents) / Config.Factor;
                break;
            case RopeScaling.Yarn:
                inv = Yarn(exponents);
                break;
            case RopeScaling.Llama3:
                inv = Llama3(DefaultInverse(tensor((float)Config.Theta), exponents));
                break;
            case RopeScaling.LongRope:
            {
                var factors = seqLen is { } s && s > OriginalContext ? Config.LongFactor! : Config.ShortFactor!;
                var ext = tensor(factors.Select(f => (float)f).ToArray());
                inv = (ext * tensor((float)Config.Theta).pow(exponents)).reciprocal();
                break;
            }
            default:
                inv = DefaultInverse(tensor((float)Config.Theta), exponents);
                break;
        }
        return inv.data<float>().ToArray();
    }

    private static Tensor DefaultInverse(Tensor theta, Tensor exponents) => theta.pow(exponents).reciprocal();

    /// <summary>Whether libtorch loads here (a GPU publish leaves it out: see tools/publish-gpu.sh).</summary>
    internal static readonly Lazy<bool> TorchAvailable = new(() =>
    {
        try
        {
            using var probe = zeros(1);
            return true;
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException)
        {
            return false;
        }
    });

    /// <summary>
    /// The same fp32 operations in the same order as <see cref="Compute"/>, with .NET's float math instead of ATen's, for
    /// machines without libtorch (the GPU publish). Every op but <c>pow</c> is IEEE-exact in both; ATen's vectorized
    /// powf and the C library's may differ in the last bit, which a test bounds to 2 ulps (dynamic NTK chains two pows).
    /// </summary>
    internal float[] ComputeWithoutTorch(long? seqLen)
    {
        int dim = RotaryDim, half = dim / 2;
        var exponents = new float[half];
        for (int i = 0; i < half; i++) exponents[i] = (float)(2 * i) / dim;
        float[] Default(float theta) => exponents.Select(e => 1f / MathF.Pow(theta, e)).ToArray();
        switch (Config.Scaling)
        {
            case RopeScaling.Dynamic:
            {
                double factor = Config.Factor, exponent = dim / (double)(dim - 2);
                if (seqLen is not { } len) return Default((float)(Config.Theta * Math.Pow(factor * MaxPositions / MaxPositions - (factor - 1), exponent)));
                float length = Math.Max(len, MaxPositions);
                float scale = MathF.Pow(length * (float)factor / MaxPositions - (float)(factor - 1), (float)exponent);
                return Default(scale * (float)Config.Theta);
            }
            case RopeScaling.Linear:
                return Default((float)Config.Theta).Select(v => v / (float)Config.Factor).ToArray();
            case RopeScaling.Yarn:
            {
                float factor = (float)YarnFactor(Config, MaxPositions);
                var (low, high) = YarnCorrectionRange(Config, dim, OriginalContext);
                if (low == high) high += 0.001;
                var inv = new float[half];
                for (int i = 0; i < half; i++)
                {
                    float pos = MathF.Pow((float)Config.Theta, exponents[i]);
                    float extrapolation = 1f / pos, interpolation = 1f / (pos * factor);
                    float ramp = Math.Clamp((i - (float)low) / (float)(high - low), 0f, 1f);
                    float extrapolationFactor = -ramp + 1f;
                    inv[i] = interpolation * (-extrapolationFactor + 1f) + extrapolation * extrapolationFactor;
                }
                return inv;
            }
            case RopeScaling.Llama3:
            {
                var inv = Default((float)Config.Theta);
                float factor = (float)Config.Factor, lowFactor = (float)Config.LowFreqFactor, highFactor = (float)Config.HighFreqFactor;
                double original = OriginalContext, lowWavelen = original / Config.LowFreqFactor, highWavelen = original / Config.HighFreqFactor;
                for (int i = 0; i < half; i++)
                {
                    float wavelen = 1f / inv[i] * (float)(2 * Math.PI);
                    float llama = wavelen > (float)lowWavelen ? inv[i] / factor : inv[i];
                    float smooth = (1f / wavelen * (float)original - lowFactor) / (highFactor - lowFactor);
                    float smoothed = (-smooth + 1f) * llama / factor + smooth * llama;
                    bool medium = !(wavelen < (float)highWavelen) && !(wavelen > (float)lowWavelen);
                    inv[i] = medium ? smoothed : llama;
                }
                return inv;
            }
            case RopeScaling.LongRope:
            {
                var factors = seqLen is { } s && s > OriginalContext ? Config.LongFactor! : Config.ShortFactor!;
                return exponents.Select((e, i) => 1f / ((float)factors[i] * MathF.Pow((float)Config.Theta, e))).ToArray();
            }
            default:
                return Default((float)Config.Theta);
        }
    }

    // _compute_dynamic_ntk_parameters. At construction seq_len is a Python int and θ·1 is computed in float64; at
    // forward time it is the 0-dim int64 tensor max(position_ids)+1, so the new θ is computed in fp32 tensor
    // arithmetic (int64 × float promotes to the default fp32), which this reproduces.
    private Tensor DynamicBase(long? seqLen)
    {
        double factor = Config.Factor;
        int dim = RotaryDim;
        double exponent = dim / (double)(dim - 2);
        if (seqLen is not { } len)
        {
            double theta = Config.Theta * Math.Pow(factor * MaxPositions / MaxPositions - (factor - 1), exponent);
            return tensor((float)theta);
        }
        var length = maximum(tensor(len), tensor((long)MaxPositions));
        var scale = ((length * factor) / MaxPositions - (factor - 1)).pow(exponent);
        return scale * Config.Theta;
    }

    // _compute_yarn_parameters after the float64 scalars (factor, correction range) are settled.
    private Tensor Yarn(Tensor exponents)
    {
        int dim = RotaryDim;
        double factor = YarnFactor(Config, MaxPositions);
        var posFreqs = tensor((float)Config.Theta).pow(exponents);
        var extrapolation = posFreqs.reciprocal();
        var interpolation = (posFreqs * factor).reciprocal();
        var (low, high) = YarnCorrectionRange(Config, dim, OriginalContext);
        if (low == high) high += 0.001; // HF: "Prevent singularity"
        var ramp = ((arange(dim / 2, dtype: ScalarType.Float32) - low) / (high - low)).clamp(0, 1);
        var extrapolationFactor = (-ramp).add(1);
        return interpolation * (-extrapolationFactor).add(1) + extrapolation * extrapolationFactor;
    }

    // _compute_llama3_parameters: wavelengths above original/low_freq_factor are divided by factor, below
    // original/high_freq_factor kept, and the band between blended by the smooth factor.
    private Tensor Llama3(Tensor inv)
    {
        double factor = Config.Factor, lowFactor = Config.LowFreqFactor, highFactor = Config.HighFreqFactor;
        double original = OriginalContext;
        double lowWavelen = original / lowFactor, highWavelen = original / highFactor;
        var wavelen = inv.reciprocal() * (2 * Math.PI);
        var llama = where(wavelen.gt(lowWavelen), inv / factor, inv);
        var smooth = (wavelen.reciprocal() * original - lowFactor) / (highFactor - lowFactor);
        var smoothed = (-smooth).add(1) * llama / factor + smooth * llama;
        var medium = wavelen.lt(highWavelen).logical_not().logical_and(wavelen.gt(lowWavelen).logical_not());
        return where(medium, smoothed, llama);
    }
}
