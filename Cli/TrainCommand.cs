using System.ComponentModel;
using System.Globalization;
using ModelGen.Backends.Torch;
using ModelGen.Data;
using ModelGen.Training;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace ModelGen.Cli;

/// <summary><c>modelgen train</c>: AnchorAttention (or a baseline mask) training on packed windows.</summary>
public sealed class TrainCommand : Command<TrainCommand.Settings>
{
    /// <summary>Arguments of <c>train</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Model to train.</summary>
        [CommandOption("--model <NAME|DIR>")]
        [Description("A declared preset (TinyLlama, MicroLlama, MicroMistral, MicroQwen2) trained from scratch, or an HF checkpoint folder to continue. Default TinyLlama.")]
        public string Model { get; init; } = "TinyLlama";

        /// <summary>Corpus folder or file.</summary>
        [CommandOption("--corpus <PATH>")]
        [Description("Folder of .txt/.jsonl files (or one file). Default: the embedded Python Language Reference topics.")]
        public string? Corpus { get; init; }

        /// <summary>Output folder.</summary>
        [CommandOption("--out <DIR>")]
        [Description("Where metrics.jsonl and checkpoint/ go. Default runs/train.")]
        public string? Out { get; init; }

        /// <summary>Resume the run in this folder.</summary>
        [CommandOption("--resume <DIR>")]
        [Description("Continue the run saved in DIR (its checkpoint, data position and metrics.jsonl) up to --steps total.")]
        public string? Resume { get; init; }

        /// <summary>Total steps.</summary>
        [CommandOption("--steps <N>")] [Description("Total optimizer steps (default 100).")] public int Steps { get; init; } = 100;
        /// <summary>Window length.</summary>
        [CommandOption("--seq <L>")] [Description("Window length L (default 512).")] public int Seq { get; init; } = 512;
        /// <summary>Windows per micro-batch.</summary>
        [CommandOption("--batch <N>")] [Description("Windows per micro-batch (default 1).")] public int Batch { get; init; } = 1;
        /// <summary>Accumulation.</summary>
        [CommandOption("--accum <N>")] [Description("Micro-batches per step (default 1).")] public int Accum { get; init; } = 1;
        /// <summary>Mask.</summary>
        [CommandOption("--mask <KIND>")] [Description("full | intradoc | intradoc-reset | anchor (default anchor), or a declared mask: anchor-sliding-window, prefix-lm-anchor, anchor-document-head, strided-anchor.")] public string Mask { get; init; } = "anchor";
        /// <summary>Sliding window.</summary>
        [CommandOption("--window <W>")] [Description("Sliding attention window (Mistral-style); default: the model's.")] public int? Window { get; init; }
        /// <summary>Peak learning rate.</summary>
        [CommandOption("--lr <LR>")] [Description("Peak learning rate. Default 1e-3 for a preset from scratch, the paper's 2e-5 for a checkpoint.")] public double? Lr { get; init; }
        /// <summary>Warm-up.</summary>
        [CommandOption("--warmup <N>")] [Description("Linear warm-up steps (default 10).")] public int Warmup { get; init; } = 10;
        /// <summary>Schedule.</summary>
        [CommandOption("--schedule <NAME>")] [Description("constant | cosine (default constant, after warm-up).")] public string Schedule { get; init; } = "constant";
        /// <summary>Cosine horizon.</summary>
        [CommandOption("--decay-steps <N>")] [Description("Step where the cosine reaches its floor (default: --steps of the run's start).")] public int? DecaySteps { get; init; }
        /// <summary>Weight decay.</summary>
        [CommandOption("--wd <W>")] [Description("AdamW weight decay (default 0.1, the paper's).")] public double WeightDecay { get; init; } = 0.1;
        /// <summary>Clip norm.</summary>
        [CommandOption("--clip <NORM>")] [Description("Gradient clipping by global norm, 0 = off (default 1).")] public double Clip { get; init; } = 1.0;
        /// <summary>bf16 autocast.</summary>
        [CommandOption("--bf16")] [Description("Projections and attention in bf16 with fp32 master weights.")] public bool Bf16 { get; init; }
        /// <summary>Boundary loss masking.</summary>
        [CommandOption("--mask-boundary-loss")] [Description("No loss where a document's last token predicts the next document.")] public bool MaskBoundaryLoss { get; init; }
        /// <summary>Seed.</summary>
        [CommandOption("--seed <N>")] [Description("Seed of initialization and data order (default 1234).")] public int Seed { get; init; } = 1234;
        /// <summary>Save interval.</summary>
        [CommandOption("--save-every <N>")] [Description("Checkpoint every N steps and at the end (default 50; 0 = end only).")] public int SaveEvery { get; init; } = 50;
        /// <summary>Plain output.</summary>
        [CommandOption("--plain")] [Description("One log line per step instead of a progress bar.")] public bool Plain { get; init; }

