using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ModelGen.Benchmarking;
using Spectre.Console;
using Spectre.Console.Cli;

namespace ModelGen.Cli;

/// <summary>
/// <c>modelgen bench</c>: every kernel on every backend present, with a table, <c>results.json</c> and
/// <c>bench.png</c>; with <c>--peer python3</c> the PyTorch peer runs the same shapes in the same command and each of
/// our rows gets its ratio against it.
/// </summary>
public sealed class BenchCommand : Command<BenchCommand.Settings>
{
    /// <summary>Arguments of <c>bench</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Backends to run.</summary>
        [CommandOption("--backends <LIST>")]
        [Description("Comma-separated: torch-cpu, ilgpu-cpu, ilgpu-cuda. Default: every backend this machine has.")]
        public string? Backends { get; init; }

        /// <summary>Shapes for the CUDA backend and the peer.</summary>
        [CommandOption("--shapes <NAME>")]
        [Description("Shapes on CUDA: h200 (RoPE [1,32,65536,128], attention H=32 D=128 S=8K,16K, GEMM 8192³, tile map 64K) or small. CPU backends always use small.")]
        [DefaultValue("h200")]
        public string Shapes { get; init; } = "h200";

        /// <summary>Untimed calls first.</summary>
        [CommandOption("--warmup <N>")]
        [DefaultValue(3)]
        public int Warmup { get; init; } = 3;

        /// <summary>Timed calls (attention cases use at most 3).</summary>
        [CommandOption("--repeats <N>")]
        [DefaultValue(10)]
        public int Repeats { get; init; } = 10;

        /// <summary>Output folder.</summary>
        [CommandOption("--out <DIR>")]
        [DefaultValue("runs/bench")]
        public string Out { get; init; } = "runs/bench";

        /// <summary>Python with torch and CUDA for the peer run.</summary>
        [CommandOption("--peer <PYTHON>")]
        [Description("Run tools/bench_peer.py with this Python (torch with CUDA) on the CUDA shapes and print our/their ratios.")]
        public string? Peer { get; init; }

        /// <summary>Re-report an earlier run.</summary>
        [CommandOption("--from <RESULTS_JSON>")]
        [Description("Print the table and draw bench.png from an earlier run's results.json instead of measuring (e.g. for a run on a machine without fonts).")]
        public string? From { get; init; }

        /// <summary>Path of the peer script.</summary>
        [CommandOption("--peer-script <PATH>")]
        [DefaultValue("tools/bench_peer.py")]
        public string PeerScript { get; init; } = "tools/bench_peer.py";

