using ModelGen.Masks;

namespace ModelGen.Tests.Masks;

public class DocumentLayoutTests
{
    [Fact]
    public void Anchored_layout_puts_the_anchor_at_token_0_with_id_0_and_numbers_documents_from_1()
    {
        var layout = DocumentLayout.Anchored(64, 1, 20, 41);
        Assert.Equal(1, layout.AnchorLength);
        Assert.Equal(
            [new DocumentSpan(0, 0, 1), new DocumentSpan(1, 1, 20), new DocumentSpan(2, 20, 41), new DocumentSpan(3, 41, 64)],
            layout.Documents);
    }

    [Fact]
    public void Positions_are_continuous_or_restart_per_document()
    {
        var layout = DocumentLayout.Anchored(8, 1, 4);
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7], layout.PositionIds(resetPerDocument: false));
        Assert.Equal([0, 0, 1, 2, 0, 1, 2, 3], layout.PositionIds(resetPerDocument: true));
    }

    [Fact]
    public void Document_ids_round_trip()
    {
        long[] ids = [0, 1, 1, 2, 3, 3, 3];
        var layout = DocumentLayout.FromDocumentIds(ids);
        Assert.Equal(ids, layout.DocumentIds());
        Assert.Equal(new DocumentSpan(3, 4, 7), layout.DocumentOf(5));
    }

    [Theory]
    [InlineData(new long[] { 1, 1, 2, 1 }, "occurs again at token 3")]
    [InlineData(new long[] { 1, 0, 0 }, "must be a prefix")]
    [InlineData(new long[] { 0, -4 }, "out of range")]
    public void Invalid_document_ids_are_rejected_with_the_offending_token(long[] ids, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => DocumentLayout.FromDocumentIds(ids));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Starts_must_follow_the_anchor_and_increase()
    {
        Assert.Contains("must start at token 1", Assert.Throws<ArgumentException>(() => DocumentLayout.Anchored(10, 2, 5)).Message);
        Assert.Contains("starts must increase", Assert.Throws<ArgumentException>(() => DocumentLayout.Anchored(10, 1, 5, 5)).Message);
        Assert.Contains("starts must increase", Assert.Throws<ArgumentException>(() => DocumentLayout.Anchored(10, 1, 12)).Message);
    }
}

public class AttentionMaskTests
{
    /// <summary>The definition from the paper, written out once.</summary>
    private static bool Reference(MaskKind kind, int? window, long[] doc, int q, int k) =>
        k <= q && (window is not { } w || q - k < w) && kind switch
        {
            MaskKind.Causal => true,
            MaskKind.IntraDocument or MaskKind.IntraDocumentReset => doc[k] == doc[q],
            MaskKind.Anchor => doc[k] == doc[q] || doc[k] == 0,
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };

    public static IEnumerable<object[]> RandomLayouts()
    {
        var random = new Random(1234);
        for (int n = 0; n < 40; n++)
        {
            int length = random.Next(1, 90);
            var starts = new SortedSet<int> { 1 };
            int docs = random.Next(0, 8);
            for (int d = 0; d < docs; d++) starts.Add(random.Next(1, Math.Max(2, length)));
            starts.RemoveWhere(s => s >= length);
            yield return [length, starts.ToArray(), random.Next(0, 3) == 0 ? random.Next(1, 20) : 0];
        }
    }

    [Theory]
    [MemberData(nameof(RandomLayouts))]
    public void Predicate_and_pair_count_match_the_paper_definition(int length, int[] starts, int window)
    {
        var layout = starts.Length == 0 || length == 1 ? DocumentLayout.FromStarts(length, 1, []) : DocumentLayout.Anchored(length, starts);
        long[] doc = layout.DocumentIds();
        foreach (MaskKind kind in Enum.GetValues<MaskKind>())
        {
            var mask = new AttentionMask(kind, window > 0 ? window : null);
            long pairs = 0;
            for (int q = 0; q < length; q++)
                for (int k = 0; k < length; k++)
                {
                    bool want = Reference(kind, mask.SlidingWindow, doc, q, k);
                    Assert.Equal(want, mask.Allows(layout, q, k));
                    if (want) pairs++;
                }
            Assert.Equal(pairs, mask.AllowedPairs(layout));
        }
    }

    [Fact]
    public void Anchor_pairs_follow_the_sum_of_squared_document_lengths()
    {
        var layout = DocumentLayout.Anchored(4097, 1, 1025, 2049, 3073);
        long pairs = new AttentionMask(MaskKind.Anchor).AllowedPairs(layout);
        long expected = 1 + 4 * (1024L * 1025 / 2 + 1024);
        Assert.Equal(expected, pairs);
        Assert.True(pairs < new AttentionMask(MaskKind.Causal).AllowedPairs(layout) / 3);
    }
}
