namespace ModelGen;

// Attributes that declare a decoder-only causal language model. The source generator (Generators/) reads them
// at build time; nothing reads them by reflection. Each declaration is a `partial class`.

/// <summary>Declares a decoder-only causal LM of one HF family (its <c>model_type</c>: llama, mistral, qwen2).</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class CausalLMAttribute(string family) : Attribute
{
    /// <summary>HF <c>model_type</c>; selects the weight names and config binding.</summary>
    public string Family { get; } = family;
    /// <summary>Beginning-of-sequence token id, or -1 for a model without BOS (its EOS then serves as anchor).</summary>
    public int BosTokenId { get; set; } = 1;
    /// <summary>End-of-sequence token id.</summary>
    public int EosTokenId { get; set; } = 2;
    /// <summary>Whether the LM head shares the embedding matrix (<c>tie_word_embeddings</c>).</summary>
    public bool TiedEmbeddings { get; set; }
}

/// <summary>
/// Fixed sizes of a model variant. A declaration without it is a family: its sizes come from <c>config.json</c>.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class DecoderAttribute : Attribute
{
    /// <summary>Number of decoder layers.</summary>
    public int Layers { get; set; }
    /// <summary>Model (residual stream) width.</summary>
    public int Hidden { get; set; }
    /// <summary>Query heads.</summary>
    public int Heads { get; set; }
    /// <summary>Key/value heads (GQA); 0 means equal to <see cref="Heads"/>.</summary>
    public int KvHeads { get; set; }
    /// <summary>Head dimension; 0 means <see cref="Hidden"/> / <see cref="Heads"/>, which must then divide.</summary>
    public int HeadDim { get; set; }
    /// <summary>MLP inner width.</summary>
    public int Intermediate { get; set; }
    /// <summary>Vocabulary size.</summary>
    public int Vocab { get; set; }
    /// <summary>Maximum context the model was trained for (<c>max_position_embeddings</c>).</summary>
    public int MaxPositions { get; set; } = 4096;
}

/// <summary>Rotary position embedding settings (HF <c>rope_parameters</c>).</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class RopeAttribute : Attribute
{
    /// <summary>Base θ of the frequencies.</summary>
    public double Theta { get; set; } = 10000.0;
    /// <summary>Scaling type.</summary>
    public RopeScaling Scaling { get; set; } = RopeScaling.Default;
    /// <summary>Scaling factor (linear, dynamic, yarn, llama3, longrope).</summary>
    public double Factor { get; set; }
    /// <summary>Context of the original pretraining (dynamic, yarn, llama3, longrope).</summary>
    public int OriginalContext { get; set; }
    /// <summary>Llama 3 low-frequency factor.</summary>
    public double LowFreqFactor { get; set; }
    /// <summary>Llama 3 high-frequency factor.</summary>
    public double HighFreqFactor { get; set; }
    /// <summary>YaRN β_fast (default 32).</summary>
    public double BetaFast { get; set; }
    /// <summary>YaRN β_slow (default 1).</summary>
    public double BetaSlow { get; set; }
    /// <summary>Scale of cos/sin (yarn, longrope); 0 means derived from the factor.</summary>
    public double AttentionFactor { get; set; }
    /// <summary>LongRoPE per-frequency factors for short contexts (length head_dim/2).</summary>
    public double[]? ShortFactor { get; set; }
    /// <summary>LongRoPE per-frequency factors for long contexts (length head_dim/2).</summary>
    public double[]? LongFactor { get; set; }
    /// <summary>Fraction of each head's dimensions that rotate (1 = all).</summary>
    public double PartialRotaryFactor { get; set; } = 1.0;
    /// <summary>Precision of the rotation itself.</summary>
    public RopePrecision Precision { get; set; } = RopePrecision.Fp32;
}

/// <summary>RMSNorm settings.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class RmsNormAttribute : Attribute
{
    /// <summary>ε added to the mean square.</summary>
    public double Eps { get; set; } = 1e-6;
}

/// <summary>Self-attention settings.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class AttentionAttribute : Attribute
{
    /// <summary>Mask over the packed window.</summary>
    public MaskKind Mask { get; set; } = MaskKind.Causal;
    /// <summary>Sliding window W (a query sees the last W keys, itself included); 0 = none.</summary>
    public int SlidingWindow { get; set; }
    /// <summary>Biases on the q, k and v projections.</summary>
    public bool QkvBias { get; set; }
    /// <summary>Bias on the output projection.</summary>
    public bool OutputBias { get; set; }
}

/// <summary>Feed-forward settings.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class MlpAttribute : Attribute
{
    /// <summary>Block kind.</summary>
    public MlpKind Kind { get; set; } = MlpKind.SwiGlu;
    /// <summary>Biases on gate, up and down projections.</summary>
    public bool Bias { get; set; }
}
