using ModelGen.Backends.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Analysis;

/// <summary>The forward-pass precisions the study compares.</summary>
public enum StudyPrecision
{
    /// <summary>bf16 weights and activations, RoPE rotation in bf16 (what HF with FlashAttention-2 does).</summary>
    Bf16,
    /// <summary>bf16 weights and activations, RoPE rotation in fp32 (ModelGen's default rotation).</summary>
    Bf16RotationFp32,
    /// <summary>Everything in fp32.</summary>
    Fp32,
}

/// <summary>
/// The measures of "When Precision Meets Position" (§2, appendix B): how far attention moves when every position of
/// a sequence is shifted. With exact RoPE it would not move at all; bf16 breaks that, most at the first token.
/// </summary>
public static class RopeStudy
{
    /// <summary>Column weights n_j = 1 / (number of causal entries in column j) = 1 / (T − j), j = 0…T−1.</summary>
    public static Tensor ColumnWeights(int length) =>
        1.0 / (length - arange(length, dtype: ScalarType.Float64));

    /// <summary>Puts <paramref name="model"/> into one of the study's precisions.</summary>
    public static void SetPrecision(CausalLMModule model, StudyPrecision precision)
    {
        model.to(precision == StudyPrecision.Fp32 ? ScalarType.Float32 : ScalarType.BFloat16);
        model.RotationPrecision = precision == StudyPrecision.Bf16 ? RopePrecision.Bf16 : RopePrecision.Fp32;
    }

    /// <summary>Rotated q and k of every layer for tokens <paramref name="ids"/> [1, T] at positions Δ…Δ+T−1.</summary>
    public static List<(Tensor Q, Tensor K)> Capture(CausalLMModule model, Tensor ids, long delta)
    {
        long t = ids.shape[1];
        var captured = new List<(Tensor, Tensor)>();
        model.AttentionProbe = (_, q, k) => captured.Add((q.detach().clone(), k.detach().clone()));
        try
        {
            using var _ = no_grad();
            using var positions = (arange(t, dtype: ScalarType.Int64) + delta).unsqueeze(0);
            model.ForwardHidden(ids, AttentionInputs.Causal(positions)).Dispose();
        }
        finally { model.AttentionProbe = null; }
        return captured;
    }

    /// <summary>Causal attention probabilities [H, T, T] (fp64) of one layer, from its rotated q and k (GQA expanded).</summary>
    public static Tensor Probabilities(Tensor q, Tensor k) => Scores(q, k).softmax(-1);

    /// <summary>Causal pre-softmax scores q·k/√d [H, T, T] in fp64 (masked entries −∞).</summary>
    public static Tensor Scores(Tensor q, Tensor k)
    {
        long heads = q.shape[1], t = q.shape[2], d = q.shape[3];
        var kk = k.repeat_interleave(heads / k.shape[1], dim: 1);
        var s = matmul(q[0].to(ScalarType.Float64), kk[0].to(ScalarType.Float64).transpose(-1, -2)) / Math.Sqrt(d);
        using var causal = ones(t, t, dtype: ScalarType.Bool).triu(1);
        // An explicit Scalar kept alive across the call: an implicit temporary can be finalized while native code reads it.
        using var negativeInfinity = double.NegativeInfinity.ToScalar();
        return s.masked_fill(causal, negativeInfinity);
    }

    /// <summary>
    /// Per-key-column deviation Σ_{l,h} n_j Σ_i |ATTN_ij(Δ1) − ATTN_ij(Δ2)| (length T); its sum is D(X, Δ1, Δ2).
    /// </summary>
    public static double[] PerTokenDeviation(IReadOnlyList<(Tensor Q, Tensor K)> a, IReadOnlyList<(Tensor Q, Tensor K)> b)
    {
        long t = a[0].Q.shape[2];
        var total = zeros(t, dtype: ScalarType.Float64);
        using var weights = ColumnWeights((int)t);
        for (int l = 0; l < a.Count; l++)
        {
            long heads = a[l].Q.shape[1], group = heads / a[l].K.shape[1];
            for (long h = 0; h < heads; h++) // one head at a time: a T×T fp64 matrix is 128 MB at T = 4096
            {
                using var scope = NewDisposeScope();
                var pa = Probabilities(Head(a[l].Q, h), Head(a[l].K, h / group));
                var pb = Probabilities(Head(b[l].Q, h), Head(b[l].K, h / group));
                total.add_((pa - pb).abs().sum([0L, 1L]) * weights); // Σ_i, per column j
            }
        }
        return total.data<double>().ToArray();
    }

