namespace ModelGen.Models;

// The three HF families, as families: no [Decoder], so sizes come from each checkpoint's config.json.
// What the attributes say here are the structural defaults a config.json may leave out.

/// <summary>Llama (1, 2, 3.x): RMSNorm, SwiGLU, GQA, RoPE (default or llama3 scaling), no biases by default.</summary>
[CausalLM("llama")]
[Rope(Theta = 10000)]
[RmsNorm(Eps = 1e-6)]
[Attention(Mask = MaskKind.Anchor)]
public partial class Llama;

/// <summary>Mistral: Llama's block plus a sliding attention window.</summary>
[CausalLM("mistral")]
[Rope(Theta = 10000)]
[RmsNorm(Eps = 1e-6)]
[Attention(Mask = MaskKind.Anchor)]
public partial class Mistral;

/// <summary>Qwen2: Llama's block with q/k/v biases; small variants tie the embeddings.</summary>
[CausalLM("qwen2")]
[Rope(Theta = 1_000_000)]
[RmsNorm(Eps = 1e-6)]
[Attention(Mask = MaskKind.Anchor, QkvBias = true)]
public partial class Qwen2;
