using ModelGen.Backends.Torch;
using ModelGen.Masks;
using ModelGen.Models;
using static TorchSharp.torch;

namespace ModelGen.Tests.Masks;

/// <summary>
/// The declared example masks (Models/Masks.cs) and the term algebra they compile to, against brute force: element
/// predicates against hand-written specifications, tile classifiers and pair counts against pair-by-pair evaluation on
/// random layouts and lengths (most not multiples of the tile sizes), and the tiled TorchSharp path against dense attention.
/// </summary>
public class DeclaredMaskTests
{
    /// <summary>Each example mask's meaning, written out independently of its expression.</summary>
    public static readonly Dictionary<string, Func<DocumentLayout, int, int, bool>> Specifications = new()
    {
        ["anchor-sliding-window"] = (l, q, k) => k <= q && ((Doc(l, q) == Doc(l, k) && q - k < 64) || k < l.AnchorLength),
        ["prefix-lm-anchor"] = (l, q, k) => (q < 64 && k < 64) || (k <= q && (Doc(l, q) == Doc(l, k) || k < l.AnchorLength)),
        ["anchor-document-head"] = (l, q, k) => k <= q && (k < l.AnchorLength || (Doc(l, q) == Doc(l, k) && k - l.DocumentOf(k).Start < 16)),
        ["strided-anchor"] = (l, q, k) => k <= q && (k < l.AnchorLength || (Doc(l, q) == Doc(l, k) && (q - k) % 4 == 0)),
    };

    private static int Doc(DocumentLayout layout, int token) => layout.IndexOf(token);

    public static IEnumerable<object[]> Names() => Specifications.Keys.Select(n => new object[] { n });

    /// <summary>Random layouts: 1–300 tokens, anchors of 0–3 tokens, 0–12 documents (seeded).</summary>
    public static IEnumerable<DocumentLayout> RandomLayouts(int seed, int count, int maxLength = 300)
    {
        var random = new Random(seed);
        for (int n = 0; n < count; n++)
        {
            int length = random.Next(1, maxLength + 1);
            int anchor = Math.Min(length, random.Next(0, 4));
            if (anchor == length) { yield return DocumentLayout.FromStarts(length, anchor, []); continue; }
            var starts = new SortedSet<int> { anchor };
            int docs = random.Next(0, 12);
            for (int d = 0; d < docs; d++) starts.Add(random.Next(anchor, length));
            yield return DocumentLayout.FromStarts(length, anchor, starts.ToArray());
        }
    }

    private static readonly int[] TileSizes = [1, 3, 7, 16, 32, 64];

    [Fact]
    public void The_catalog_lists_and_registers_every_example()
    {
        Assert.Equal(Specifications.Keys.Order(), MaskCatalog.All.Select(m => m.Name).Order());
        foreach (var mask in MaskCatalog.All) Assert.Same(mask, MaskRegistry.Find(mask.Name));
        Assert.True(MaskCatalog.Find("anchor-sliding-window")!.IsAnalytic);
        Assert.True(MaskCatalog.Find("prefix-lm-anchor")!.IsAnalytic);
        Assert.True(MaskCatalog.Find("anchor-document-head")!.IsAnalytic);
        Assert.False(MaskCatalog.Find("strided-anchor")!.IsAnalytic);
        Assert.Equal(typeof(AnchorSlidingWindow), MaskCatalog.Find("ANCHOR-SLIDING-WINDOW")!.MaskType);
    }

