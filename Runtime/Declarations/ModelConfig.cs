namespace ModelGen;

/// <summary>
/// Every hyper-parameter of a decoder-only causal LM. Built by generated code from a declaration
/// (<c>Declared</c>) or bound from an HF <c>config.json</c> (<c>Checkpoints.HfConfig</c>).
/// </summary>
public sealed record ModelConfig
{
    /// <summary>HF <c>model_type</c>: llama, mistral or qwen2.</summary>
    public required string Family { get; init; }
    /// <summary>Decoder layers.</summary>
    public required int Layers { get; init; }
    /// <summary>Residual stream width.</summary>
    public required int Hidden { get; init; }
    /// <summary>Query heads.</summary>
    public required int Heads { get; init; }
    /// <summary>Key/value heads.</summary>
    public required int KvHeads { get; init; }
    /// <summary>Per-head dimension.</summary>
    public required int HeadDim { get; init; }
    /// <summary>MLP inner width.</summary>
    public required int Intermediate { get; init; }
    /// <summary>Vocabulary size.</summary>
    public required int Vocab { get; init; }
    /// <summary>Maximum context (<c>max_position_embeddings</c>).</summary>
    public int MaxPositions { get; init; } = 4096;
    /// <summary>RMSNorm ε.</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary>LM head shares the embedding matrix.</summary>
    public bool TiedEmbeddings { get; init; }
    /// <summary>Biases on q, k, v projections.</summary>
    public bool QkvBias { get; init; }
    /// <summary>Bias on the attention output projection.</summary>
    public bool OutputBias { get; init; }
    /// <summary>Biases in the MLP projections.</summary>
    public bool MlpBias { get; init; }
    /// <summary>Feed-forward kind.</summary>
    public MlpKind Mlp { get; init; } = MlpKind.SwiGlu;
    /// <summary>Sliding attention window (keys q-W+1..q); null = none.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Mask used for packed training windows.</summary>
    public MaskKind Mask { get; init; } = MaskKind.Causal;
    /// <summary>RoPE settings.</summary>
    public RopeConfig Rope { get; init; } = new();
    /// <summary>BOS token id, or null for a model without BOS.</summary>
    public int? BosTokenId { get; init; } = 1;
    /// <summary>EOS token id.</summary>
    public int? EosTokenId { get; init; } = 2;

    /// <summary>Query heads that share one key/value head.</summary>
    public int GqaGroup => Heads / KvHeads;

    /// <summary>The token that anchors packed windows: BOS, or EOS for a model without BOS.</summary>
    public int AnchorTokenId => BosTokenId ?? EosTokenId
        ?? throw new InvalidOperationException("the model has neither bos_token_id nor eos_token_id, so packed windows have no anchor token");

    /// <summary>Checks the invariants the forward pass relies on; throws naming the first bad field.</summary>
    public ModelConfig Validate(string source = "config")
    {
        static void Positive(string src, string field, long value)
        {
            if (value <= 0) throw new ModelConfigException(src, field, $"must be positive, got {value}");
        }
        Positive(source, "num_hidden_layers", Layers);
        Positive(source, "hidden_size", Hidden);
        Positive(source, "num_attention_heads", Heads);
        Positive(source, "num_key_value_heads", KvHeads);
        Positive(source, "head_dim", HeadDim);
        Positive(source, "intermediate_size", Intermediate);
        Positive(source, "vocab_size", Vocab);
        Positive(source, "max_position_embeddings", MaxPositions);
        if (Heads % KvHeads != 0)
            throw new ModelConfigException(source, "num_key_value_heads", $"{KvHeads} does not divide num_attention_heads = {Heads}");
        if (!(RmsNormEps > 0) || double.IsInfinity(RmsNormEps))
            throw new ModelConfigException(source, "rms_norm_eps", $"must be a positive number, got {RmsNormEps}");
        if (SlidingWindow is { } w && w <= 0)
            throw new ModelConfigException(source, "sliding_window", $"must be positive or null, got {w}");
        Rope.Validate(source, HeadDim);
        return this;
    }

    /// <summary>Number of parameters this configuration implies.</summary>
    public long ParameterCount()
    {
        long h = Hidden, q = (long)Heads * HeadDim, kv = (long)KvHeads * HeadDim, f = Intermediate;
        long attn = h * q + 2 * h * kv + q * h + (QkvBias ? q + 2 * kv : 0) + (OutputBias ? h : 0);
        long mlp = 3 * h * f + (MlpBias ? 2 * f + h : 0);
        long layer = attn + mlp + 2 * h;
        return (long)Vocab * h * (TiedEmbeddings ? 1 : 2) + Layers * layer + h;
    }
}

