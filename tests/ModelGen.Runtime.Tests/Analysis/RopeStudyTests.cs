using ModelGen.Analysis;
using ModelGen.Backends.Torch;
using static TorchSharp.torch;

namespace ModelGen.Tests.Analysis;

public class RopeStudyTests
{
    private static CausalLMModule FixtureModel() =>
        PretrainedModel.Load(Fixtures.Path_("hf/llama"), ModelGen.Models.ModelCatalog.All).Model;

    private static long[] RandomTokens(int length, int seed)
    {
        var random = new Random(seed);
        var ids = new long[length];
        for (int i = 0; i < length; i++) ids[i] = random.Next(3, 512);
        ids[0] = 1;
        return ids;
    }

    [Fact]
    public void Column_weights_correct_for_the_number_of_causal_entries()
    {
        var n = RopeStudy.ColumnWeights(4).data<double>().ToArray();
        Assert.Equal([1 / 4.0, 1 / 3.0, 1 / 2.0, 1.0], n);
    }

    [Fact]
    public void D_logit_on_a_hand_checkable_case()
    {
        // One layer, one head, d = 4: q_i = (i, 0, 0, 0) at Δ1, (i, 1, 0, 0) at Δ2; k_0 = (2, 2, 0, 0).
        // A_i0 = q_i·k_0 / 2, so |ΔA_i0| = |2| / 2 = 1 for every i and D_logit = (1/T) Σ_i 1 = 1.
        var q1 = zeros(1, 1, 3, 4); q1[0, 0, .., 0] = arange(3, dtype: ScalarType.Float32);
        var q2 = q1.clone(); q2[0, 0, .., 1] = ones(3);
        var k = zeros(1, 1, 3, 4); k[0, 0, 0, 0] = 2; k[0, 0, 0, 1] = 2;
        Assert.Equal(1.0, RopeStudy.FirstTokenLogitDeviation([(q1, k)], [(q2, k)]), 12);
    }

    [Fact]
    public void Per_token_deviation_matches_the_definition_on_a_small_case()
    {
        random.manual_seed(3);
        var a = new List<(Tensor, Tensor)> { (randn(1, 2, 5, 4), randn(1, 1, 5, 4)) };
        var b = new List<(Tensor, Tensor)> { (randn(1, 2, 5, 4), randn(1, 1, 5, 4)) };
        var got = RopeStudy.PerTokenDeviation(a, b);
        // Written out: softmax over causal scores per head, then Σ_h Σ_i |Δ| / (T − j).
        var want = new double[5];
        for (int h = 0; h < 2; h++)
        {
            var pa = RopeStudy.Probabilities(a[0].Item1[.., h..(h + 1)], a[0].Item2);
            var pb = RopeStudy.Probabilities(b[0].Item1[.., h..(h + 1)], b[0].Item2);
            for (int i = 0; i < 5; i++)
                for (int j = 0; j <= i; j++)
                    want[j] += Math.Abs(pa[0, i, j].item<double>() - pb[0, i, j].item<double>()) / (5 - j);
        }
        for (int j = 0; j < 5; j++) Assert.Equal(want[j], got[j], 12);
    }

    [Fact]
    public void Fp32_keeps_attention_shift_invariant_and_bf16_does_not()
    {
        // Bound for fp32: RoPE's relative-position property holds up to fp32 rounding of the angles (≈ 1e-7 × position),
        // which moves probabilities by ~1e-7 each; summed over 2 layers × 4 heads × 128 columns, D stays below 1e-3.
        var model = FixtureModel();
        var options = new RopeStudyOptions { Length = 128, Samples = 1, Delta1 = [0, 500], LogitLengths = [64, 256] };
        var result = RopeStudyRunner.Run(model, [RandomTokens(256, 1)], options);
        double fp32 = result.Deviation[StudyPrecision.Fp32].Max(p => p.D);
        double bf16 = result.Deviation[StudyPrecision.Bf16].Min(p => p.D);
        Assert.True(fp32 < 1e-3, $"fp32 D = {fp32}");
        Assert.True(bf16 > 100 * fp32, $"bf16 D = {bf16}, fp32 D = {fp32}");
        Assert.True(result.LogitDeviation[StudyPrecision.Bf16][^1].DLogit > result.LogitDeviation[StudyPrecision.Fp32][^1].DLogit * 100);
        Assert.Equal(128, result.PerToken[StudyPrecision.Bf16].Length);
    }

    [Fact]
    public void Changing_precision_keeps_the_model_usable_and_restores_fp32()
    {
        var model = FixtureModel();
        RopeStudy.SetPrecision(model, StudyPrecision.Bf16);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.Equal(RopePrecision.Bf16, model.RotationPrecision);
        RopeStudy.SetPrecision(model, StudyPrecision.Fp32);
        using var ids = tensor(RandomTokens(16, 2), [1, 16]);
        using var _ = no_grad();
        Assert.Equal(ScalarType.Float32, model.forward(ids, AttentionInputs.Causal(1, 16)).dtype);
    }
}

[Collection("Console")]
public class AnalyzeRopeCliTests
{
    [Fact]
    public void Analyze_rope_writes_csv_plots_and_tokens_and_replots_from_its_csv()
    {
        using var folder = new ScratchFolder();
        Assert.Equal(0, ModelGen.Tests.Cli.CliRunner.Run("analyze-rope", Fixtures.Path_("hf/llama"), "--random-tokens", "--seq", "64",
            "--samples", "1", "--max-logit-length", "128", "--precision", "bf16,fp32", "--out", folder.Path).Code);
        foreach (var f in new[] { "d_vs_delta", "per_token", "d_logit" })
        {
            Assert.True(File.Exists(Path.Combine(folder.Path, f + ".csv")));
            Assert.True(new FileInfo(Path.Combine(folder.Path, f + ".png")).Length > 1000);
        }
        var result = ModelGen.Cli.RopeStudyReport.Read(folder.Path);
        Assert.Equal(19, result.Deviation[StudyPrecision.Bf16].Count);
        Assert.Equal(64, result.PerToken[StudyPrecision.Fp32].Length);
        Assert.Contains("sequences", File.ReadAllText(Path.Combine(folder.Path, "tokens.json")));
        File.Delete(Path.Combine(folder.Path, "d_logit.png"));
        Assert.Equal(0, ModelGen.Tests.Cli.CliRunner.Run("analyze-rope", folder.Path, "--replot").Code);
        Assert.True(File.Exists(Path.Combine(folder.Path, "d_logit.png")));
    }
}