    [Fact]
    public void Row_spans_are_exactly_the_allowed_keys_when_exact_and_exact_for_every_head_free_mask_of_at_most_two_terms()
    {
        var random = new Random(77);
        int exactMasks = 0;
        foreach (var layout in RandomLayouts(seed: 12, count: 60, maxLength: 160))
        {
            var docs = new HostDocuments(layout);
            var terms = RandomTerms(random);
            bool headFree = Enumerable.Range(0, terms.Count).All(i => terms.Term(i).Head == MaskTerm.None);
            for (int q = 0; q < layout.Length; q++)
            {
                var spans = terms.Spans(docs, q, layout.IndexOf(q));
                Assert.Equal(terms.Count <= 2 && headFree, spans.Exact);
                if (!spans.Exact) continue;
                for (int k = 0; k < layout.Length; k++)
                    Assert.True(terms.Allows(docs, q, k, layout.IndexOf(q), layout.IndexOf(k)) == spans.Contains(k),
                        $"{layout} q={q} k={k}: spans [{spans.Lo0},{spans.Hi0}) ∪ [{spans.Lo1},{spans.Hi1}) with {terms.Count} terms");
            }
            if (terms.Count <= 2 && headFree) exactMasks++;
        }
        Assert.True(exactMasks >= 10, $"only {exactMasks} random masks had spans");
        // Every standard mask has them.
        foreach (MaskKind kind in Enum.GetValues<MaskKind>())
            Assert.True(new AttentionMask(kind, 5).StandardTerms().Spans(new HostDocuments(DocumentLayout.Anchored(20, 1, 9)), 12, 2).Exact, kind.ToString());
    }

