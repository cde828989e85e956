namespace ModelGen.Generators.Tests;

/// <summary>Declarations shared by several tests.</summary>
internal static class Declarations
{
    /// <summary>A sized Llama with GQA (4 heads, 2 KV heads) and Llama 3.1 RoPE scaling.</summary>
    public const string TinyLlama3 = """
        /// <summary>Tiny Llama 3 for tests.</summary>
        [CausalLM("llama", BosTokenId = 128000, EosTokenId = 128001)]
        [Decoder(Layers = 2, Hidden = 128, Heads = 4, KvHeads = 2, Intermediate = 344, Vocab = 1000, MaxPositions = 2048)]
        [Rope(Theta = 500000, Scaling = RopeScaling.Llama3, Factor = 8, OriginalContext = 8192, LowFreqFactor = 1, HighFreqFactor = 4)]
        [RmsNorm(Eps = 1e-5)]
        [Attention(Mask = MaskKind.Anchor)]
        public partial class TinyLlama3 { }

        """;

    /// <summary>The Llama family: sizes from config.json.</summary>
    public const string LlamaFamily = """
        /// <summary>Llama family.</summary>
        [CausalLM("llama")]
        [RmsNorm(Eps = 1e-5)]
        public partial class Llama { }

        """;

    /// <summary>The Qwen2 family, with tied embeddings and no BOS.</summary>
    public const string Qwen2Family = """
        /// <summary>Qwen2 family.</summary>
        [CausalLM("qwen2", BosTokenId = -1, EosTokenId = 151643, TiedEmbeddings = true)]
        [Rope(Theta = 1000000)]
        public partial class Qwen2 { }

        """;
}
