using System.ComponentModel;
using System.Globalization;
using System.Text;
using ModelGen.Analysis;
using ModelGen.Backends.Torch;
using ModelGen.Data;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace ModelGen.Cli;

/// <summary><c>modelgen analyze-rope</c>: how bf16 breaks RoPE's relative positions, as CSV and PNG plots.</summary>
public sealed class AnalyzeRopeCommand : Command<AnalyzeRopeCommand.Settings>
{
    /// <summary>Arguments of <c>analyze-rope</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Checkpoint folder, training run, or preset name.</summary>
        [CommandArgument(0, "<MODEL>")]
        [Description("An HF checkpoint folder, a training run folder, or a preset name (random-initialized with --seed).")]
        public string Model { get; init; } = "";
        /// <summary>Output folder.</summary>
        [CommandOption("--out <DIR>")] [Description("Where the CSV files and plots go (default runs/rope-study).")] public string Out { get; init; } = Path.Combine("runs", "rope-study");
        /// <summary>T.</summary>
        [CommandOption("--seq <T>")] [Description("Sequence length T of D and the per-token view (default 1024; the paper used 4096).")] public int Seq { get; init; } = 1024;
        /// <summary>Samples.</summary>
        [CommandOption("--samples <N>")] [Description("Sequences averaged over (default 2).")] public int Samples { get; init; } = 2;
        /// <summary>Longest D_logit length.</summary>
        [CommandOption("--max-logit-length <T>")] [Description("Longest T of the D_logit curve, from 64 in powers of two (default 8192).")] public int MaxLogitLength { get; init; } = 8192;
        /// <summary>Random tokens instead of a corpus.</summary>
        [CommandOption("--random-tokens")] [Description("Use uniformly random token ids instead of corpus text.")] public bool RandomTokens { get; init; }
        /// <summary>Corpus.</summary>
        [CommandOption("--corpus <PATH>")] [Description("Text to tokenize (default: the embedded corpus).")] public string? Corpus { get; init; }
        /// <summary>One document per sample.</summary>
        [CommandOption("--one-document")] [Description("Start each sample at a document that has at least T−1 tokens (the first such documents of the corpus, in order), so the T tokens of D are the anchor and one document, as a document sees itself in anchor-masked training. Without it, samples cut the stream of concatenated documents every T−1 tokens.")] public bool OneDocument { get; init; }
        /// <summary>Seed.</summary>
        [CommandOption("--seed <N>")] [Description("Seed of random weights and random tokens (default 0).")] public int Seed { get; init; }
        /// <summary>Redraw the plots of an earlier study from its CSV files.</summary>
        [CommandOption("--replot")] [Description("Only redraw the PNG plots of the study in MODEL (a study output folder) from its CSV files.")] public bool Replot { get; init; }
        /// <summary>Δ1 values.</summary>
        [CommandOption("--delta1 <LIST>")] [Description("Comma list of the shifts Δ1 compared with Δ2 = 16, including 0 (default the paper's 19, 0 … 2000).")] public string? Delta1 { get; init; }
        /// <summary>Precisions.</summary>
        [CommandOption("--precision <LIST>")] [Description("Comma list of bf16, bf16-rot-fp32, fp32 (default all three).")] public string Precision { get; init; } = "bf16,bf16-rot-fp32,fp32";

