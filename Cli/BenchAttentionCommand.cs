using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using ModelGen.Backends.Ilgpu;
using ModelGen.Benchmarking;
using Spectre.Console;
using Spectre.Console.Cli;

namespace ModelGen.Cli;

/// <summary>
/// <c>modelgen bench-attention</c>: flash attention forward, backward and both on the GPU for each length, mask and
/// document mix, with TFLOP/s over allowed pairs; with <c>--peer python3</c> PyTorch (SDPA for causal, FlexAttention
/// with a compiled block mask for the others) runs the same cases in the same command, and with <c>--check-seqs</c>
/// our outputs and gradients are checked against an fp32 PyTorch reference beside PyTorch's own bf16 kernels.
/// </summary>
public sealed class BenchAttentionCommand : Command<BenchAttentionCommand.Settings>
{
    /// <summary>Arguments of <c>bench-attention</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Window lengths.</summary>
        [CommandOption("--seqs <LIST>")]
        [DefaultValue("8192,16384,32768,65536")]
        public string Seqs { get; init; } = "8192,16384,32768,65536";

        /// <summary>Masks.</summary>
        [CommandOption("--masks <LIST>")]
        [Description("causal, intradoc, anchor; ':wN' adds a sliding window of N tokens (causal:w4096).")]
        [DefaultValue("causal,anchor")]
        public string Masks { get; init; } = "causal,anchor";

        /// <summary>Mean document lengths.</summary>
        [CommandOption("--docs <LIST>")]
        [Description("Mean lengths of the log-normal documents (σ = 1) for the document masks.")]
        [DefaultValue("1024,4096")]
        public string Docs { get; init; } = "1024,4096";

        /// <summary>Query heads.</summary>
        [CommandOption("--heads <N>")]
        [DefaultValue(32)]
        public int Heads { get; init; } = 32;

        /// <summary>Key/value heads.</summary>
        [CommandOption("--kv-heads <N>")]
        [Description("Key/value heads (fewer than --heads: grouped-query attention). Default: --heads.")]
        public int? KvHeads { get; init; }

        /// <summary>Head dimension.</summary>
        [CommandOption("--head-dim <N>")]
        [DefaultValue(128)]
        public int HeadDim { get; init; } = 128;

        /// <summary>Untimed calls.</summary>
        [CommandOption("--warmup <N>")]
        [DefaultValue(2)]
        public int Warmup { get; init; } = 2;

        /// <summary>Timed calls.</summary>
        [CommandOption("--repeats <N>")]
        [DefaultValue(5)]
        public int Repeats { get; init; } = 5;

        /// <summary>Lengths to check against PyTorch.</summary>
        [CommandOption("--check-seqs <LIST>")]
        [Description("Write inputs, outputs and gradients of these lengths and have the peer check them against an fp32 PyTorch reference (needs --peer).")]
        public string? CheckSeqs { get; init; }

        /// <summary>Python of the peer.</summary>
        [CommandOption("--peer <PYTHON>")]
        [Description("Run tools/bench_attention_peer.py with this Python (torch with CUDA) on the same cases and inputs.")]
        public string? Peer { get; init; }

        /// <summary>Path of the peer script.</summary>
        [CommandOption("--peer-script <PATH>")]
        [DefaultValue("tools/bench_attention_peer.py")]
        public string PeerScript { get; init; } = "tools/bench_attention_peer.py";

        /// <summary>Keep the raw tensors.</summary>
        [CommandOption("--keep-data")]
        [Description("Keep the raw inputs and outputs written for the peer under OUT/data (removed after the run otherwise).")]
        public bool KeepData { get; init; }

        /// <summary>Accelerator.</summary>
        [CommandOption("--device <DEVICE>")]
        [Description("cuda, or cpu (ILGPU's emulator: tiny shapes only).")]
        [DefaultValue("cuda")]
        public string Device { get; init; } = "cuda";

        /// <summary>Tensor-core instruction set of our kernels.</summary>
        [CommandOption("--kernels <SET>")]
        [Description("auto (warpgroup MMA on SM_90 where a kernel exists, mma.sync otherwise), mma (mma.sync), or wgmma.")]
        [DefaultValue("auto")]
        public string Kernels { get; init; } = "auto";

        /// <summary>Output folder.</summary>
        [CommandOption("--out <DIR>")]
        [DefaultValue("runs/bench-attention")]
        public string Out { get; init; } = "runs/bench-attention";

