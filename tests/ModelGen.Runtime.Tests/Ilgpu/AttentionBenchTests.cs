using ModelGen.Benchmarking;
using ModelGen.Masks;

namespace ModelGen.Tests.Ilgpu;

/// <summary>The cases and work counts of <c>bench-attention</c> (the timing itself needs a GPU).</summary>
public class AttentionBenchTests
{
    [Fact]
    public void Cases_cover_every_length_mask_and_document_mix_once()
    {
        var options = new AttentionBenchOptions { Seqs = [256, 512], Masks = ["causal", "anchor", "intradoc:w64"], MeanDocuments = [32, 128] };
        Assert.Null(options.Validate());
        var cases = AttentionCase.All(options);
        // causal once per length; each document mask once per (length, mean document).
        Assert.Equal(2 * (1 + 2 + 2), cases.Count);
        Assert.Equal(cases.Count, cases.Select(c => c.Shape(options.Heads, options.KvHeads, options.HeadDim)).Distinct().Count());
        Assert.Equal(cases.Count, cases.Select(AttentionBench.CheckName).Distinct().Count());
        foreach (var c in cases)
        {
            Assert.Equal(c.Seq, c.Layout.Length);
            Assert.Equal(c.Mask.Kind != MaskKind.Causal, c.UsesDocuments);
            // The same layouts as modelgen bench and its peer (seeded by the length).
            if (c.UsesDocuments) Assert.Equal(KernelBench.Layout(c.Seq, c.MeanDocument), c.Layout);
        }
        var windowed = cases.First(c => c.MaskName == "intradoc:w64");
        Assert.Equal(64, windowed.Mask.SlidingWindow);
    }

    [Fact]
    public void Work_counts_allowed_pairs_only()
    {
        var causal = AttentionCase.All(new AttentionBenchOptions { Seqs = [1000], Masks = ["causal"] }).Single();
        Assert.Equal(4.0 * 32 * 128 * (1000.0 * 1001 / 2), causal.ForwardFlops(32, 128));
        var anchor = AttentionCase.All(new AttentionBenchOptions { Seqs = [1000], Masks = ["anchor"], MeanDocuments = [100] }).Single();
        long pairs = 0;
        for (int q = 0; q < 1000; q++)
            for (int k = 0; k <= q; k++)
                if (anchor.Mask.Allows(anchor.Layout, q, k)) pairs++;
        Assert.Equal(4.0 * 2 * 64 * pairs, anchor.ForwardFlops(2, 64));
        Assert.True(pairs < 1000 * 1001 / 2 / 3, $"anchor over documents of mean 100 keeps {pairs} pairs");
    }
}