        /// <inheritdoc/>
        public override ValidationResult Validate()
        {
            if (Seq < 32) return ValidationResult.Error($"--seq must be at least 32, got {Seq}");
            if (Samples < 1) return ValidationResult.Error($"--samples must be positive, got {Samples}");
            if (MaxLogitLength < 64) return ValidationResult.Error($"--max-logit-length must be at least 64, got {MaxLogitLength}");
            if (Delta1 is not null && Delta1.Split(',').Any(d => !long.TryParse(d.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) || v < 0))
                return ValidationResult.Error($"--delta1 '{Delta1}' is not a comma list of non-negative integers");
            if (Delta1 is not null && !Delta1.Split(',').Any(d => d.Trim() == "0"))
                return ValidationResult.Error($"--delta1 '{Delta1}' must include 0 (the per-token view and the sink are taken at Δ1 = 0)");
            foreach (var p in Precision.Split(','))
                if (!TryPrecision(p.Trim(), out _)) return ValidationResult.Error($"--precision '{p}' is not bf16, bf16-rot-fp32 or fp32");
            return ValidationResult.Success();
        }
    }

    internal static bool TryPrecision(string name, out StudyPrecision precision)
    {
        (bool ok, precision) = name switch
        {
            "bf16" => (true, StudyPrecision.Bf16),
            "bf16-rot-fp32" => (true, StudyPrecision.Bf16RotationFp32),
            "fp32" => (true, StudyPrecision.Fp32),
            _ => (false, StudyPrecision.Fp32),
        };
        return ok;
    }

    internal static string Name(StudyPrecision p) => p switch
    {
        StudyPrecision.Bf16 => "bf16",
        StudyPrecision.Bf16RotationFp32 => "bf16-rot-fp32",
        _ => "fp32",
    };

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        if (s.Replot)
        {
            RopeStudyReport.Plot(RopeStudyReport.Read(s.Model), s.Model);
            Console.WriteLine($"redrew the plots in {s.Model}");
            return 0;
        }
        var (model, tokenizer, description) = LoadModel(s);
        var logitLengths = new List<int>();
        for (int t = 64; t <= s.MaxLogitLength; t *= 2) logitLengths.Add(t);
        var options = new RopeStudyOptions
        {
            Length = s.Seq,
            Samples = s.Samples,
            LogitLengths = logitLengths,
            Delta1 = s.Delta1 is null ? RopeStudyOptions.PaperDeltas : s.Delta1.Split(',').Select(d => long.Parse(d.Trim(), CultureInfo.InvariantCulture)).Distinct().ToList(),
            Precisions = s.Precision.Split(',').Select(p => { TryPrecision(p.Trim(), out var v); return v; }).Distinct().ToList(),
        };
        int need = Math.Max(s.Seq, logitLengths.Max());
        var sequences = s.RandomTokens || tokenizer is null
            ? RandomSequences(model.Config, s.Samples, need, s.Seed)
            : CorpusSequences(tokenizer, model.Config, s.Corpus, s.Samples, need, s.OneDocument ? s.Seq - 1 : 0);
        Console.WriteLine($"model: {description}; T = {s.Seq}, Δ2 = {options.Delta2}, {s.Samples} sample(s) of {(s.RandomTokens || tokenizer is null ? "random tokens" : s.OneDocument ? "corpus text, one document each" : "corpus text")}, each starting with the anchor (token {model.Config.AnchorTokenId})");

        bool live = !Console.IsErrorRedirected;
        var result = RopeStudyRunner.Run(model, sequences, options, message => { if (live) Console.Error.Write($"\r{message,-70}"); });
        if (live) Console.Error.WriteLine();
        Directory.CreateDirectory(s.Out);
        // The exact token ids, so a reference implementation (tools/rope_study_reference.py) can repeat the study.
        File.WriteAllText(Path.Combine(s.Out, "tokens.json"), System.Text.Json.JsonSerializer.Serialize(
            new { length = s.Seq, delta2 = options.Delta2, delta1 = options.Delta1, logit_lengths = options.LogitLengths, sequences = sequences.Take(s.Samples) }));
        RopeStudyReport.Write(result, s.Out);
        foreach (var (precision, points) in result.Deviation)
        {
            var first = RopeStudy.SummarizeFirstToken(result.PerToken[precision]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{Name(precision),-14} D(Δ1=0) = {points.First(p => p.Delta1 == 0).D:G4}   mean D = {points.Average(p => p.D):G4}   D_logit(T={result.LogitDeviation[precision][^1].Length}) = {result.LogitDeviation[precision][^1].DLogit:G4}"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{"",-14} sink (mean P on key 0) = {result.MeanSink(precision):F3} (uniform {RopeStudy.UniformSinkShare(s.Seq):F3})   column 0 = {first.Column0:G3}: ×{first.Column0 / first.MedianOthers:F1} the median, ×{first.Column0 / first.MaxOthersWithEntries:F2} the max of columns with ≥ {first.MinEntries} entries (j = {first.ArgMaxOthersWithEntries}), ×{first.Column0 / first.MaxOthers:F2} the max of all (j = {first.ArgMaxOthers}), rank {first.Rank} of {s.Seq}, {first.Share:P1} of D"));
        }
        Console.WriteLine($"wrote {s.Out}: d_vs_delta, per_token, d_logit (.csv, .png), per_token_all.png, first_token.csv, sink.csv, sink.png and tokens.json");
        return 0;
    }

    private static (CausalLMModule, TextTokenizer?, string) LoadModel(Settings s)
    {
        if (Directory.Exists(s.Model))
        {
            var (folder, config, model, tokenizer) = LoadedModel.Open(s.Model);
            if (tokenizer is not null && tokenizer.MaxTokenId >= config.Vocab) tokenizer = null; // fall back to random tokens
            return (model, tokenizer, $"{config.Family} from {folder}");
        }
        var declaration = Models.ModelCatalog.All.FirstOrDefault(d => !d.IsFamily && string.Equals(d.Name, s.Model, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"'{s.Model}' is neither a checkpoint folder nor a preset");
        random.manual_seed(s.Seed);
        var gpt2 = TextTokenizer.Gpt2();
        return (declaration.CreateTorchModel(declaration.Declared), gpt2.MaxTokenId < declaration.Declared.Vocab ? gpt2 : null, $"{declaration.Name}, random-initialized (seed {s.Seed})");
    }

    private static List<long[]> RandomSequences(ModelConfig config, int samples, int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, samples).Select(_ =>
        {
            var ids = new long[length];
            for (int i = 0; i < length; i++) ids[i] = random.Next(3, config.Vocab);
            ids[0] = config.AnchorTokenId;
            return ids;
        }).ToList();
    }

    /// <summary>
    /// Samples of <paramref name="length"/> tokens, each the anchor followed by the corpus stream (documents back to back,
    /// each ended by EOS, as the trainer packs them). With <paramref name="minDocument"/> = 0 the samples cut the stream
    /// every length − 1 tokens; otherwise each starts at the next document of at least <paramref name="minDocument"/> tokens.
    /// </summary>
    internal static List<long[]> CorpusSequences(TextTokenizer tokenizer, ModelConfig config, string? corpus, int samples, int length, int minDocument = 0)
    {
        var documents = corpus is null ? TextCorpus.LoadDefault() : TextCorpus.Load(corpus);
        var encoded = documents.Select(d => tokenizer.Encode(d.Text).Select(i => (long)i).Append(config.EosTokenId ?? config.AnchorTokenId).ToArray()).ToList();
        var stream = encoded.SelectMany(d => d).ToArray();
        var starts = new List<int>();
        if (minDocument == 0)
            for (int at = 0; starts.Count < samples && at + length - 1 <= stream.Length; at += length - 1) starts.Add(at);
        else
            for (int d = 0, at = 0; d < encoded.Count && starts.Count < samples; at += encoded[d].Length, d++)
                if (encoded[d].Length - 1 >= minDocument && at + length - 1 <= stream.Length) starts.Add(at); // − 1: without its EOS
        if (starts.Count < samples)
            throw new InvalidDataException($"{corpus ?? TextCorpus.DefaultName}: {stream.Length} tokens give only {starts.Count} of {samples} sequence(s) of {length}"
                + (minDocument > 0 ? $" starting at a document of at least {minDocument} tokens" : ""));
        return starts.Select(at => (long[])[config.AnchorTokenId, .. stream[at..(at + length - 1)]]).ToList();
    }
}