        internal AttentionBenchOptions Options() => new()
        {
            Seqs = ParseInts(Seqs, "--seqs"), Masks = Masks.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
            Kernels = Kernels switch
            {
                "auto" => FlashKernelSet.Auto, "mma" => FlashKernelSet.MmaSync, "wgmma" => FlashKernelSet.Wgmma,
                _ => throw new ArgumentException($"--kernels '{Kernels}' is not one of auto, mma, wgmma"),
            },
            MeanDocuments = ParseInts(Docs, "--docs"), Heads = Heads, KvHeads = KvHeads ?? Heads, HeadDim = HeadDim,
            Warmup = Warmup, Repeats = Repeats, CheckSeqs = CheckSeqs is null ? [] : ParseInts(CheckSeqs, "--check-seqs"),
            DataDirectory = Peer is null ? null : Path.Combine(Out, "data"),
        };

        /// <inheritdoc/>
        public override ValidationResult Validate()
        {
            if (!GpuDevice.TryParse(Device, out _)) return ValidationResult.Error($"--device '{Device}' is not one of cuda, cpu");
            if (Peer is not null && !File.Exists(PeerScript)) return ValidationResult.Error($"--peer-script {PeerScript}: no such file");
            if (CheckSeqs is not null && Peer is null) return ValidationResult.Error("--check-seqs needs --peer (PyTorch computes the reference)");
            if (Peer is not null && Directory.Exists(Path.Combine(Out, "data")))
                return ValidationResult.Error($"{Path.Combine(Out, "data")} exists (the raw tensors of an earlier run?): remove it or choose another --out");
            try
            {
                var options = Options();
                if (options.Validate() is { } error) return ValidationResult.Error(error);
                if (options.CheckSeqs.Except(options.Seqs).FirstOrDefault() is int missing and > 0)
                    return ValidationResult.Error($"--check-seqs: {missing} is not one of --seqs");
            }
            catch (ArgumentException e)
            {
                return ValidationResult.Error(e.Message);
            }
            return ValidationResult.Success();
        }

        private static int[] ParseInts(string text, string option) =>
            text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(t =>
                int.TryParse(t, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0
                    ? n : throw new ArgumentException($"{option}: '{t}' is not a positive whole number")).ToArray();
    }