/// <summary>RoPE settings, mirroring HF <c>rope_parameters</c>. Zero means "not given; use HF's default".</summary>
public sealed record RopeConfig
{
    /// <summary>Scaling type (<c>rope_type</c>).</summary>
    public RopeScaling Scaling { get; init; } = RopeScaling.Default;
    /// <summary>Base θ (<c>rope_theta</c>).</summary>
    public double Theta { get; init; } = 10000.0;
    /// <summary><c>factor</c>.</summary>
    public double Factor { get; init; }
    /// <summary><c>original_max_position_embeddings</c>; 0 = not given.</summary>
    public int OriginalContext { get; init; }
    /// <summary>Llama 3 <c>low_freq_factor</c>.</summary>
    public double LowFreqFactor { get; init; }
    /// <summary>Llama 3 <c>high_freq_factor</c>.</summary>
    public double HighFreqFactor { get; init; }
    /// <summary>YaRN <c>beta_fast</c>; 0 = default 32.</summary>
    public double BetaFast { get; init; }
    /// <summary>YaRN <c>beta_slow</c>; 0 = default 1.</summary>
    public double BetaSlow { get; init; }
    /// <summary>YaRN/LongRoPE <c>attention_factor</c>; 0 = derived.</summary>
    public double AttentionFactor { get; init; }
    /// <summary>YaRN <c>mscale</c>; 0 = not given.</summary>
    public double Mscale { get; init; }
    /// <summary>YaRN <c>mscale_all_dim</c>; 0 = not given.</summary>
    public double MscaleAllDim { get; init; }
    /// <summary>YaRN <c>truncate</c> (default true).</summary>
    public bool Truncate { get; init; } = true;
    /// <summary>LongRoPE <c>short_factor</c>.</summary>
    public IReadOnlyList<double>? ShortFactor { get; init; }
    /// <summary>LongRoPE <c>long_factor</c>.</summary>
    public IReadOnlyList<double>? LongFactor { get; init; }
    /// <summary><c>partial_rotary_factor</c>: fraction of head dims that rotate.</summary>
    public double PartialRotaryFactor { get; init; } = 1.0;
    /// <summary>Precision of the rotation (a ModelGen choice, not an HF field).</summary>
    public RopePrecision Precision { get; init; } = RopePrecision.Fp32;

    /// <summary>Rotary dimension: head_dim × partial_rotary_factor, as HF truncates it.</summary>
    public int RotaryDim(int headDim) => (int)(headDim * PartialRotaryFactor);

    /// <summary>Throws <see cref="ModelConfigException"/> for settings a RoPE table cannot be built from.</summary>
    public void Validate(string source, int headDim)
    {
        if (!(Theta > 0)) throw new ModelConfigException(source, "rope_theta", $"must be positive, got {Theta}");
        if (!(PartialRotaryFactor > 0 && PartialRotaryFactor <= 1))
            throw new ModelConfigException(source, "partial_rotary_factor", $"must be in (0, 1], got {PartialRotaryFactor}");
        int dim = RotaryDim(headDim);
        if (dim < 2 || dim % 2 != 0)
            throw new ModelConfigException(source, "partial_rotary_factor", $"gives rotary dimension {dim}, which must be even and ≥ 2");
        bool needsFactor = Scaling is RopeScaling.Linear or RopeScaling.Dynamic or RopeScaling.Yarn or RopeScaling.Llama3;
        if (needsFactor && !(Factor > 0))
            throw new ModelConfigException(source, "rope_scaling.factor", $"is required for rope_type '{RopeNames.ToHf(Scaling)}' and must be positive, got {Factor}");
        switch (Scaling)
        {
            case RopeScaling.Llama3:
                if (OriginalContext <= 0) throw new ModelConfigException(source, "rope_scaling.original_max_position_embeddings", "is required for rope_type 'llama3'");
                if (!(LowFreqFactor > 0)) throw new ModelConfigException(source, "rope_scaling.low_freq_factor", "is required for rope_type 'llama3'");
                if (!(HighFreqFactor > LowFreqFactor)) throw new ModelConfigException(source, "rope_scaling.high_freq_factor", $"must exceed low_freq_factor ({LowFreqFactor}), got {HighFreqFactor}");
                break;
            case RopeScaling.LongRope:
                if (ShortFactor is null || ShortFactor.Count != dim / 2)
                    throw new ModelConfigException(source, "rope_scaling.short_factor", $"must list {dim / 2} numbers (rotary dim / 2), got {ShortFactor?.Count.ToString() ?? "none"}");
                if (LongFactor is null || LongFactor.Count != dim / 2)
                    throw new ModelConfigException(source, "rope_scaling.long_factor", $"must list {dim / 2} numbers (rotary dim / 2), got {LongFactor?.Count.ToString() ?? "none"}");
                break;
        }
    }
}

/// <summary>HF spellings of <see cref="RopeScaling"/>.</summary>
public static class RopeNames
{
    /// <summary>The HF <c>rope_type</c> string.</summary>
    public static string ToHf(RopeScaling s) => s switch
    {
        RopeScaling.Default => "default",
        RopeScaling.Linear => "linear",
        RopeScaling.Dynamic => "dynamic",
        RopeScaling.Yarn => "yarn",
        RopeScaling.Llama3 => "llama3",
        RopeScaling.LongRope => "longrope",
        _ => throw new ArgumentOutOfRangeException(nameof(s), s, null),
    };

    /// <summary>Parses an HF <c>rope_type</c> (also the legacy key <c>type</c>' values, e.g. "su" for longrope).</summary>
    public static bool TryParse(string? name, out RopeScaling scaling)
    {
        scaling = name switch
        {
            null or "default" => RopeScaling.Default,
            "linear" => RopeScaling.Linear,
            "dynamic" => RopeScaling.Dynamic,
            "yarn" => RopeScaling.Yarn,
            "llama3" => RopeScaling.Llama3,
            "longrope" or "su" => RopeScaling.LongRope,
            _ => (RopeScaling)(-1),
        };
        return (int)scaling >= 0;
    }
}

/// <summary>A configuration field is missing or invalid. The message names the source (file) and the field.</summary>
public sealed class ModelConfigException(string source, string field, string problem)
    : Exception($"{source}: field '{field}' {problem}")
{
    /// <summary>Where the configuration came from (a file path or "declaration").</summary>
    public string ConfigSource { get; } = source;
    /// <summary>The HF name of the offending field.</summary>
    public string Field { get; } = field;
    /// <summary>What is wrong with it.</summary>
    public string Problem { get; } = problem;
}
