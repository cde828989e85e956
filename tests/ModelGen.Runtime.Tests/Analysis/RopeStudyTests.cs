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
    public void Sink_share_on_hand_checkable_cases()
    {
        // q = 0: every row spreads evenly over its i + 1 keys, so row i puts 1/(i + 1) on key 0.
        const int t = 6;
        var flat = new List<(Tensor, Tensor)> { (zeros(1, 2, t, 4), randn(1, 1, t, 4)) };
        double uniform = Enumerable.Range(1, t - 1).Average(i => 1.0 / (i + 1));
        Assert.Equal(uniform, RopeStudy.UniformSinkShare(t), 14);
        Assert.All(RopeStudy.SinkShare(flat)[0], v => Assert.Equal(uniform, v, 12));

        // q_i = (1, 0, 0, 0), k_0 = (10, 0, 0, 0), other keys 0: row i has logit 10/√4 = 5 on key 0 and 0 on its i
        // other keys, so P(key 0) = e⁵ / (e⁵ + i); the head's sink share is their mean over rows 1…T−1.
        var q = zeros(1, 1, t, 4); q[0, 0, .., 0] = ones(t);
        var k = zeros(1, 1, t, 4); k[0, 0, 0, 0] = 10;
        double want = Enumerable.Range(1, t - 1).Average(i => Math.Exp(5) / (Math.Exp(5) + i));
        var share = RopeStudy.SinkShare([(flat[0].Item1, flat[0].Item2), (q, k)]);
        Assert.Equal(2, share.Length);
        Assert.Equal(want, Assert.Single(share[1]), 12);
    }

    [Fact]
    public void First_token_summary_ranks_column_0_and_leaves_out_columns_with_few_entries()
    {
        // T = 8, minEntries = 3: the maximum "with entries" runs over columns 1…5 (T − j ≥ 3), not 6 and 7.
        double[] view = [0.5, 0.1, 0.3, 0.2, 0.6, 0.1, 0.9, 0.2];
        var f = RopeStudy.SummarizeFirstToken(view, minEntries: 3);
        Assert.Equal(0.5, f.Column0);
        Assert.Equal(0.2, f.MedianOthers);            // sorted others: .1 .1 .2 .2 .3 .6 .9
        Assert.Equal((0.9, 6), (f.MaxOthers, f.ArgMaxOthers));
        Assert.Equal((0.6, 4), (f.MaxOthersWithEntries, f.ArgMaxOthersWithEntries));
        Assert.Equal(3, f.Rank);                      // 0.9 and 0.6 are larger
        Assert.Equal(0.5 / 2.9, f.Share, 12);
    }

    [Fact]
    public void A_sink_makes_the_first_column_dominate_the_per_token_view()
    {
        // The mechanism behind the paper's first-token finding, on one head with T = 64: the same small perturbation
        // of q and k (as bf16 rounding would make) moves P(key 0) by about p₀(1 − p₀)·δ in every row when most of the
        // probability sits on key 0, but only by p_ij·δ ≈ δ/i elsewhere. With a sink, column 0 is the largest column
        // by far; with the same keys and no sink it is not.
        const int t = 64, d = 8;
        random.manual_seed(11);
        var q = randn(1, 1, t, d) * 0.5;
        q[0, 0, .., 0] = ones(t) * 2;
        var keys = randn(1, 1, t, d) * 0.5;
        keys[0, 0, .., 0] = zeros(t);
        var noiseQ = randn(1, 1, t, d) * 0.02;
        var noiseK = randn(1, 1, t, d) * 0.02;

        (FirstTokenSummary View, double Sink) Study(double sinkKey)
        {
            var k = keys.clone();
            k[0, 0, 0, 0] = sinkKey; // q_i·k_0 / √8 ≈ 2·sinkKey / 2.83
            var sinkShare = RopeStudy.SinkShare([(q, k)])[0][0];
            var columns = RopeStudy.PerTokenDeviation([(q, k)], [(q + noiseQ, k + noiseK)]);
            return (RopeStudy.SummarizeFirstToken(columns, minEntries: 8), sinkShare);
        }

        var (sink, sinkP) = Study(sinkKey: 6);   // logit ≈ 4.2 on key 0
        var (none, noneP) = Study(sinkKey: 0);
        Assert.True(sinkP > 0.5, $"P(key 0) = {sinkP}");
        Assert.True(noneP < 0.15, $"P(key 0) = {noneP}");
        Assert.Equal(1, sink.Rank);
        Assert.True(sink.Column0 > 3 * sink.MaxOthers, $"column 0 = {sink.Column0}, max other = {sink.MaxOthers}");
        Assert.True(none.Column0 < none.MaxOthers, $"without a sink column 0 = {none.Column0}, max other = {none.MaxOthers}");
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
        // The sink diagnostic: one share per layer and head, each a probability, and their mean as reported.
        var sink = result.Sink[StudyPrecision.Fp32];
        Assert.Equal(2, sink.Length);
        Assert.All(sink, layer => Assert.Equal(4, layer.Length));
        Assert.All(sink.SelectMany(l => l), v => Assert.InRange(v, 1e-6, 1.0));
        Assert.Equal(sink.SelectMany(l => l).Average(), result.MeanSink(StudyPrecision.Fp32), 12);
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
        foreach (var f in new[] { "d_vs_delta", "per_token", "d_logit", "sink" })
        {
            Assert.True(File.Exists(Path.Combine(folder.Path, f + ".csv")));
            Assert.True(new FileInfo(Path.Combine(folder.Path, f + ".png")).Length > 1000);
        }
        Assert.True(new FileInfo(Path.Combine(folder.Path, "per_token_all.png")).Length > 1000);
        var summary = File.ReadAllLines(Path.Combine(folder.Path, "first_token.csv"));
        Assert.Equal(3, summary.Length); // header, bf16, fp32
        Assert.StartsWith("precision,column0,", summary[0]);
        var result = ModelGen.Cli.RopeStudyReport.Read(folder.Path);
        Assert.Equal(2 * 4, result.Sink[StudyPrecision.Bf16].Sum(l => l.Length)); // 2 layers × 4 heads, read back
        Assert.Equal(19, result.Deviation[StudyPrecision.Bf16].Count);
        Assert.Equal(64, result.PerToken[StudyPrecision.Fp32].Length);
        // Every study sequence starts with the anchor the trainer puts at token 0 of each window (the fixture's BOS, 1).
        using var tokens = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder.Path, "tokens.json")));
        Assert.All(tokens.RootElement.GetProperty("sequences").EnumerateArray(), seq => Assert.Equal(1, seq[0].GetInt64()));
        File.Delete(Path.Combine(folder.Path, "d_logit.png"));
        Assert.Equal(0, ModelGen.Tests.Cli.CliRunner.Run("analyze-rope", folder.Path, "--replot").Code);
        Assert.True(File.Exists(Path.Combine(folder.Path, "d_logit.png")));
    }

    [Fact]
    public void Corpus_study_sequences_start_with_the_anchor_of_the_training_windows()
    {
        // TinyLlama has no BOS: the trainer anchors each window with GPT-2's EOS, and the study must start with the same token.
        using var folder = new ScratchFolder();
        Assert.Equal(0, ModelGen.Tests.Cli.CliRunner.Run("analyze-rope", "TinyLlama", "--seq", "32", "--samples", "2",
            "--max-logit-length", "64", "--precision", "fp32", "--out", folder.Path).Code);
        var config = ModelGen.Models.TinyLlama.Declared;
        var windows = ModelGen.Training.TrainingData.Pack(ModelGen.Data.TextCorpus.LoadDefault().Take(2), ModelGen.Data.TextTokenizer.Gpt2(), config, 32, false);
        long anchor = windows[0].Tokens[0];
        Assert.Equal(50256, anchor);
        using var tokens = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder.Path, "tokens.json")));
        Assert.All(tokens.RootElement.GetProperty("sequences").EnumerateArray(), seq => Assert.Equal(anchor, seq[0].GetInt64()));
    }

    [Fact]
    public void One_document_samples_are_the_anchor_and_the_start_of_a_long_enough_document()
    {
        var tokenizer = ModelGen.Data.TextTokenizer.Gpt2();
        var config = ModelGen.Models.TinyLlama.Declared;
        var documents = ModelGen.Data.TextCorpus.LoadDefault();
        const int length = 512;
        var samples = ModelGen.Cli.AnalyzeRopeCommand.CorpusSequences(tokenizer, config, null, 3, length, minDocument: length - 1);
        var longEnough = documents.Select(d => tokenizer.Encode(d.Text)).Where(ids => ids.Count >= length - 1).Take(3).ToList();
        Assert.Equal(3, samples.Count);
        for (int s = 0; s < 3; s++)
        {
            Assert.Equal(length, samples[s].Length);
            Assert.Equal(config.AnchorTokenId, samples[s][0]);
            Assert.Equal(longEnough[s].Take(length - 1).Select(i => (long)i), samples[s][1..]); // no EOS, no other document
        }
        // The default cuts the concatenated stream every T − 1 tokens: the first sample is the same stream start.
        var stream = ModelGen.Cli.AnalyzeRopeCommand.CorpusSequences(tokenizer, config, null, 2, length);
        Assert.Equal(tokenizer.Encode(documents[0].Text).Take(10).Select(i => (long)i), stream[0][1..11]);
    }
}