    /// <summary>
    /// The attention sink: for every layer and head, the mean probability that query rows 1…T−1 put on key 0
    /// (row 0 sees only key 0 and is left out). Uniform causal attention would give (1/(T−1)) Σ_{i=1}^{T−1} 1/(i+1).
    /// </summary>
    public static double[][] SinkShare(IReadOnlyList<(Tensor Q, Tensor K)> captured)
    {
        var result = new double[captured.Count][];
        for (int l = 0; l < captured.Count; l++)
        {
            var (q, k) = captured[l];
            long heads = q.shape[1], group = heads / k.shape[1], t = q.shape[2];
            result[l] = new double[heads];
            for (long h = 0; h < heads; h++)
            {
                using var scope = NewDisposeScope();
                var p = Probabilities(Head(q, h), Head(k, h / group)); // [1, T, T]
                result[l][h] = p[0, TensorIndex.Slice(1, t), 0].mean().item<double>();
            }
        }
        return result;
    }

    /// <summary>What the sink share would be if every row spread its probability evenly over its causal keys.</summary>
    public static double UniformSinkShare(int length)
    {
        double sum = 0;
        for (int i = 1; i < length; i++) sum += 1.0 / (i + 1);
        return sum / (length - 1);
    }

    /// <summary>
    /// How column 0 of a per-token view compares with the other columns. The last columns average few entries with
    /// weights n_j near 1 (column T−1 is the single entry of the last row's diagonal), so the maximum is also reported
    /// over the columns with at least <paramref name="minEntries"/> causal entries (j ≤ T − minEntries).
    /// </summary>
    public static FirstTokenSummary SummarizeFirstToken(IReadOnlyList<double> perToken, int minEntries = 64)
    {
        int t = perToken.Count;
        if (t < 2) throw new ArgumentException("a per-token view needs at least two columns", nameof(perToken));
        var others = perToken.Skip(1).ToArray();
        var sorted = others.Order().ToArray();
        double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        int argMax = 1 + Array.IndexOf(others, others.Max());
        int last = Math.Max(1, t - minEntries); // the last column j with T − j ≥ minEntries
        int argMaxHead = 1;
        for (int j = 2; j <= last; j++) if (perToken[j] > perToken[argMaxHead]) argMaxHead = j;
        int rank = 1 + others.Count(v => v > perToken[0]);
        double total = perToken.Sum();
        return new FirstTokenSummary(perToken[0], median, perToken[argMax], argMax, perToken[argMaxHead], argMaxHead, minEntries,
            rank, total > 0 ? perToken[0] / total : 0);
    }

    private static Tensor Head(Tensor x, long h) => x[.., TensorIndex.Slice(h, h + 1)];

    /// <summary>D_logit = Σ_{l,h} (1/T) Σ_i |A_i0(Δ1) − A_i0(Δ2)|: pre-softmax logits against the first key.</summary>
    public static double FirstTokenLogitDeviation(IReadOnlyList<(Tensor Q, Tensor K)> a, IReadOnlyList<(Tensor Q, Tensor K)> b)
    {
        double sum = 0;
        long t = a[0].Q.shape[2];
        for (int l = 0; l < a.Count; l++)
        {
            using var scope = NewDisposeScope();
            sum += (FirstKeyLogits(a[l].Q, a[l].K) - FirstKeyLogits(b[l].Q, b[l].K)).abs().sum().item<double>() / t;
        }
        return sum;
    }

    /// <summary>q_i·k_0/√d for every head and query [H, T] in fp64 (every query sees key 0).</summary>
    public static Tensor FirstKeyLogits(Tensor q, Tensor k)
    {
        long heads = q.shape[1], d = q.shape[3];
        var k0 = k[0, .., 0].repeat_interleave(heads / k.shape[1], dim: 0).to(ScalarType.Float64); // [H, D]
        return (q[0].to(ScalarType.Float64) * k0.unsqueeze(1)).sum(-1) / Math.Sqrt(d);
    }
}

/// <summary>Column 0 of a per-token view against the other columns (see <see cref="RopeStudy.SummarizeFirstToken"/>).</summary>
/// <param name="Column0">The first key's deviation.</param>
/// <param name="MedianOthers">Median over columns 1…T−1.</param>
/// <param name="MaxOthers">Largest of columns 1…T−1.</param>
/// <param name="ArgMaxOthers">Its column.</param>
/// <param name="MaxOthersWithEntries">Largest of columns 1…T−MinEntries (each averaging at least MinEntries rows).</param>
/// <param name="ArgMaxOthersWithEntries">Its column.</param>
/// <param name="MinEntries">The entry count that bounds the second maximum.</param>
/// <param name="Rank">Column 0's rank among all T columns (1 = largest).</param>
/// <param name="Share">Column 0's share of D (the sum of all columns).</param>
public sealed record FirstTokenSummary(double Column0, double MedianOthers, double MaxOthers, int ArgMaxOthers,
    double MaxOthersWithEntries, int ArgMaxOthersWithEntries, int MinEntries, int Rank, double Share);
