using ModelGen.Checkpoints;

namespace ModelGen.Tests.Checkpoints;

public class HfConfigTests
{
    private static ModelConfig Bind(string fixture) =>
        ModelGen.Models.ModelCatalog.All.First(d => d.IsFamily && d.Family == Family(fixture)).FromHuggingFace(Path.Combine(Fixtures.Path_(fixture), "config.json"));

    private static string Family(string fixture) =>
        System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Path_(fixture), "config.json"))).RootElement.GetProperty("model_type").GetString()!;

    private static ModelConfigException BindText(string json)
    {
        using var folder = new ScratchFolder();
        File.WriteAllText(folder.File("config.json"), json);
        return Assert.Throws<ModelConfigException>(() => ModelGen.Models.Llama.FromHuggingFace(folder.File("config.json")));
    }

    [Fact]
    public void Transformers_5_configs_bind_every_field()
    {
        var qwen = Bind("hf/qwen2");
        Assert.Equal((true, true, false, 16, 1e6), (qwen.TiedEmbeddings, qwen.QkvBias, qwen.OutputBias, qwen.HeadDim, qwen.Rope.Theta));
        Assert.Null(qwen.SlidingWindow);
        Assert.Equal(16, Bind("hf/mistral_swa").SlidingWindow);
        var llama3 = Bind("hf-more/llama3_rope").Rope;
        Assert.Equal((RopeScaling.Llama3, 8.0, 1.0, 4.0, 64), (llama3.Scaling, llama3.Factor, llama3.LowFreqFactor, llama3.HighFreqFactor, llama3.OriginalContext));
        var yarn = Bind("hf-more/qwen2_yarn_custom").Rope;
        Assert.Equal((16.0, 2.0, 1.2, false), (yarn.BetaFast, yarn.BetaSlow, yarn.AttentionFactor, yarn.Truncate));
        Assert.Equal(16, Bind("hf-more/llama_longrope").Rope.LongFactor!.Count);
        var bias = Bind("hf-more/llama_headdim48_bias");
        Assert.Equal((48, true, true, true), (bias.HeadDim, bias.QkvBias, bias.OutputBias, bias.MlpBias));
    }

    [Fact]
    public void Older_configs_with_rope_theta_and_rope_scaling_bind()
    {
        var rope = Bind("hf-more/llama_linear_legacy_config").Rope;
        Assert.Equal((RopeScaling.Linear, 2.0, 10000.0), (rope.Scaling, rope.Factor, rope.Theta));
    }

    [Fact]
    public void Write_produces_a_config_that_binds_back_to_the_same_configuration()
    {
        using var folder = new ScratchFolder();
        foreach (var fixture in new[] { "hf/qwen2", "hf/mistral_swa", "hf-more/llama3_rope", "hf-more/qwen2_yarn_custom", "hf-more/llama_longrope", "hf-more/llama_headdim48_bias" })
        {
            var config = Bind(fixture);
            HfConfig.Write(config, folder.File("config.json"));
            var back = ModelGen.Models.ModelCatalog.ForFamily(config.Family)!.FromHuggingFace(folder.File("config.json"));
            Assert.Equal(config with { Rope = config.Rope with { ShortFactor = null, LongFactor = null } }, back with { Rope = back.Rope with { ShortFactor = null, LongFactor = null } });
            Assert.Equal(config.Rope.LongFactor, back.Rope.LongFactor);
        }
    }

    [Theory]
    [InlineData("num_hidden_layers", "\"num_hidden_layers\": 2,", "")]
    [InlineData("hidden_size", "\"hidden_size\": 128,", "\"hidden_size\": \"wide\",")]
    [InlineData("num_key_value_heads", "\"num_key_value_heads\": 2,", "\"num_key_value_heads\": 3,")]
    [InlineData("rms_norm_eps", "\"rms_norm_eps\": 1e-06,", "\"rms_norm_eps\": -1,")]
    [InlineData("rope_parameters.rope_type", "\"rope_type\": \"default\"", "\"rope_type\": \"spiral\"")]
    [InlineData("rope_parameters.low_freq_factor", "\"rope_type\": \"default\"", "\"rope_type\": \"llama3\", \"factor\": 8.0, \"high_freq_factor\": 4.0")]
    [InlineData("model_type", "\"model_type\": \"llama\",", "\"model_type\": \"mistral\",")]
    public void A_missing_or_wrong_field_is_named_with_the_file(string field, string find, string replace)
    {
        string text = File.ReadAllText(Path.Combine(Fixtures.Path_("hf/llama"), "config.json"));
        Assert.Contains(find, text);
        var e = BindText(text.Replace(find, replace));
        Assert.Contains(field, e.Field);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void A_sized_declaration_rejects_a_checkpoint_of_other_sizes()
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelGen.Models.MicroLlama.FromHuggingFace(Path.Combine(Fixtures.Path_("hf-more/llama_headdim48_bias"), "config.json")));
        Assert.Contains("declaration fixes it at 32", e.Message);
    }
}