    /// <summary>One check line of the peer: a tensor of a case, our error and PyTorch's against the fp32 reference.</summary>
    public sealed record CheckResult(string Case, string Tensor, string Peer, double OursRelRms, double PeerRelRms, double OursMaxAbs,
        double PeerMaxAbs, double RefMaxAbs, string Bound, bool Pass);

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var options = settings.Options();
        var cases = AttentionCase.All(options);
        GpuDevice.TryParse(settings.Device, out var kind);
        Directory.CreateDirectory(settings.Out);
        List<BenchResult> ours;
        using (var device = GpuDevice.Open(kind, cpuWarpSize: 32, cpuWarpsPerGroup: 8))
        {
            Console.WriteLine($"bench-attention: {device.Description}");
            ours = AttentionBench.Run(device, options, Console.WriteLine);
        }
        var peer = new List<BenchResult>();
        var checks = new List<CheckResult>();
        if (settings.Peer is not null)
        {
            string specPath = Path.Combine(settings.Out, "peer-cases.json");
            var spec = new
            {
                options.Heads, options.KvHeads, options.HeadDim, options.Warmup, options.Repeats,
                cases = cases.Select(c => new
                {
                    shape = c.Shape(options.Heads, options.KvHeads, options.HeadDim), mask = c.Mask.Kind.ToString(), window = c.Mask.SlidingWindow,
                    seq = c.Seq, documentIds = c.UsesDocuments ? c.Layout.DocumentIds() : null, flops = c.ForwardFlops(options.Heads, options.HeadDim),
                    inputs = Path.GetFullPath(Path.Combine(options.DataDirectory!, AttentionBench.InputsName(c.Seq))),
                    check = options.CheckSeqs.Contains(c.Seq) ? Path.GetFullPath(Path.Combine(options.DataDirectory!, AttentionBench.CheckName(c))) : null,
                }).ToArray(),
            };
            File.WriteAllText(specPath, JsonSerializer.Serialize(spec, BenchCommand.JsonOptions));
            BenchCommand.RunPeerScript(settings.Peer, settings.PeerScript, specPath, line =>
            {
                if (line.TryGetProperty("check", out _))
                {
                    // PyTorch's SDPA does not return the log-sum-exp: its LSE errors are null.
                    double Number(string name) => line.GetProperty(name) is { ValueKind: JsonValueKind.Number } n ? n.GetDouble() : double.NaN;
                    var check = new CheckResult(line.GetProperty("check").GetString()!, line.GetProperty("tensor").GetString()!, line.GetProperty("peer").GetString()!,
                        Number("oursRelRms"), Number("peerRelRms"), Number("oursMaxAbs"), Number("peerMaxAbs"), Number("refMaxAbs"),
                        line.GetProperty("bound").GetString()!, line.GetProperty("pass").GetBoolean());
                    Console.WriteLine($"  check {check.Case} {check.Tensor}: ours {check.OursRelRms:E2} rel. RMS, {check.Peer} {check.PeerRelRms:E2} — {(check.Pass ? "pass" : "FAIL")}");
                    checks.Add(check);
                    return;
                }
                var row = line.Deserialize<BenchResult>(BenchCommand.JsonOptions) ?? throw new InvalidDataException($"peer printed an unreadable line: {line}");
                Console.WriteLine($"  peer {row.Kernel} {row.Shape} {row.Backend}: {row.MedianMs:F3} ms, {row.Rate:F1} TFLOP/s");
                peer.Add(row);
            });
            // The raw tensors are scratch of this run (gigabytes at 64K): only what this command wrote is removed.
            if (!settings.KeepData) Directory.Delete(options.DataDirectory!, recursive: true);
        }
        BenchCommand.Report(ours, peer, settings.Out);
        if (checks.Count > 0) ReportChecks(checks, settings.Out);
        ReportCriteria(ours, peer);
        int expected = cases.Count(c => options.CheckSeqs.Contains(c.Seq)) * 5;
        if (checks.Count < expected)
        {
            Console.Error.WriteLine($"error: the peer reported {checks.Count} of {expected} checks");
            return 1;
        }
        return checks.All(c => c.Pass) ? 0 : 1;
    }

    private static void ReportChecks(List<CheckResult> checks, string folder)
    {
        var table = new Table().AddColumns("case", "tensor", "ours rel. RMS", "PyTorch rel. RMS", "ours max |err|", "PyTorch max |err|", "max |ref|", "bound", "");
        foreach (var c in checks)
            table.AddRow(Markup.Escape(c.Case), c.Tensor, c.OursRelRms.ToString("E2", CultureInfo.InvariantCulture), $"{c.PeerRelRms:E2} ({c.Peer})",
                c.OursMaxAbs.ToString("E2", CultureInfo.InvariantCulture), c.PeerMaxAbs.ToString("E2", CultureInfo.InvariantCulture),
                c.RefMaxAbs.ToString("E2", CultureInfo.InvariantCulture), Markup.Escape(c.Bound), c.Pass ? "pass" : "[red]FAIL[/]");
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) }).Write(table);
        var json = new JsonSerializerOptions(BenchCommand.JsonOptions) { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
        File.WriteAllText(Path.Combine(folder, "checks.json"), JsonSerializer.Serialize(checks, json));
    }

    /// <summary>The issue's bars: forward and backward against SDPA's causal TFLOP/s; anchor with its tile map against Flex with its compiled block mask.</summary>
    private static void ReportCriteria(List<BenchResult> ours, List<BenchResult> peer)
    {
        if (peer.Count == 0) return;
        Console.WriteLine("against PyTorch (same cases, same inputs):");
        foreach (var r in ours.Where(r => r.Backend == AttentionBench.KernelBackend && r.Shape.StartsWith("causal ", StringComparison.Ordinal)))
            if (peer.FirstOrDefault(p => p.Backend == "sdpa" && p.Kernel == r.Kernel && p.Shape == r.Shape) is { } sdpa)
                Console.WriteLine($"  {r.Kernel,-18} {r.Shape}: {r.Rate:F0} TFLOP/s = {r.Rate / sdpa.Rate:P0} of SDPA's {sdpa.Rate:F0}");
        foreach (var r in ours.Where(r => r.Backend == AttentionBench.Backend && !r.Shape.StartsWith("causal ", StringComparison.Ordinal)))
            if (peer.FirstOrDefault(p => p.Backend == "flex" && p.Kernel == r.Kernel + "+mask" && p.Shape == r.Shape) is { } flex)
                Console.WriteLine($"  {r.Kernel,-18} {r.Shape}: ours with tile map {r.MedianMs:F3} ms, Flex with compiled block mask {flex.MedianMs:F3} ms: {flex.MedianMs / r.MedianMs:F2}× {(flex.MedianMs > r.MedianMs ? "faster" : "SLOWER")}");
    }
}
