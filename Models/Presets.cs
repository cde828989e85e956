namespace ModelGen.Models;

// Small fixed-size variants for tests, demos and the default `modelgen train` run. Sizes are constants here,
// so the generator also emits their kernel specializations.

/// <summary>
/// A 4-layer Llama with tied embeddings over GPT-2's tokenizer (vocabulary padded to 50304) for CPU demos: `modelgen train` trains it. GPT-2
/// has no BOS, so its EOS (&lt;|endoftext|&gt;) is the anchor, as the paper prescribes.
/// </summary>
[CausalLM("llama", BosTokenId = -1, EosTokenId = 50256, TiedEmbeddings = true)]
[Decoder(Layers = 4, Hidden = 256, Heads = 8, KvHeads = 4, Intermediate = 688, Vocab = 50304, MaxPositions = 2048)]
[Rope(Theta = 10000)]
[RmsNorm(Eps = 1e-6)]
[Attention(Mask = MaskKind.Anchor)]
public partial class TinyLlama;

/// <summary>The shape of the llama test fixtures: 2 layers, 4/2 heads of 32.</summary>
[CausalLM("llama")]
[Decoder(Layers = 2, Hidden = 128, Heads = 4, KvHeads = 2, Intermediate = 256, Vocab = 512, MaxPositions = 4096)]
[Rope(Theta = 10000)]
[RmsNorm(Eps = 1e-6)]
[Attention(Mask = MaskKind.Anchor)]
public partial class MicroLlama;

/// <summary>A 2-layer Mistral with a 16-token sliding window (the mistral_swa fixture's shape).</summary>
[CausalLM("mistral")]
[Decoder(Layers = 2, Hidden = 128, Heads = 4, KvHeads = 2, HeadDim = 32, Intermediate = 256, Vocab = 512, MaxPositions = 4096)]
[Rope(Theta = 10000)]
[RmsNorm(Eps = 1e-6)]
[Attention(Mask = MaskKind.Anchor, SlidingWindow = 16)]
public partial class MicroMistral;

/// <summary>A 2-layer Qwen2 with tied embeddings and q/k/v biases (the qwen2 fixture's shape).</summary>
[CausalLM("qwen2", TiedEmbeddings = true)]
[Decoder(Layers = 2, Hidden = 128, Heads = 8, KvHeads = 2, Intermediate = 256, Vocab = 512, MaxPositions = 4096)]
[Rope(Theta = 1_000_000)]
[RmsNorm(Eps = 1e-6)]
[Attention(Mask = MaskKind.Anchor, QkvBias = true)]
public partial class MicroQwen2;

/// <summary>Llama 3.1 8B, to show a real declaration (not instantiated in tests: 8B parameters).</summary>
[CausalLM("llama", BosTokenId = 128000, EosTokenId = 128001)]
[Decoder(Layers = 32, Hidden = 4096, Heads = 32, KvHeads = 8, Intermediate = 14336, Vocab = 128256, MaxPositions = 131072)]
[Rope(Theta = 500_000, Scaling = RopeScaling.Llama3, Factor = 8, OriginalContext = 8192, LowFreqFactor = 1, HighFreqFactor = 4)]
[RmsNorm(Eps = 1e-5)]
[Attention(Mask = MaskKind.Anchor)]
public partial class Llama31_8B;
