using System.Reflection;

namespace ModelGen.Generators.Tests;

/// <summary>The generated code, compiled and loaded: the values it declares and the tensors it lists.</summary>
public class GeneratedCodeBehaviourTests
{
    private static readonly Assembly Models = LoadModels();

    private static Assembly LoadModels()
    {
        string source = GeneratorHarness.Usings + Declarations.TinyLlama3 + Declarations.LlamaFamily + Declarations.Qwen2Family + """
            /// <summary>Tied tiny model.</summary>
            [CausalLM("mistral", TiedEmbeddings = true)]
            [Decoder(Layers = 1, Hidden = 64, Heads = 4, Intermediate = 96, Vocab = 50)]
            [Attention(SlidingWindow = 16, OutputBias = true)]
            [Mlp(Bias = true)]
            [Rope(PartialRotaryFactor = 0.5, Precision = RopePrecision.Bf16)]
            public partial class TinyMistral { }

            /// <summary>Qwen2 with its biases switched off explicitly.</summary>
            [CausalLM("qwen2")]
            [Decoder(Layers = 1, Hidden = 64, Heads = 4, HeadDim = 8, Intermediate = 96, Vocab = 50)]
            [Attention(QkvBias = false)]
            public partial class Qwen2NoBias { }
            """;
        GeneratorResult result = GeneratorHarness.Run(GeneratorHarness.Compilation("Behaviour.Models", ("Models.cs", source)));
        Assert.Empty(result.Diagnostics);
        Assert.Empty(result.CompilationDiagnostics);
        return result.Load();
    }

    private static Type Model(string name) => Models.GetType("Demo.Models." + name, throwOnError: true)!;

    private static T Static<T>(string type, string member) =>
        (T)(Model(type).GetProperty(member)?.GetValue(null) ?? Model(type).GetField(member)!.GetValue(null))!;

    private static ModelConfig Declared(string type) => Static<ModelConfig>(type, "Declared");

    private static IReadOnlyList<WeightSpec> Weights(string type, ModelConfig config) =>
        (IReadOnlyList<WeightSpec>)Model(type).GetMethod("Weights")!.Invoke(null, [config])!;

    private static Type Catalog => Models.GetType("Behaviour.Models.ModelCatalog", throwOnError: true)!;

    [Fact]
    public void Declared_config_of_a_sized_declaration_has_the_declared_values()
    {
        ModelConfig expected = new()
        {
            Family = "llama",
            Layers = 2,
            Hidden = 128,
            Heads = 4,
            KvHeads = 2,
            HeadDim = 32,
            Intermediate = 344,
            Vocab = 1000,
            MaxPositions = 2048,
            RmsNormEps = 1e-5,
            Mask = MaskKind.Anchor,
            BosTokenId = 128000,
            EosTokenId = 128001,
            Rope = new RopeConfig
            {
                Scaling = RopeScaling.Llama3,
                Theta = 500000,
                Factor = 8,
                OriginalContext = 8192,
                LowFreqFactor = 1,
                HighFreqFactor = 4,
            },
        };
        Assert.Equal(expected, Declared("TinyLlama3"));
        Declared("TinyLlama3").Validate("declaration");
    }

    [Fact]
    public void Declared_config_of_a_family_has_zero_sizes_and_the_declared_structure()
    {
        ModelConfig qwen = Declared("Qwen2");
        Assert.Equal(
            (0, 0, 0, 0, 0, 0, 0),
            (qwen.Layers, qwen.Hidden, qwen.Heads, qwen.KvHeads, qwen.HeadDim, qwen.Intermediate, qwen.Vocab));
        Assert.Equal("qwen2", qwen.Family);
        Assert.Null(qwen.BosTokenId);
        Assert.Equal(151643, qwen.EosTokenId);
        Assert.True(qwen.TiedEmbeddings);
        Assert.Equal(1000000, qwen.Rope.Theta);
    }

    [Fact]
    public void Qwen2_defaults_to_qkv_biases_unless_attention_says_otherwise()
    {
        Assert.True(Declared("Qwen2").QkvBias);
        Assert.False(Declared("Qwen2NoBias").QkvBias);
        Assert.False(Declared("TinyLlama3").QkvBias);
    }

    [Fact]
    public void Defaults_fill_kv_heads_head_dim_sliding_window_and_rope()
    {
        ModelConfig mistral = Declared("TinyMistral");
        Assert.Equal((4, 16), (mistral.KvHeads, mistral.HeadDim));
        Assert.Equal(16, mistral.SlidingWindow);
        Assert.Null(Declared("TinyLlama3").SlidingWindow);
        Assert.Equal(1e-6, mistral.RmsNormEps);
        Assert.Equal((RopeScaling.Default, 10000.0, 0.5, RopePrecision.Bf16),
            (mistral.Rope.Scaling, mistral.Rope.Theta, mistral.Rope.PartialRotaryFactor, mistral.Rope.Precision));
        Assert.Equal((1, 2), (mistral.BosTokenId, mistral.EosTokenId));
    }

    [Fact]
    public void Weights_list_hf_names_and_shapes_in_checkpoint_order()
    {
        var weights = Weights("TinyLlama3", Declared("TinyLlama3")).Select(w => $"{w.Name} [{string.Join(",", w.Shape)}]");
        static string[] Layer(int i) =>
        [
            $"model.layers.{i}.input_layernorm.weight [128]",
            $"model.layers.{i}.self_attn.q_proj.weight [128,128]",
            $"model.layers.{i}.self_attn.k_proj.weight [64,128]",
            $"model.layers.{i}.self_attn.v_proj.weight [64,128]",
            $"model.layers.{i}.self_attn.o_proj.weight [128,128]",
            $"model.layers.{i}.post_attention_layernorm.weight [128]",
            $"model.layers.{i}.mlp.gate_proj.weight [344,128]",
            $"model.layers.{i}.mlp.up_proj.weight [344,128]",
            $"model.layers.{i}.mlp.down_proj.weight [128,344]",
        ];
        Assert.Equal(
            ["model.embed_tokens.weight [1000,128]", .. Layer(0), .. Layer(1), "model.norm.weight [128]", "lm_head.weight [1000,128]"],
            weights);
    }