/// <summary>CSV files and ScottPlot charts of a <see cref="RopeStudyResult"/>.</summary>
public static class RopeStudyReport
{
    /// <summary>Writes d_vs_delta, per_token and d_logit as .csv and .png into <paramref name="folder"/>.</summary>
    public static void Write(RopeStudyResult result, string folder)
    {
        var inv = CultureInfo.InvariantCulture;
        var csv = new StringBuilder("precision,delta1,D\n");
        foreach (var (p, points) in result.Deviation)
            foreach (var (d, v) in points) csv.Append(inv, $"{AnalyzeRopeCommand.Name(p)},{d},{v:R}\n");
        File.WriteAllText(Path.Combine(folder, "d_vs_delta.csv"), csv.ToString());

        csv = new StringBuilder("precision,token,deviation\n");
        foreach (var (p, values) in result.PerToken)
            for (int j = 0; j < values.Length; j++) csv.Append(inv, $"{AnalyzeRopeCommand.Name(p)},{j},{values[j]:R}\n");
        File.WriteAllText(Path.Combine(folder, "per_token.csv"), csv.ToString());

        csv = new StringBuilder("precision,T,D_logit\n");
        foreach (var (p, points) in result.LogitDeviation)
            foreach (var (t, v) in points) csv.Append(inv, $"{AnalyzeRopeCommand.Name(p)},{t},{v:R}\n");
        File.WriteAllText(Path.Combine(folder, "d_logit.csv"), csv.ToString());

        csv = new StringBuilder("precision,layer,head,p_key0\n");
        foreach (var (p, layers) in result.Sink)
            for (int l = 0; l < layers.Length; l++)
                for (int h = 0; h < layers[l].Length; h++) csv.Append(inv, $"{AnalyzeRopeCommand.Name(p)},{l},{h},{layers[l][h]:R}\n");
        File.WriteAllText(Path.Combine(folder, "sink.csv"), csv.ToString());

        csv = new StringBuilder("precision,column0,median_others,max_others,argmax_others,max_others_min_entries,argmax_others_min_entries,min_entries,rank,share_of_D,sink_mean,sink_uniform\n");
        foreach (var (p, values) in result.PerToken)
        {
            var f = RopeStudy.SummarizeFirstToken(values);
            csv.Append(inv, $"{AnalyzeRopeCommand.Name(p)},{f.Column0:R},{f.MedianOthers:R},{f.MaxOthers:R},{f.ArgMaxOthers},{f.MaxOthersWithEntries:R},{f.ArgMaxOthersWithEntries},{f.MinEntries},{f.Rank},{f.Share:R},{result.MeanSink(p):R},{RopeStudy.UniformSinkShare(values.Length):R}\n");
        }
        File.WriteAllText(Path.Combine(folder, "first_token.csv"), csv.ToString());
        Plot(result, folder);
    }

