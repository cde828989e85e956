using System.Diagnostics;
using System.Globalization;
using ModelGen.Backends.Torch;
using ModelGen.Masks;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Benchmarks;

/// <summary>
/// One training step (forward, loss, backward, AdamW) of the same model on the same packed window under the anchor mask
/// and under full causal attention, plus the attention alone, on the CPU. Prints times, the measured ratio and the ratio
/// the mask density predicts.
/// </summary>
public static class TrainingStepBenchmark
{
    private static readonly ModelConfig Model = new()
    {
        Family = "llama", Layers = 2, Hidden = 512, Heads = 8, KvHeads = 8, HeadDim = 64, Intermediate = 1024, Vocab = 4096,
        MaxPositions = 16384,
    };

    public static void Run(int[] lengths, int repeats, double meanDocument)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        Console.WriteLine($"model: llama {Model.Layers} layers, hidden {Model.Hidden}, {Model.Heads} heads × {Model.HeadDim}, vocab {Model.Vocab}; threads {torch.get_num_threads()}");
        Console.WriteLine($"documents: log-normal lengths, mean {meanDocument}, σ 1; median of {repeats} timed steps after 1 warm-up");
        Console.WriteLine();
        Console.WriteLine("| L | docs | mask density | attention full (s) | attention anchor (s) | ratio | step full (s) | step anchor (s) | ratio | predicted step ratio | measured / predicted |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (int length in lengths)
        {
            var layout = LogNormalLayouts.Create(length, meanDocument, new Random(length));
            double density = (double)new AttentionMask(MaskKind.Anchor).AllowedPairs(layout) / new AttentionMask(MaskKind.Causal).AllowedPairs(layout);
            double attnFull = TimeAttention(layout, MaskKind.Causal, repeats);
            double attnAnchor = TimeAttention(layout, MaskKind.Anchor, repeats);
            double stepFull = TimeStep(layout, MaskKind.Causal, repeats);
            double stepAnchor = TimeStep(layout, MaskKind.Anchor, repeats);
            // Same model, same tokens: only attention differs. Its full-causal time, scaled by the density, predicts the step.
            double attentionShare = attnFull * Model.Layers;
            double predicted = stepFull / (stepFull - attentionShare * (1 - density));
            double measured = stepFull / stepAnchor;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {length} | {layout.Documents.Count - 1} | {density:F3} | {attnFull:F3} | {attnAnchor:F3} | {attnFull / attnAnchor:F2}× | {stepFull:F2} | {stepAnchor:F2} | {measured:F2}× | {predicted:F2}× | {measured / predicted:F2} |"));
        }
    }

    /// <summary>Forward + backward of one attention layer's core (q, k, v given), B = 1.</summary>
    private static double TimeAttention(DocumentLayout layout, MaskKind kind, int repeats)
    {
        random.manual_seed(1);
        var q = randn(1, Model.Heads, layout.Length, Model.HeadDim).requires_grad_();
        var k = randn(1, Model.KvHeads, layout.Length, Model.HeadDim).requires_grad_();
        var v = randn(1, Model.KvHeads, layout.Length, Model.HeadDim).requires_grad_();
        var inputs = kind == MaskKind.Causal ? AttentionInputs.Causal(1, layout.Length) : AttentionInputs.Packed([layout], new AttentionMask(kind));
        return Median(repeats, () =>
        {
            using var scope = NewDisposeScope();
            PackedAttention.Forward(q, k, v, inputs).sum().backward();
        });
    }

    private static double TimeStep(DocumentLayout layout, MaskKind kind, int repeats)
    {
        random.manual_seed(1);
        var model = new CausalLMModule(Model);
        model.train();
        var optimizer = optim.AdamW(model.parameters(), 1e-4, 0.9, 0.95, 1e-8, 0.1);
        var ids = randint(3, Model.Vocab, [1, layout.Length], dtype: ScalarType.Int64);
        var inputs = kind == MaskKind.Causal ? AttentionInputs.Causal(1, layout.Length) : AttentionInputs.Packed([layout], new AttentionMask(kind));
        return Median(repeats, () =>
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var logits = model.forward(ids, inputs);
            var loss = nn.functional.cross_entropy(logits[0, TensorIndex.Slice(0, -1)], ids[0, TensorIndex.Slice(1, null)]);
            loss.backward();
            optimizer.step();
        });
    }

    private static double Median(int repeats, Action action)
    {
        action(); // warm-up
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            times[i] = clock.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return times[repeats / 2];
    }
}
