using ModelGen.Backends.Torch;
using static TorchSharp.torch;

namespace ModelGen.Analysis;

/// <summary>Settings of one study run; defaults follow the paper except T (4096 there), chosen for a CPU.</summary>
public sealed record RopeStudyOptions
{
    /// <summary>The paper's Δ1 values (Δ2 = 16).</summary>
    public static readonly long[] PaperDeltas = [0, 2, 4, 6, 8, 10, 12, 14, 15, 17, 18, 20, 22, 50, 100, 200, 500, 1000, 2000];

    /// <summary>Sequence length T of the D measures.</summary>
    public int Length { get; init; } = 1024;
    /// <summary>Sequences averaged over.</summary>
    public int Samples { get; init; } = 2;
    /// <summary>The reference shift Δ2.</summary>
    public long Delta2 { get; init; } = 16;
    /// <summary>The shifts Δ1 compared with Δ2.</summary>
    public IReadOnlyList<long> Delta1 { get; init; } = PaperDeltas;
    /// <summary>Lengths T of the D_logit curve (the paper: 64 … 8192).</summary>
    public IReadOnlyList<int> LogitLengths { get; init; } = [64, 128, 256, 512, 1024, 2048, 4096, 8192];
    /// <summary>Precisions compared.</summary>
    public IReadOnlyList<StudyPrecision> Precisions { get; init; } = [StudyPrecision.Bf16, StudyPrecision.Bf16RotationFp32, StudyPrecision.Fp32];
}

/// <summary>What a study found, averaged over the sample sequences.</summary>
/// <param name="Deviation">D(X, Δ1, Δ2) per Δ1.</param>
/// <param name="PerToken">The per-token view at Δ1 = 0.</param>
/// <param name="LogitDeviation">D_logit per T.</param>
/// <param name="Sink">Mean probability on key 0 over rows 1…T−1, per layer and head, at Δ1 = 0 (<see cref="RopeStudy.SinkShare"/>);
/// empty for a study read from files that predate it.</param>
public sealed record RopeStudyResult(
    IReadOnlyDictionary<StudyPrecision, IReadOnlyList<(long Delta1, double D)>> Deviation,
    IReadOnlyDictionary<StudyPrecision, double[]> PerToken,
    IReadOnlyDictionary<StudyPrecision, IReadOnlyList<(int Length, double DLogit)>> LogitDeviation,
    IReadOnlyDictionary<StudyPrecision, double[][]> Sink)
{
    /// <summary>The sink share averaged over layers and heads, per precision.</summary>
    public double MeanSink(StudyPrecision precision) =>
        Sink.TryGetValue(precision, out var layers) && layers.Any(l => l.Length > 0) ? layers.SelectMany(l => l).Average() : double.NaN;
}

/// <summary>Runs the three measures of the study on one model.</summary>
public static class RopeStudyRunner
{
    /// <summary>
    /// Runs the study. <paramref name="sequences"/> supply token ids (each at least as long as the longest T used);
    /// <paramref name="progress"/> hears what is being computed.
    /// </summary>
    public static RopeStudyResult Run(CausalLMModule model, IReadOnlyList<long[]> sequences, RopeStudyOptions options, Action<string>? progress = null)
    {
        int need = Math.Max(options.Length, options.LogitLengths.DefaultIfEmpty(0).Max());
        if (sequences.Count < options.Samples || sequences.Take(options.Samples).Any(s => s.Length < need))
            throw new ArgumentException($"the study needs {options.Samples} sequences of at least {need} tokens");
        model.eval();
        var deviation = new Dictionary<StudyPrecision, IReadOnlyList<(long, double)>>();
        var perToken = new Dictionary<StudyPrecision, double[]>();
        var logit = new Dictionary<StudyPrecision, IReadOnlyList<(int, double)>>();
        var sink = new Dictionary<StudyPrecision, double[][]>();
        foreach (var precision in options.Precisions)
        {
            RopeStudy.SetPrecision(model, precision);
            var sums = new double[options.Delta1.Count];
            var tokens = new double[options.Length];
            var logits = new double[options.LogitLengths.Count];
            double[][]? sinkShare = null;
            for (int s = 0; s < options.Samples; s++)
            {
                using var ids = tensor(sequences[s][..options.Length], [1, options.Length]);
                var reference = RopeStudy.Capture(model, ids, options.Delta2);
                for (int i = 0; i < options.Delta1.Count; i++)
                {
                    progress?.Invoke($"{precision}: sample {s + 1}/{options.Samples}, Δ1 = {options.Delta1[i]}");
                    var shifted = RopeStudy.Capture(model, ids, options.Delta1[i]);
                    var columns = RopeStudy.PerTokenDeviation(shifted, reference);
                    sums[i] += columns.Sum() / options.Samples;
                    if (options.Delta1[i] == 0)
                    {
                        for (int j = 0; j < columns.Length; j++) tokens[j] += columns[j] / options.Samples;
                        var share = RopeStudy.SinkShare(shifted);
                        sinkShare ??= share.Select(l => new double[l.Length]).ToArray();
                        for (int l = 0; l < share.Length; l++)
                            for (int h = 0; h < share[l].Length; h++) sinkShare[l][h] += share[l][h] / options.Samples;
                    }
                    Dispose(shifted);
                }
                Dispose(reference);
                for (int i = 0; i < options.LogitLengths.Count; i++)
                {
                    int t = options.LogitLengths[i];
                    progress?.Invoke($"{precision}: sample {s + 1}/{options.Samples}, D_logit at T = {t}");
                    using var prefix = tensor(sequences[s][..t], [1, t]);
                    var a = RopeStudy.Capture(model, prefix, 0);
                    var b = RopeStudy.Capture(model, prefix, options.Delta2);
                    logits[i] += RopeStudy.FirstTokenLogitDeviation(a, b) / options.Samples;
                    Dispose(a);
                    Dispose(b);
                }
            }
            deviation[precision] = options.Delta1.Select((d, i) => (d, sums[i])).ToList();
            perToken[precision] = tokens;
            logit[precision] = options.LogitLengths.Select((t, i) => (t, logits[i])).ToList();
            sink[precision] = sinkShare ?? [];
        }
        RopeStudy.SetPrecision(model, StudyPrecision.Fp32);
        return new RopeStudyResult(deviation, perToken, logit, sink);
    }

    private static void Dispose(List<(Tensor Q, Tensor K)> captured)
    {
        foreach (var (q, k) in captured) { q.Dispose(); k.Dispose(); }
    }
}