    /// <summary>Reads a study back from the CSV files <see cref="Write"/> made.</summary>
    public static RopeStudyResult Read(string folder)
    {
        static IEnumerable<string[]> Rows(string path) =>
            File.Exists(path) ? File.ReadLines(path).Skip(1).Where(l => l.Length > 0).Select(l => l.Split(','))
            : throw new FileNotFoundException($"{path}: not a study folder (no such CSV file)", path);
        static StudyPrecision P(string name, string file) =>
            AnalyzeRopeCommand.TryPrecision(name, out var p) ? p : throw new InvalidDataException($"{file}: unknown precision '{name}'");
        static double D(string v) => double.Parse(v, CultureInfo.InvariantCulture);
        string dv = Path.Combine(folder, "d_vs_delta.csv"), pt = Path.Combine(folder, "per_token.csv"), dl = Path.Combine(folder, "d_logit.csv");
        var deviation = Rows(dv).GroupBy(r => P(r[0], dv)).ToDictionary(g => g.Key, g => (IReadOnlyList<(long, double)>)g.Select(r => (long.Parse(r[1], CultureInfo.InvariantCulture), D(r[2]))).ToList());
        var perToken = Rows(pt).GroupBy(r => P(r[0], pt)).ToDictionary(g => g.Key, g => g.OrderBy(r => int.Parse(r[1], CultureInfo.InvariantCulture)).Select(r => D(r[2])).ToArray());
        var logit = Rows(dl).GroupBy(r => P(r[0], dl)).ToDictionary(g => g.Key, g => (IReadOnlyList<(int, double)>)g.Select(r => (int.Parse(r[1], CultureInfo.InvariantCulture), D(r[2]))).ToList());
        string sk = Path.Combine(folder, "sink.csv"); // absent in studies written before the sink diagnostic
        var sink = !File.Exists(sk) ? new Dictionary<StudyPrecision, double[][]>() : Rows(sk).GroupBy(r => P(r[0], sk)).ToDictionary(g => g.Key, g =>
            g.GroupBy(r => int.Parse(r[1], CultureInfo.InvariantCulture)).OrderBy(l => l.Key)
                .Select(l => l.OrderBy(r => int.Parse(r[2], CultureInfo.InvariantCulture)).Select(r => D(r[3])).ToArray()).ToArray());
        return new RopeStudyResult(deviation, perToken, logit, sink);
    }