    [Fact]
    public void Weights_total_matches_the_parameter_count()
    {
        foreach (string name in new[] { "TinyLlama3", "TinyMistral", "Qwen2NoBias" })
        {
            ModelConfig config = Declared(name);
            Assert.Equal(config.ParameterCount(), Weights(name, config).Sum(w => w.Elements));
        }
    }

    [Fact]
    public void Tied_embeddings_omit_the_lm_head()
    {
        var names = Weights("TinyMistral", Declared("TinyMistral")).Select(w => w.Name).ToList();
        Assert.DoesNotContain("lm_head.weight", names);
        Assert.Equal("model.norm.weight", names[^1]);
    }

    [Fact]
    public void Qwen2_weights_include_qkv_biases_shaped_by_the_bound_config()
    {
        ModelConfig config = Declared("Qwen2") with { Layers = 1, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 96, Vocab = 50 };
        var weights = Weights("Qwen2", config).ToDictionary(w => w.Name, w => w.Shape.ToArray());
        Assert.Equal([64L], weights["model.layers.0.self_attn.q_proj.bias"]);
        Assert.Equal([32L], weights["model.layers.0.self_attn.k_proj.bias"]);
        Assert.Equal([32L], weights["model.layers.0.self_attn.v_proj.bias"]);
        Assert.False(weights.ContainsKey("model.layers.0.self_attn.o_proj.bias"));
        Assert.False(weights.ContainsKey("lm_head.weight"));
    }

    [Fact]
    public void Output_and_mlp_biases_follow_the_config()
    {
        var weights = Weights("TinyMistral", Declared("TinyMistral")).ToDictionary(w => w.Name, w => w.Shape.ToArray());
        Assert.Equal([64L], weights["model.layers.0.self_attn.o_proj.bias"]);
        Assert.Equal([96L], weights["model.layers.0.mlp.gate_proj.bias"]);
        Assert.Equal([96L], weights["model.layers.0.mlp.up_proj.bias"]);
        Assert.Equal([64L], weights["model.layers.0.mlp.down_proj.bias"]);
        Assert.False(weights.ContainsKey("model.layers.0.self_attn.q_proj.bias"));
    }

    [Fact]
    public void Kernel_struct_holds_the_constant_shape_and_mask()
    {
        var llama = (IKernelSpecialization)Activator.CreateInstance(Model("TinyLlama3").GetNestedType("Kernel")!)!;
        Assert.Equal((32, 4, 2, 2, 32, 0, MaskKind.Anchor),
            (llama.HeadDim, llama.Heads, llama.KvHeads, llama.GqaGroup, llama.RotaryDim, llama.SlidingWindow, llama.Mask));
        var mistral = (IKernelSpecialization)Activator.CreateInstance(Model("TinyMistral").GetNestedType("Kernel")!)!;
        Assert.Equal((16, 4, 4, 1, 8, 16, MaskKind.Causal),
            (mistral.HeadDim, mistral.Heads, mistral.KvHeads, mistral.GqaGroup, mistral.RotaryDim, mistral.SlidingWindow, mistral.Mask));
        Assert.True(Model("TinyLlama3").GetNestedType("Kernel")!.IsValueType);
        Assert.Null(Model("Llama").GetNestedType("Kernel"));
    }

    [Fact]
    public void Declaration_describes_the_declaring_type()
    {
        var declaration = Static<ModelDeclaration>("TinyLlama3", "Declaration");
        Assert.Equal("TinyLlama3", declaration.Name);
        Assert.Equal(Model("TinyLlama3"), declaration.DeclaringType);
        Assert.False(declaration.IsFamily);
        Assert.Same(Declared("TinyLlama3"), declaration.Declared);
        Assert.Equal("llama", declaration.Family);
        static string Describe(IEnumerable<WeightSpec> weights) => string.Join(";", weights.Select(w => $"{w.Name}[{string.Join(",", w.Shape)}]"));
        Assert.Equal(Describe(Weights("TinyLlama3", declaration.Declared)), Describe(declaration.Weights(declaration.Declared)));
        Assert.True(Static<ModelDeclaration>("Llama", "Declaration").IsFamily);
        Assert.Equal("llama", Model("Llama").GetField("Family")!.GetValue(null));
        Assert.Equal(true, Model("Llama").GetField("IsFamily")!.GetValue(null));
    }

    [Fact]
    public void Catalog_lists_every_declaration_sorted_by_full_name()
    {
        var all = (IReadOnlyList<ModelDeclaration>)Catalog.GetProperty("All")!.GetValue(null)!;
        Assert.Equal(["Llama", "Qwen2", "Qwen2NoBias", "TinyLlama3", "TinyMistral"], all.Select(d => d.Name));
    }

    [Fact]
    public void Catalog_finds_family_declarations_by_model_type_only()
    {
        ModelDeclaration? ForFamily(string modelType) => (ModelDeclaration?)Catalog.GetMethod("ForFamily")!.Invoke(null, [modelType]);
        Assert.Equal("Llama", ForFamily("llama")?.Name);
        Assert.Equal("Qwen2", ForFamily("qwen2")?.Name);
        Assert.Null(ForFamily("mistral")); // only sized mistral declarations
        Assert.Null(ForFamily("gpt2"));
    }
}