    [Fact]
    public void The_anchor_mask_is_its_intra_document_part_plus_the_anchor_column()
    {
        // The flash backward computes the anchor key apart on this identity (AnchorKernels): every allowed pair is either
        // intra-document or (q after the anchor, k in it, within the window), never both.
        foreach (int window in new[] { MaskTerm.None, 40 })
        {
            var anchor = MaskTerms.Document(anchor: true, window);
            Assert.True(anchor.WithoutAnchor(out var documents, out int w));
            Assert.Equal(window, w);
            foreach (var layout in RandomLayouts(seed: 31, count: 30, maxLength: 160).Where(l => l.AnchorLength > 0))
            {
                var docs = new HostDocuments(layout);
                int a = layout.AnchorLength;
                for (int q = 0; q < layout.Length; q++)
                    for (int k = 0; k < layout.Length; k++)
                    {
                        bool intra = documents.Allows(docs, q, k, Doc(layout, q), Doc(layout, k));
                        bool column = k < a && q >= a && (long)q - k < window;
                        Assert.False(intra && column, $"{layout} q={q} k={k} counted twice");
                        Assert.True(anchor.Allows(docs, q, k, Doc(layout, q), Doc(layout, k)) == (intra || column), $"{layout} window {window}: q={q} k={k}");
                    }
            }
        }
        // Anything else keeps its anchor pairs in the tiled kernels.
        Assert.False(MaskTerms.Document(anchor: false).WithoutAnchor(out _, out _));
        Assert.False(MaskTerms.Causal().WithoutAnchor(out _, out _));
        var headBounded = new MaskTerms(new MaskTerm(MaskParts.Causal | MaskParts.Document, head: 16), new MaskTerm(MaskParts.Causal | MaskParts.Anchor));
        Assert.False(headBounded.WithoutAnchor(out _, out _));
        var windows = new MaskTerms(new MaskTerm(MaskParts.Causal | MaskParts.Document, 64), new MaskTerm(MaskParts.Causal | MaskParts.Anchor));
        Assert.False(windows.WithoutAnchor(out _, out _));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Predicate_and_tile_classifier_agree_with_brute_force_on_random_layouts(string name)
    {
        var mask = AttentionMask.Of(MaskCatalog.Find(name)!);
        var spec = Specifications[name];
        var random = new Random(name.Length);
        foreach (var layout in RandomLayouts(seed: 7 + name.Length, count: 40))
        {
            for (int q = 0; q < layout.Length; q++)
                for (int k = 0; k < layout.Length; k++)
                    Assert.True(spec(layout, q, k) == mask.Allows(layout, q, k), $"{name} {layout}: ({q}, {k})");

            int tileQ = TileSizes[random.Next(TileSizes.Length)], tileK = TileSizes[random.Next(TileSizes.Length)];
            var map = TileMap.Build(layout, mask, tileQ, tileK);
            for (int qt = 0; qt < map.QueryTiles; qt++)
                for (int kt = 0; kt < map.KeyTiles; kt++)
                {
                    var want = BruteForceTiles.Classify((q, k) => spec(layout, q, k), layout.Length, tileQ, tileK, qt, kt);
                    Assert.True(want == map[qt, kt], $"{name} {layout} tile ({qt},{kt}) of {tileQ}×{tileK}: {map[qt, kt]}, brute force {want}");
                }

            long pairs = 0;
            for (int q = 0; q < layout.Length; q++)
                for (int k = 0; k < layout.Length; k++)
                    if (spec(layout, q, k)) pairs++;
            Assert.Equal(pairs, mask.AllowedPairs(layout));
        }
    }

    /// <summary>A random term over every part: flags and bounds small enough to bite on short windows.</summary>
    private static MaskTerm RandomTerm(Random random) => new(
        (MaskParts)random.Next(0, 8),
        random.Next(3) == 0 ? random.Next(1, 40) : MaskTerm.None,
        random.Next(4) == 0 ? random.Next(1, 80) : MaskTerm.None,
        random.Next(4) == 0 ? random.Next(1, 20) : MaskTerm.None);

    private static MaskTerms RandomTerms(Random random) => random.Next(1, 5) switch
    {
        1 => new(RandomTerm(random)),
        2 => new(RandomTerm(random), RandomTerm(random)),
        3 => new(RandomTerm(random), RandomTerm(random), RandomTerm(random)),
        _ => new(RandomTerm(random), RandomTerm(random), RandomTerm(random), RandomTerm(random)),
    };

    [Fact]
    public void Pair_counts_of_random_term_combinations_are_exact_on_random_rectangles()
    {
        var random = new Random(2024);
        foreach (var layout in RandomLayouts(seed: 11, count: 60, maxLength: 160))
        {
            var docs = new HostDocuments(layout);
            var terms = RandomTerms(random);
            for (int trial = 0; trial < 30; trial++)
            {
                int q0 = random.Next(layout.Length), q1 = random.Next(q0 + 1, layout.Length + 1);
                int k0 = random.Next(layout.Length), k1 = random.Next(k0 + 1, layout.Length + 1);
                long want = 0;
                for (int q = q0; q < q1; q++)
                    for (int k = k0; k < k1; k++)
                        if (terms.Allows(docs, q, k, layout.IndexOf(q), layout.IndexOf(k))) want++;
                Assert.True(want == terms.CountAllowed(docs, q0, q1, k0, k1), $"{layout} [{q0},{q1})×[{k0},{k1}) with {terms.Count} terms");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Tiled_torch_attention_matches_dense_attention(string name)
    {
        var mask = AttentionMask.Of(MaskCatalog.Find(name)!);
        var spec = Specifications[name];
        int index = 0;
        foreach (int length in new[] { 37, 130, 200 })
        {
            var layouts = RandomLayouts(seed: 100 * length + name.Length, count: 2, maxLength: length)
                .Select(l => l.Length == length ? l : DocumentLayout.FromStarts(length, 1, [1, Math.Max(1, length / 3), Math.Max(2, 2 * length / 3)]))
                .ToArray();
            using var scope = NewDisposeScope();
            manual_seed(index++);
            var q = randn(2, 2, length, 16);
            var k = randn(2, 2, length, 16);
            var v = randn(2, 2, length, 16);
            var got = PackedAttention.Forward(q, k, v, AttentionInputs.Packed(layouts, mask));

            var allowed = new bool[2 * length * length];
            for (int b = 0; b < 2; b++)
                for (int i = 0; i < length; i++)
                    for (int j = 0; j < length; j++)
                        allowed[(b * length + i) * length + j] = spec(layouts[b], i, j);
            var m = tensor(allowed, [2, 1, length, length]);
            var scores = matmul(q, k.transpose(2, 3)) / Math.Sqrt(16);
            var weights = nn.functional.softmax(scores.masked_fill(m.logical_not(), double.NegativeInfinity), -1).nan_to_num(0);
            var want = matmul(weights, v);
            double error = (got - want).abs().max().item<float>();
            Assert.True(error < 1e-5, $"{name} L={length}: max abs error {error}");
        }
    }
}