        /// <inheritdoc/>
        public override ValidationResult Validate()
        {
            if (Warmup < 0) return ValidationResult.Error($"--warmup must be ≥ 0, got {Warmup}");
            if (Repeats < 1) return ValidationResult.Error($"--repeats must be ≥ 1, got {Repeats}");
            if (Shapes is not ("small" or "h200")) return ValidationResult.Error($"--shapes '{Shapes}' is not one of small, h200");
            foreach (var b in ParseBackends(Backends) ?? [])
                if (b is not ("torch-cpu" or "ilgpu-cpu" or "ilgpu-cuda"))
                    return ValidationResult.Error($"--backends: '{b}' is not one of torch-cpu, ilgpu-cpu, ilgpu-cuda");
            if (Peer is not null && !File.Exists(PeerScript)) return ValidationResult.Error($"--peer-script {PeerScript}: no such file");
            return ValidationResult.Success();
        }
    }

    private sealed record SavedRun(List<BenchResult>? Ours, List<BenchResult>? Peer);

    private static string[]? ParseBackends(string? text) =>
        text?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, WriteIndented = true };

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        if (settings.From is not null)
        {
            if (!File.Exists(settings.From)) throw new FileNotFoundException($"--from {settings.From}: no such file", settings.From);
            var saved = JsonSerializer.Deserialize<SavedRun>(File.ReadAllText(settings.From), Json)
                ?? throw new InvalidDataException($"{settings.From}: not a results.json of modelgen bench");
            Directory.CreateDirectory(settings.Out);
            Report(saved.Ours ?? [], saved.Peer ?? [], settings.Out);
            return 0;
        }
        var backends = ParseBackends(settings.Backends) ?? KernelBench.AvailableBackends().ToArray();
        var cudaShapes = BenchShapes.Parse(settings.Shapes);
        Directory.CreateDirectory(settings.Out);
        var results = new List<BenchResult>();
        foreach (var backend in backends)
        {
            var shapes = backend == "ilgpu-cuda" ? cudaShapes : BenchShapes.Small;
            results.AddRange(KernelBench.Run(backend, shapes, settings.Warmup, settings.Repeats, Console.WriteLine));
        }
        var peer = settings.Peer is null ? [] : RunPeer(settings, cudaShapes);
        Report(results, peer, settings.Out);
        return 0;
    }

    private static List<BenchResult> RunPeer(Settings settings, BenchShapes shapes)
    {
        string specPath = Path.Combine(settings.Out, "peer-shapes.json");
        var spec = new
        {
            shapes, settings.Warmup, settings.Repeats,
            attention = shapes.AttentionSeqs.Select(seq => (Seq: seq, Layout: KernelBench.Layout(seq, shapes.MeanDocument))).Select(c => new
            {
                seq = c.Seq, shape = KernelBench.AttentionShape(shapes, c.Seq),
                documentIds = c.Layout.DocumentIds(),
                flops = KernelBench.AttentionMasks.ToDictionary(m => m.Name, m => KernelBench.AttentionFlops(shapes, c.Layout, m.Kind)),
            }).ToArray(),
            tileMap = new
            {
                seq = shapes.TileMapSeq, shape = $"S{shapes.TileMapSeq} tile64 doc{shapes.MeanDocument}",
                documentIds = KernelBench.Layout(shapes.TileMapSeq, shapes.MeanDocument).DocumentIds(),
            },
        };
        File.WriteAllText(specPath, JsonSerializer.Serialize(spec, Json));
        var rows = new List<BenchResult>();
        RunPeerScript(settings.Peer!, settings.PeerScript, specPath, line =>
        {
            var row = line.Deserialize<BenchResult>(Json) ?? throw new InvalidDataException($"peer printed an unreadable line: {line}");
            Console.WriteLine($"  peer {row.Kernel} {row.Shape} {row.Backend}: {row.MedianMs:F3} ms");
            rows.Add(row);
        });
        return rows;
    }

    /// <summary>JSON options of results.json and the peer's lines.</summary>
    internal static JsonSerializerOptions JsonOptions => Json;

    /// <summary>
    /// Runs a PyTorch peer script on <paramref name="specPath"/> and hands every JSON line it prints to
    /// <paramref name="onLine"/> (other lines are echoed); a failing peer is a warning, its lines so far are kept.
    /// </summary>
    internal static void RunPeerScript(string python, string script, string specPath, Action<JsonElement> onLine)
    {
        Console.WriteLine($"peer: {python} {script} {specPath}");
        var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(script);
        start.ArgumentList.Add(specPath);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {python}");
        while (process.StandardOutput.ReadLine() is { } line)
        {
            if (!line.StartsWith('{'))
            {
                Console.WriteLine($"  peer: {line}");
                continue;
            }
            onLine(JsonDocument.Parse(line).RootElement.Clone());
        }
        process.WaitForExit();
        if (process.ExitCode != 0) Console.Error.WriteLine($"warning: the peer exited with code {process.ExitCode}; its rows so far are kept");
    }

    /// <summary>Prints the table and writes results.json and bench.png into <paramref name="folder"/>.</summary>
    public static void Report(IReadOnlyList<BenchResult> ours, IReadOnlyList<BenchResult> peer, string folder)
    {
        static string F(double v) => v.ToString(v >= 100 ? "F0" : v >= 1 ? "F2" : "F4", CultureInfo.InvariantCulture);
        var table = new Table().AddColumns("kernel", "shape", "backend", "median ms", "rate", "vs peer (peer time / ours)");
        foreach (var r in ours.Concat(peer).OrderBy(r => r.Kernel).ThenBy(r => r.Shape))
        {
            bool mine = ours.Contains(r);
            string ratios = !mine ? "" : string.Join("  ", peer
                .Where(p => p.Shape == r.Shape && (p.Kernel == r.Kernel || p.Kernel == r.Kernel + "+mask"))
                .Select(p => $"{p.Backend}{(p.Kernel.EndsWith("+mask", StringComparison.Ordinal) ? "+mask" : "")}: {p.MedianMs / r.MedianMs:F2}×"));
            table.AddRow(Markup.Escape(r.Kernel), Markup.Escape(r.Shape), Markup.Escape(r.Backend), F(r.MedianMs),
                r.Unit == "ms" ? "" : $"{F(r.Rate)} {r.Unit}", Markup.Escape(ratios));
        }
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) }).Write(table);
        string json = Path.Combine(folder, "results.json");
        File.WriteAllText(json, JsonSerializer.Serialize(new { ours, peer }, Json));
        string png = Path.Combine(folder, "bench.png");
        Plot(ours.Concat(peer).ToList(), png);
        Console.WriteLine($"wrote {json} and {png}");
    }

    /// <summary>One bar per (case, backend): median time in log10 ms, grouped by case.</summary>
    private static void Plot(List<BenchResult> rows, string path)
    {
        var plot = new ScottPlot.Plot();
        var cases = rows.Select(r => (r.Kernel, r.Shape)).Distinct().ToList();
        var backends = rows.Select(r => r.Backend).Distinct().ToList();
        var palette = new ScottPlot.Palettes.Category10();
        var bars = new List<ScottPlot.Bar>();
        for (int c = 0; c < cases.Count; c++)
            for (int b = 0; b < backends.Count; b++)
                if (rows.FirstOrDefault(r => (r.Kernel, r.Shape) == cases[c] && r.Backend == backends[b]) is { } r)
                    bars.Add(new ScottPlot.Bar { Position = c * (backends.Count + 1) + b, Value = Math.Log10(r.MedianMs), FillColor = palette.GetColor(b) });
        plot.Add.Bars(bars);
        for (int b = 0; b < backends.Count; b++) plot.Legend.ManualItems.Add(new ScottPlot.LegendItem { LabelText = backends[b], FillColor = palette.GetColor(b) });
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            cases.Select((c, i) => new ScottPlot.Tick(i * (backends.Count + 1) + (backends.Count - 1) / 2.0, $"{c.Kernel} {c.Shape.Split(' ').FirstOrDefault(p => p.StartsWith('S')) ?? c.Shape}")).ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = -45;
        plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleRight;
        plot.Axes.Bottom.MinimumSize = 200;
        plot.Axes.Left.Label.Text = "log10 median ms (lower is faster)";
        plot.Title("modelgen bench: kernels per backend");
        plot.ShowLegend();
        plot.SavePng(path, 1200, 600);
    }
}
