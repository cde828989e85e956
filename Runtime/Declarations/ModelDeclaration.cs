namespace ModelGen;

/// <summary>One tensor of a checkpoint in HF naming, with its expected shape.</summary>
public sealed record WeightSpec(string Name, IReadOnlyList<long> Shape)
{
    /// <summary>Number of elements.</summary>
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A model declaration as the generator describes it at run time: what the CLI and the trainer use to find a
/// model for a checkpoint's <c>model_type</c>. Generated into each declaring assembly's <c>ModelCatalog</c>.
/// </summary>
public sealed record ModelDeclaration
{
    /// <summary>The declaring class's name (e.g. <c>Llama</c>, <c>TinyLlama</c>).</summary>
    public required string Name { get; init; }
    /// <summary>The declaring class.</summary>
    public required Type DeclaringType { get; init; }
    /// <summary>True when the declaration has no <c>[Decoder]</c>: its sizes come from <c>config.json</c>.</summary>
    public required bool IsFamily { get; init; }
    /// <summary>
    /// The configuration the attributes declare. For a family the sizes are 0 and only the structural
    /// defaults (biases, mask, RoPE precision, …) are meaningful.
    /// </summary>
    public required ModelConfig Declared { get; init; }
    /// <summary>The HF tensors (names and shapes) a model of this declaration has for a configuration.</summary>
    public required Func<ModelConfig, IReadOnlyList<WeightSpec>> Weights { get; init; }

    /// <summary>HF <c>model_type</c>.</summary>
    public string Family => Declared.Family;

    /// <summary>
    /// Binds an HF <c>config.json</c> to this declaration: its fields override the declared defaults, and for a
    /// sized declaration every size must agree with the declaration.
    /// </summary>
    public ModelConfig FromHuggingFace(string configJsonPath) =>
        Checkpoints.HfConfig.Load(configJsonPath, Declared, requireDeclaredSizes: !IsFamily);

    /// <summary>
    /// The TorchSharp module tree for <paramref name="config"/>, which must be of this declaration's family and, for a
    /// sized declaration, have its sizes. Parameters get PyTorch's default initialization.
    /// </summary>
    public Backends.Torch.CausalLMModule CreateTorchModel(ModelConfig config)
    {
        if (config.Family != Family)
            throw new ModelConfigException("configuration", "model_type", $"is '{config.Family}' but {Name} declares '{Family}'");
        if (!IsFamily)
        {
            var d = Declared;
            if ((config.Layers, config.Hidden, config.Heads, config.KvHeads, config.HeadDim, config.Intermediate, config.Vocab)
                != (d.Layers, d.Hidden, d.Heads, d.KvHeads, d.HeadDim, d.Intermediate, d.Vocab))
                throw new ModelConfigException("configuration", "sizes", $"differ from the sizes {Name} declares");
        }
        return new Backends.Torch.CausalLMModule(config);
    }
}

/// <summary>
/// Constant shape and mask of one declared model, as a struct type the ILGPU kernels take as a generic
/// argument: ILGPU compiles one kernel per struct type, and the properties fold to constants.
/// </summary>
public interface IKernelSpecialization
{
    /// <summary>Per-head dimension.</summary>
    int HeadDim { get; }
    /// <summary>Query heads.</summary>
    int Heads { get; }
    /// <summary>Key/value heads.</summary>
    int KvHeads { get; }
    /// <summary>Query heads per key/value head.</summary>
    int GqaGroup { get; }
    /// <summary>Rotary dimension (head_dim × partial rotary factor).</summary>
    int RotaryDim { get; }
    /// <summary>Sliding window, or 0 for none.</summary>
    int SlidingWindow { get; }
    /// <summary>Attention mask of packed windows.</summary>
    MaskKind Mask { get; }
}
