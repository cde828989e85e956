using System.Diagnostics;
using System.Text.Json;
using ModelGen.Backends.Torch;
using ModelGen.Data;
using ModelGen.Masks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelGen.Training;

/// <summary>One line of <c>metrics.jsonl</c>.</summary>
public sealed record StepMetrics(
    [property: System.Text.Json.Serialization.JsonPropertyName("step")] int Step,
    [property: System.Text.Json.Serialization.JsonPropertyName("loss")] double Loss,
    [property: System.Text.Json.Serialization.JsonPropertyName("lr")] double LearningRate,
    [property: System.Text.Json.Serialization.JsonPropertyName("tokens_per_s")] double TokensPerSecond,
    [property: System.Text.Json.Serialization.JsonPropertyName("elapsed")] double ElapsedSeconds,
    [property: System.Text.Json.Serialization.JsonPropertyName("grad_norm")] double GradNorm);

/// <summary>How a run ended.</summary>
public sealed record TrainingResult(int FirstStep, int LastStep, IReadOnlyList<StepMetrics> Metrics, bool StoppedOnNonFiniteLoss);

/// <summary>
/// Trains a causal LM on packed windows with the chosen mask: AdamW with decoupled weight decay on matrices only,
/// warm-up then cosine or constant learning rate, global-norm clipping, gradient accumulation and optional bf16
/// autocast; deterministic on the CPU for a given seed, and resumable bit for bit from its checkpoint.
/// </summary>
public sealed class Trainer
{
    private readonly CausalLMModule _model;
    private readonly TrainingOptions _options;
    private readonly TrainingData _data;
    private readonly AdamW _optimizer;
    private readonly string _outDirectory;
    private readonly string _tokenizerName;
    private int _step;
    private long _tokensSeen;

    /// <summary>Test hook: return true to replace the loss of a step with NaN.</summary>
    internal Func<int, bool>? InjectNonFiniteLoss { get; set; }

    /// <summary>Called after each optimizer step with its metrics (progress display).</summary>
    public event Action<StepMetrics>? StepCompleted;

    /// <summary>Called with a message when a step is skipped.</summary>
    public event Action<string>? Warning;

    private Trainer(CausalLMModule model, TrainingOptions options, TrainingData data, string outDirectory, string tokenizerName)
    {
        (_model, _options, _data, _outDirectory, _tokenizerName) = (model, options, data, outDirectory, tokenizerName);
        model.Autocast = options.Bf16Autocast ? ScalarType.BFloat16 : null;
        model.train();
        // Decay matrices only (HF Trainer's rule): norm weights and biases are 1-D.
        var decay = model.parameters().Where(p => p.dim() >= 2).ToList();
        var noDecay = model.parameters().Where(p => p.dim() < 2).ToList();
        _optimizer = optim.AdamW([
            new AdamW.ParamGroup(decay, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay, false, false),
            new AdamW.ParamGroup(noDecay, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, 0.0, false, false),
        ], options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay);
    }

    /// <summary>The model being trained.</summary>
    public CausalLMModule Model => _model;

    /// <summary>Optimizer steps completed.</summary>
    public int Step => _step;

    /// <summary>The options in force (a resumed run's are the saved run's, with the new step count).</summary>
    public TrainingOptions Options => _options;

    /// <summary>A fresh run: <paramref name="model"/> as given (seed it before building it), data from its start.</summary>
    public static Trainer Start(CausalLMModule model, TrainingOptions options, IReadOnlyList<PackedWindow> windows, string outDirectory, string tokenizerName)
    {
        // Fix the cosine horizon now, so that extending the run later by resuming keeps the same schedule.
        options = (options with { DecaySteps = options.DecaySteps ?? options.Steps }).Validate(model.Config);
        var trainer = new Trainer(model, options, new TrainingData(windows, options.Seed), outDirectory, tokenizerName);
        string metrics = Path.Combine(outDirectory, "metrics.jsonl");
        Directory.CreateDirectory(outDirectory);
        if (File.Exists(metrics)) File.Delete(metrics);
        return trainer;
    }

    /// <summary>
    /// Continues the run saved in <paramref name="outDirectory"/>: weights, optimizer moments, step, data position and
    /// every option of the saved run except the total <paramref name="steps"/>. Metrics past the checkpoint's step (from
    /// an interrupted run) are dropped from metrics.jsonl so it stays one line per step.
    /// </summary>
    public static Trainer Resume(CausalLMModule model, int steps, IReadOnlyList<PackedWindow> windows, string outDirectory)
    {
        string checkpoint = TrainingCheckpoint.Locate(outDirectory)
            ?? throw new FileNotFoundException($"{outDirectory}: no checkpoint to resume from", Path.Combine(outDirectory, TrainingCheckpoint.FolderName));
        var state = TrainingCheckpoint.ReadState(checkpoint);
        var options = (state.Options with { Steps = steps }).Validate(model.Config);
        var trainer = new Trainer(model, options, new TrainingData(windows, options.Seed, state.Data), outDirectory, state.Tokenizer)
        {
            _step = state.Step,
            _tokensSeen = state.TokensSeen,
        };
        TrainingCheckpoint.Restore(checkpoint, model, trainer._optimizer);
        TrimMetrics(Path.Combine(outDirectory, "metrics.jsonl"), state.Step);
        return trainer;
    }

