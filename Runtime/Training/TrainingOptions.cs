namespace ModelGen.Training;

/// <summary>Learning-rate schedule after warm-up.</summary>
public enum LearningRateSchedule
{
    /// <summary>Cosine decay from the peak to <see cref="TrainingOptions.MinLearningRateRatio"/> × peak.</summary>
    Cosine,
    /// <summary>Constant at the peak.</summary>
    Constant,
}

/// <summary>
/// Every knob of a training run. Optimizer defaults are the paper's (AdamW, lr 2e-5, β 0.9/0.95, weight decay
/// 0.1 — TorchSharp's own AdamW default decay is 0, so it is always passed explicitly).
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Total optimizer steps of the run (a resumed run continues up to this count).</summary>
    public int Steps { get; init; } = 100;
    /// <summary>Window length L.</summary>
    public int SequenceLength { get; init; } = 512;
    /// <summary>Windows per micro-batch.</summary>
    public int BatchSize { get; init; } = 1;
    /// <summary>Micro-batches accumulated per optimizer step.</summary>
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 2e-5;
    /// <summary>AdamW β1.</summary>
    public double Beta1 { get; init; } = 0.9;
    /// <summary>AdamW β2.</summary>
    public double Beta2 { get; init; } = 0.95;
    /// <summary>AdamW ε.</summary>
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>Decoupled weight decay on matrices (norm weights and biases are not decayed).</summary>
    public double WeightDecay { get; init; } = 0.1;
    /// <summary>Linear warm-up steps.</summary>
    public int WarmupSteps { get; init; }
    /// <summary>Schedule after warm-up (constant by default, so a run extended by resuming matches a longer run).</summary>
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Constant;
    /// <summary>Step at which the cosine reaches its floor; null = <see cref="Steps"/> of the run's start.</summary>
    public int? DecaySteps { get; init; }
    /// <summary>Floor of the cosine schedule, as a fraction of the peak.</summary>
    public double MinLearningRateRatio { get; init; } = 0.1;
    /// <summary>Gradient clipping by global norm; 0 = off.</summary>
    public double ClipNorm { get; init; } = 1.0;
    /// <summary>Attention mask of the packed windows.</summary>
    public MaskKind Mask { get; init; } = MaskKind.Anchor;
    /// <summary>The name of a declared mask (<see cref="Masks.MaskRegistry"/>) to train with instead of <see cref="Mask"/>; null for none.</summary>
    public string? CustomMask { get; init; }
    /// <summary>Sliding window for Mistral-style models; null = the model's own.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Take no loss where one document's last token predicts the next document's first.</summary>
    public bool MaskBoundaryLoss { get; init; }
    /// <summary>Run projections and attention in bf16 with fp32 master weights (what torch.autocast does).</summary>
    public bool Bf16Autocast { get; init; }
    /// <summary>Seed of the initialization and the data order.</summary>
    public int Seed { get; init; } = 1234;
    /// <summary>Save a checkpoint every this many steps (and at the end); 0 = only at the end.</summary>
    public int SaveEvery { get; init; } = 50;
    /// <summary>Consecutive steps with a non-finite loss after which the run stops.</summary>
    public int MaxNonFiniteSteps { get; init; } = 3;

    /// <summary>Throws naming the option for values a run cannot use.</summary>
    public TrainingOptions Validate(ModelConfig model)
    {
        static void Positive(string name, double v) { if (!(v > 0)) throw new ArgumentException($"--{name} must be positive, got {v}"); }
        Positive("steps", Steps);
        Positive("batch", BatchSize);
        Positive("accum", GradientAccumulation);
        Positive("lr", LearningRate);
        if (SequenceLength < 2) throw new ArgumentException($"--seq must be at least 2, got {SequenceLength}");
        if (SequenceLength > model.MaxPositions)
            throw new ArgumentException($"--seq {SequenceLength} is longer than the model's maximum context (max_position_embeddings = {model.MaxPositions})");
        if (WarmupSteps < 0) throw new ArgumentException($"--warmup must be ≥ 0, got {WarmupSteps}");
        if (WeightDecay < 0) throw new ArgumentException($"--wd must be ≥ 0, got {WeightDecay}");
        if (ClipNorm < 0) throw new ArgumentException($"--clip must be ≥ 0, got {ClipNorm}");
        if (SlidingWindow is { } w && w <= 0) throw new ArgumentException($"--window must be positive, got {w}");
        if (CustomMask is { } name && Masks.MaskRegistry.Find(name) is null)
            throw new ArgumentException($"--mask '{name}' is not a declared mask (declared: {string.Join(", ", Masks.MaskRegistry.All.Select(m => m.Name))})");
        if (Schedule == LearningRateSchedule.Cosine && DecaySteps is { } d && d <= WarmupSteps) throw new ArgumentException($"--decay-steps must exceed --warmup ({WarmupSteps}), got {d}");
        if (SaveEvery < 0) throw new ArgumentException($"--save-every must be ≥ 0, got {SaveEvery}");
        return this;
    }

    /// <summary>The learning rate at optimizer step <paramref name="step"/> (1-based).</summary>
    public double LearningRateAt(int step)
    {
        if (WarmupSteps > 0 && step <= WarmupSteps) return LearningRate * step / WarmupSteps;
        if (Schedule == LearningRateSchedule.Constant) return LearningRate;
        int decaySteps = Math.Max(1, (DecaySteps ?? Steps) - WarmupSteps);
        double progress = Math.Clamp((step - WarmupSteps) / (double)decaySteps, 0, 1);
        double min = LearningRate * MinLearningRateRatio;
        return min + (LearningRate - min) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
