namespace ModelGen.Generators.Models;

/// <summary>
/// Everything the emitters need from one valid <c>[CausalLM]</c> declaration, resolved (defaults applied, enum
/// values named) and value-equatable. No symbols or syntax nodes: an unchanged declaration compares equal.
/// </summary>
/// <param name="Namespace">Containing namespace, empty for the global namespace.</param>
/// <param name="ClassName">The declaring class's name.</param>
/// <param name="Location">The class identifier, for diagnostics computed across declarations.</param>
/// <param name="Family">HF <c>model_type</c>.</param>
/// <param name="IsFamily">True when there is no <c>[Decoder]</c>: sizes come from <c>config.json</c>.</param>
/// <param name="Sizes">Declared sizes (all 0 for a family).</param>
/// <param name="Rope">RoPE settings.</param>
/// <param name="RmsNormEps">RMSNorm ε.</param>
/// <param name="Mask">Name of the <c>MaskKind</c> member.</param>
/// <param name="SlidingWindow">Sliding window, 0 for none.</param>
/// <param name="QkvBias">Biases on q, k, v.</param>
/// <param name="OutputBias">Bias on the attention output projection.</param>
/// <param name="Mlp">Name of the <c>MlpKind</c> member.</param>
/// <param name="MlpBias">Biases in the MLP projections.</param>
/// <param name="BosTokenId">BOS token id, or null for none.</param>
/// <param name="EosTokenId">EOS token id.</param>
/// <param name="TiedEmbeddings">LM head shares the embedding matrix.</param>
internal sealed record ModelSpec(
    string Namespace,
    string ClassName,
    LocationInfo? Location,
    string Family,
    bool IsFamily,
    SizeSpec Sizes,
    RopeSpec Rope,
    double RmsNormEps,
    string Mask,
    int SlidingWindow,
    bool QkvBias,
    bool OutputBias,
    string Mlp,
    bool MlpBias,
    int? BosTokenId,
    int EosTokenId,
    bool TiedEmbeddings)
{
    /// <summary>Namespace-qualified name without <c>global::</c>, the catalog's sort key.</summary>
    public string FullName => Namespace.Length == 0 ? ClassName : Namespace + "." + ClassName;

    /// <summary>Fully qualified type name for generated code.</summary>
    public string GlobalName => "global::" + FullName;

    /// <summary>Rotary dimension as HF truncates it: (int)(head_dim × partial_rotary_factor).</summary>
    public int RotaryDim => (int)(Sizes.HeadDim * Rope.PartialRotaryFactor);
}

/// <summary>Sizes from <c>[Decoder]</c>, defaults resolved (KvHeads 0 ⇒ Heads, HeadDim 0 ⇒ Hidden / Heads).</summary>
internal sealed record SizeSpec(int Layers, int Hidden, int Heads, int KvHeads, int HeadDim, int Intermediate, int Vocab, int MaxPositions)
{
    /// <summary>The sizes of a family declaration: all 0, context at the <c>ModelConfig</c> default.</summary>
    public static SizeSpec Family { get; } = new(0, 0, 0, 0, 0, 0, 0, 4096);
}

/// <summary>RoPE settings from <c>[Rope]</c>, with the scaling and precision as enum member names.</summary>
internal sealed record RopeSpec(
    string Scaling,
    double Theta,
    double Factor,
    int OriginalContext,
    double LowFreqFactor,
    double HighFreqFactor,
    double BetaFast,
    double BetaSlow,
    double AttentionFactor,
    EquatableArray<double>? ShortFactor,
    EquatableArray<double>? LongFactor,
    double PartialRotaryFactor,
    string Precision);

/// <summary>What parsing one declaration produced: a spec when it is valid, and its diagnostics.</summary>
internal sealed record DeclarationResult(ModelSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>
/// The valid declarations of a compilation, sorted by full name, after checks across declarations
/// (one family declaration per <c>model_type</c>), and the diagnostics of those checks.
/// </summary>
internal sealed record DeclarationSet(EquatableArray<ModelSpec> Valid, EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>One catalog entry: the declaring type and, for family declarations, the family it serves.</summary>
internal sealed record CatalogEntry(string GlobalName, string Family, bool IsFamily);

/// <summary>Where the catalog goes and whether the runtime types it names are referenced.</summary>
internal sealed record CatalogTarget(string Namespace, bool HasRuntime);

/// <summary>The catalog's input: its target and its entries.</summary>
internal sealed record CatalogModel(CatalogTarget Target, EquatableArray<CatalogEntry> Entries);