    /// <summary>Draws d_vs_delta.png, per_token.png and d_logit.png.</summary>
    public static void Plot(RopeStudyResult result, string folder)
    {
        var plot = new ScottPlot.Plot();
        foreach (var (p, points) in result.Deviation)
        {
            var line = plot.Add.Scatter(points.Select(x => (double)x.Delta1).ToArray(), points.Select(x => x.D).ToArray());
            line.LegendText = AnalyzeRopeCommand.Name(p);
        }
        Save(plot, "Δ1 (Δ2 = 16)", "D(X, Δ1, Δ2)", "Attention deviation under a position shift", Path.Combine(folder, "d_vs_delta.png"));

        plot = new ScottPlot.Plot();
        foreach (var (p, values) in result.PerToken)
        {
            int shown = Math.Min(64, values.Length);
            var bars = plot.Add.Bars(Enumerable.Range(0, shown).Select(i => (double)i).ToArray(), values[..shown]);
            bars.LegendText = AnalyzeRopeCommand.Name(p);
        }
        Save(plot, "key position j (first 64)", "Σ_l,h n_j Σ_i |ΔATTN_ij|  (Δ1 = 0, Δ2 = 16)", "Per-token deviation (first 64 key positions)", Path.Combine(folder, "per_token.png"));

        plot = new ScottPlot.Plot();
        foreach (var (p, values) in result.PerToken)
        {
            if (values.All(v => v <= 0)) continue; // nothing to draw on a log scale
            double floor = values.Where(v => v > 0).Min();
            var dots = plot.Add.Scatter(Enumerable.Range(0, values.Length).Select(i => (double)i).ToArray(), values.Select(v => Math.Log10(Math.Max(v, floor))).ToArray());
            dots.LineWidth = 0;
            dots.MarkerSize = 3;
            dots.LegendText = AnalyzeRopeCommand.Name(p);
        }
        Save(plot, "key position j (all T)", "log10 Σ_l,h n_j Σ_i |ΔATTN_ij|  (Δ1 = 0, Δ2 = 16)", "Per-token deviation, every key position", Path.Combine(folder, "per_token_all.png"));

        if (result.Sink.Values.Any(l => l.Length > 0))
        {
            plot = new ScottPlot.Plot();
            int series = 0, count = result.Sink.Count;
            foreach (var (p, layers) in result.Sink)
            {
                // One bar per layer (mean over heads), the precisions side by side.
                var bars = plot.Add.Bars(Enumerable.Range(0, layers.Length).Select(l => l + (series - (count - 1) / 2.0) * 0.8 / count).ToArray(),
                    layers.Select(h => h.Length > 0 ? h.Average() : 0).ToArray());
                foreach (var bar in bars.Bars) bar.Size = 0.8 / count;
                bars.LegendText = AnalyzeRopeCommand.Name(p);
                series++;
            }
            Save(plot, "layer", "mean P(key 0) over heads and rows 1…T−1 (Δ = 0)", "Attention sink: probability on the first token", Path.Combine(folder, "sink.png"));
        }

        plot = new ScottPlot.Plot();
        foreach (var (p, points) in result.LogitDeviation)
        {
            var line = plot.Add.Scatter(points.Select(x => Math.Log2(x.Length)).ToArray(), points.Select(x => x.DLogit).ToArray());
            line.LegendText = AnalyzeRopeCommand.Name(p);
        }
        Save(plot, "log2 T", "D_logit(T) against the first key", "First-token logit deviation against length", Path.Combine(folder, "d_logit.png"));
    }

    private static void Save(ScottPlot.Plot plot, string x, string y, string title, string path)
    {
        plot.Axes.Bottom.Label.Text = x;
        plot.Axes.Left.Label.Text = y;
        plot.Title(title);
        plot.ShowLegend();
        plot.SavePng(path, 800, 500);
    }
}