        /// <inheritdoc/>
        public override ValidationResult Validate()
        {
            if (!MaskNames.TryParse(Mask, out _) && Models.MaskCatalog.Find(Mask) is null)
                return ValidationResult.Error($"--mask '{Mask}' is not one of {MaskNames.Choices} nor a declared mask ({string.Join(", ", Models.MaskCatalog.All.Select(m => m.Name))})");
            if (Schedule is not ("cosine" or "constant")) return ValidationResult.Error($"--schedule '{Schedule}' is not cosine or constant");
            if (Out is not null && Resume is not null && Path.GetFullPath(Out) != Path.GetFullPath(Resume))
                return ValidationResult.Error("--out and --resume name different folders; a resumed run writes where it was saved");
            return ValidationResult.Success();
        }
    }

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        string outDir = s.Resume ?? s.Out ?? Path.Combine("runs", "train");
        var (model, tokenizer, fromScratch, modelName) = BuildModel(s, outDir);
        var options = new TrainingOptions
        {
            Steps = s.Steps,
            SequenceLength = s.Seq,
            BatchSize = s.Batch,
            GradientAccumulation = s.Accum,
            LearningRate = s.Lr ?? (fromScratch ? 1e-3 : 2e-5),
            WarmupSteps = s.Warmup,
            Schedule = s.Schedule == "constant" ? LearningRateSchedule.Constant : LearningRateSchedule.Cosine,
            DecaySteps = s.DecaySteps,
            WeightDecay = s.WeightDecay,
            ClipNorm = s.Clip,
            Mask = MaskNames.TryParse(s.Mask, out var kind) ? kind : default,
            CustomMask = MaskNames.TryParse(s.Mask, out _) ? null : Models.MaskCatalog.Find(s.Mask)?.Name,
            SlidingWindow = s.Window,
            MaskBoundaryLoss = s.MaskBoundaryLoss,
            Bf16Autocast = s.Bf16,
            Seed = s.Seed,
            SaveEvery = s.SaveEvery,
        }.Validate(model.Config);

        var documents = s.Corpus is null ? TextCorpus.LoadDefault() : TextCorpus.Load(s.Corpus);
        var windows = TrainingData.Pack(documents, tokenizer, model.Config, options.SequenceLength, options.MaskBoundaryLoss);
        if (windows.Count == 0)
            throw new InvalidDataException($"{s.Corpus ?? TextCorpus.DefaultName}: {documents.Count} document(s) give fewer than {options.SequenceLength} tokens, not one full window");

        var trainer = s.Resume is null
            ? Trainer.Start(model, options, windows, outDir, tokenizer.Name)
            : Trainer.Resume(model, options.Steps, windows, outDir);
        options = trainer.Options;
        Console.WriteLine($"model: {modelName} ({model.Config.ParameterCount().ToString("N0", CultureInfo.InvariantCulture)} parameters), tokenizer: {tokenizer.Name}");
        Console.WriteLine($"data: {s.Corpus ?? TextCorpus.DefaultName}: {documents.Count} documents → {windows.Count} windows of {options.SequenceLength}; mask {options.CustomMask ?? options.Mask.ToString()}");
        Console.WriteLine($"optimizer: AdamW lr {options.LearningRate.ToString("G3", CultureInfo.InvariantCulture)} β ({options.Beta1}, {options.Beta2}) wd {options.WeightDecay}, {options.Schedule} after {options.WarmupSteps} warm-up steps{(options.Bf16Autocast ? ", bf16 autocast" : "")}");
        if (s.Resume is not null) Console.WriteLine($"resuming at step {trainer.Step + 1} of {options.Steps}");
        trainer.Warning += message => Console.Error.WriteLine($"warning: {message}");

        var result = s.Plain || Console.IsOutputRedirected ? RunPlain(trainer) : RunWithProgress(trainer, options, cancellationToken);
        if (result.StoppedOnNonFiniteLoss)
        {
            Console.Error.WriteLine($"error: the loss was not finite for {options.MaxNonFiniteSteps} steps in a row; stopped at step {result.LastStep}. The last good checkpoint in {outDir} was kept.");
            return 1;
        }
        if (result.Metrics.Count >= 2)
        {
            int n = Math.Min(10, result.Metrics.Count / 2);
            double head = result.Metrics.Take(n).Average(m => m.Loss), tail = result.Metrics.TakeLast(n).Average(m => m.Loss);
            Console.WriteLine($"loss: first {n} steps {head:F4} → last {n} steps {tail:F4}");
        }
        Console.WriteLine($"checkpoint: {Path.Combine(outDir, TrainingCheckpoint.FolderName)} (step {trainer.Step}); metrics: {Path.Combine(outDir, "metrics.jsonl")}");
        return 0;
    }

    private static TrainingResult RunPlain(Trainer trainer)
    {
        trainer.StepCompleted += m => Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"step {m.Step,5}  loss {m.Loss,8:F4}  lr {m.LearningRate,9:E2}  {m.TokensPerSecond,8:F0} tok/s  {m.ElapsedSeconds,6:F1}s"));
        return trainer.Run();
    }

    private static TrainingResult RunWithProgress(Trainer trainer, TrainingOptions options, CancellationToken cancellation)
    {
        TrainingResult? result = null;
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: options.Steps);
                task.Value = trainer.Step;
                trainer.StepCompleted += m =>
                {
                    task.Value = m.Step;
                    task.Description = string.Create(CultureInfo.InvariantCulture, $"step {m.Step} loss {m.Loss:F3} lr {m.LearningRate:E1} {m.TokensPerSecond:F0} tok/s");
                };
                result = trainer.Run(cancellation);
            });
        return result!;
    }

    private static (CausalLMModule, TextTokenizer, bool FromScratch, string Name) BuildModel(Settings s, string outDir)
    {
        if (s.Resume is not null)
        {
            if (TrainingCheckpoint.Locate(s.Resume) is null) throw new DirectoryNotFoundException($"{s.Resume}: no checkpoint to resume from");
            var (checkpoint, config, model, saved) = LoadedModel.Open(s.Resume);
            var tokenizer = saved ?? throw new FileNotFoundException($"{checkpoint}: the run's tokenizer cannot be found");
            tokenizer.RequireFits(config, Path.Combine(checkpoint, "config.json"));
            return (model, tokenizer, false, $"{config.Family} from {checkpoint}");
        }
        if (Directory.Exists(s.Model))
        {
            var (_, config, model, saved) = LoadedModel.Open(s.Model);
            var tokenizer = saved ?? TextTokenizer.Gpt2();
            tokenizer.RequireFits(config, Path.Combine(s.Model, "config.json"));
            return (model, tokenizer, false, $"{config.Family} from {s.Model}");
        }
        var declaration = Models.ModelCatalog.All.FirstOrDefault(d => !d.IsFamily && string.Equals(d.Name, s.Model, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"--model '{s.Model}' is neither a checkpoint folder nor a preset (presets: {string.Join(", ", Models.ModelCatalog.All.Where(d => !d.IsFamily).Select(d => d.Name))})");
        var gpt2 = TextTokenizer.Gpt2();
        gpt2.RequireFits(declaration.Declared, $"preset {declaration.Name}");
        random.manual_seed(s.Seed);
        return (declaration.CreateTorchModel(declaration.Declared), gpt2, true, declaration.Name);
    }
}
