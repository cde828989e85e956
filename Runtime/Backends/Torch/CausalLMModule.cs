using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Backends.Torch;

/// <summary>The TorchSharp module tree of a decoder-only causal LM, with HF parameter names.</summary>
public sealed class CausalLMModule : nn.Module
{
    /// <summary>The configuration the tree was built for.</summary>
    public ModelConfig Config { get; }

    /// <summary>Builds the tree for <paramref name="config"/>.</summary>
    public CausalLMModule(ModelConfig config) : base("CausalLM")
    {
        Config = config.Validate();
        throw new NotImplementedException("CausalLMModule: being written on main");
    }
}
