namespace ModelGen.Tests.Declarations;

/// <summary>The generated members of the real declarations in Models/ agree with the module tree and the fixtures.</summary>
public class DeclarationTests
{
    public static IEnumerable<object[]> FixtureConfigs() =>
        Fixtures.AllWithLogits().Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(FixtureConfigs))]
    public void Generated_weight_map_equals_the_module_tree_and_the_checkpoint(string fixture)
    {
        string dir = Fixtures.Path_(fixture);
        var declaration = ModelGen.Backends.Torch.PretrainedModel.Resolve(dir, ModelGen.Models.ModelCatalog.All);
        var config = declaration.FromHuggingFace(Path.Combine(dir, "config.json"));
        var weights = declaration.Weights(config);
        var module = declaration.CreateTorchModel(config);
        Assert.Equal(weights.Select(w => (w.Name, string.Join(",", w.Shape))).Order(),
            module.ParameterSpecs().Select(w => (w.Name, string.Join(",", w.Shape))).Order());
        using var checkpoint = ModelGen.Checkpoints.CheckpointReader.Open(dir);
        Assert.All(weights, w => Assert.Equal(w.Shape, checkpoint.Info(w.Name).Shape));
        Assert.Equal(weights.Sum(w => w.Elements), config.ParameterCount());
    }

    [Fact]
    public void The_catalog_finds_one_family_per_model_type()
    {
        Assert.Equal("Llama", ModelGen.Models.ModelCatalog.ForFamily("llama")!.Name);
        Assert.Equal("Mistral", ModelGen.Models.ModelCatalog.ForFamily("mistral")!.Name);
        Assert.Equal("Qwen2", ModelGen.Models.ModelCatalog.ForFamily("qwen2")!.Name);
        Assert.Null(ModelGen.Models.ModelCatalog.ForFamily("gpt2"));
    }

    [Fact]
    public void A_sized_declaration_binds_a_matching_checkpoint_and_rejects_other_sizes()
    {
        var config = ModelGen.Models.MicroQwen2.FromHuggingFace(Path.Combine(Fixtures.Path_("hf/qwen2"), "config.json"));
        Assert.True(config.TiedEmbeddings && config.QkvBias);
        var e = Assert.Throws<ModelConfigException>(() => ModelGen.Models.MicroLlama.FromHuggingFace(Path.Combine(Fixtures.Path_("hf-more/llama_headdim48_bias"), "config.json")));
        Assert.Equal("head_dim", e.Field);
    }

    [Fact]
    public void Presets_build_their_declared_module_trees()
    {
        var model = ModelGen.Models.TinyLlama.CreateTorchModel();
        Assert.Equal(ModelGen.Models.TinyLlama.Declared.ParameterCount(), model.parameters().Sum(p => p.numel()));
        Assert.Equal(50256, model.Config.AnchorTokenId); // GPT-2 has no BOS: its EOS anchors packed windows
        var kernel = default(ModelGen.Models.TinyLlama.Kernel);
        Assert.Equal((32, 2, MaskKind.Anchor), (kernel.HeadDim, kernel.GqaGroup, kernel.Mask));
    }
}