    /// <summary>Trains until <see cref="TrainingOptions.Steps"/>, saving as configured and at the end.</summary>
    public TrainingResult Run(CancellationToken cancellation = default)
    {
        int first = _step + 1;
        var metrics = new List<StepMetrics>();
        var clock = Stopwatch.StartNew();
        int nonFinite = 0;
        string metricsPath = Path.Combine(_outDirectory, "metrics.jsonl");
        var mask = _options.CustomMask is { } name
            ? AttentionMask.Of(MaskRegistry.Find(name) ?? throw new InvalidOperationException($"mask '{name}' is not declared"))
            : new AttentionMask(_options.Mask, _options.SlidingWindow ?? _model.Config.SlidingWindow);

        while (_step < _options.Steps && !cancellation.IsCancellationRequested)
        {
            int step = _step + 1;
            double lr = _options.LearningRateAt(step);
            foreach (var group in _optimizer.ParamGroups) group.LearningRate = lr;
            var stepClock = Stopwatch.StartNew();
            double loss = 0;
            long tokens = 0;
            _optimizer.zero_grad();
            for (int micro = 0; micro < _options.GradientAccumulation; micro++)
            {
                using var scope = NewDisposeScope();
                var windows = _data.Next(_options.BatchSize);
                var (ids, labels, attention) = Batch(windows, mask);
                var logits = _model.forward(ids, attention);
                var l = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), labels.view(-1), ignore_index: PackedWindow.IgnoreIndex);
                if (InjectNonFiniteLoss?.Invoke(step) == true) l = l * double.NaN;
                (l / _options.GradientAccumulation).backward();
                loss += l.item<float>() / _options.GradientAccumulation;
                tokens += windows.Sum(w => w.Length);
            }

            if (!double.IsFinite(loss))
            {
                nonFinite++;
                _optimizer.zero_grad();
                Warning?.Invoke($"step {step}: loss is {loss}; the update was skipped ({nonFinite} in a row)");
                if (nonFinite >= _options.MaxNonFiniteSteps)
                    return new TrainingResult(first, _step, metrics, StoppedOnNonFiniteLoss: true);
                continue; // the data moved on; the step is retried on the next windows
            }
            nonFinite = 0;
            // Clipping off = an infinite bound: the gradients stay as they are and the norm is still measured.
            double norm = nn.utils.clip_grad_norm_(_model.parameters(), _options.ClipNorm > 0 ? _options.ClipNorm : double.PositiveInfinity);
            _optimizer.step();
            _step = step;
            _tokensSeen += tokens;

            var m = new StepMetrics(step, loss, lr, tokens / stepClock.Elapsed.TotalSeconds, clock.Elapsed.TotalSeconds, norm);
            metrics.Add(m);
            File.AppendAllText(metricsPath, JsonSerializer.Serialize(m) + "\n");
            StepCompleted?.Invoke(m);
            if ((_options.SaveEvery > 0 && step % _options.SaveEvery == 0) || step == _options.Steps) Save();
        }
        return new TrainingResult(first, _step, metrics, StoppedOnNonFiniteLoss: false);
    }

    /// <summary>Saves the current state as the run's checkpoint.</summary>
    public void Save(Action? beforeSwap = null) =>
        TrainingCheckpoint.Save(_outDirectory, _model, _optimizer,
            new TrainerState(_step, _data.Position, _options, _tokenizerName, _tokensSeen), beforeSwap);

    private static (Tensor Ids, Tensor Labels, AttentionInputs Attention) Batch(IReadOnlyList<PackedWindow> windows, AttentionMask mask)
    {
        int b = windows.Count, s = windows[0].Length;
        var ids = new long[b * s];
        var labels = new long[b * s];
        for (int i = 0; i < b; i++)
        {
            windows[i].Tokens.CopyTo(ids, i * s);
            windows[i].Labels.CopyTo(labels, i * s);
        }
        var attention = mask.Kind == MaskKind.Causal && mask.Custom is null
            ? AttentionInputs.Causal(b, s, mask.SlidingWindow)
            : AttentionInputs.Packed(windows.Select(w => w.Layout).ToArray(), mask);
        return (tensor(ids, [b, s]), tensor(labels, [b, s]), attention);
    }

    private static void TrimMetrics(string path, int lastStep)
    {
        if (!File.Exists(path)) return;
        var kept = File.ReadAllLines(path).Where(line =>
        {
            if (string.IsNullOrWhiteSpace(line)) return false;
            try { return JsonDocument.Parse(line).RootElement.GetProperty("step").GetInt32() <= lastStep; }
            catch (JsonException) { return false; } // a line cut by a crash
        }).ToList();
        Checkpoints.AtomicFile.WriteText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }
}
