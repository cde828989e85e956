namespace ModelGen.Masks;

/// <summary>
/// A mask over a packed window: its kind, an optional sliding window, and the element predicate.
/// The predicate is the specification the fast paths are tested against; the hot path never evaluates it L×L.
/// </summary>
public readonly record struct AttentionMask(MaskKind Kind, int? SlidingWindow = null)
{
    /// <summary>Whether RoPE positions restart in each document.</summary>
    public bool ResetsPositions => Kind == MaskKind.IntraDocumentReset;

    /// <summary>Whether query <paramref name="q"/> may attend key <paramref name="k"/>.</summary>
    public bool Allows(DocumentLayout layout, int q, int k)
    {
        if (k > q) return false;
        if (SlidingWindow is { } w && q - k >= w) return false;
        if (Kind == MaskKind.Causal) return true;
        var dq = layout.DocumentOf(q);
        if (dq.Start <= k) return true; // same (contiguous) document
        return Kind == MaskKind.Anchor && k < layout.AnchorLength;
    }

    /// <summary>Number of allowed (q, k) pairs, from the span boundaries in O(documents) (no window) — the work
    /// a mask-aware kernel does, against L(L+1)/2 for full causal.</summary>
    public long AllowedPairs(DocumentLayout layout)
    {
        long L = layout.Length;
        if (SlidingWindow is not null) return CountByPredicate(layout);
        if (Kind == MaskKind.Causal) return L * (L + 1) / 2;
        long pairs = 0;
        int a = layout.AnchorLength;
        foreach (var d in layout.Documents)
        {
            long n = d.Length;
            pairs += n * (n + 1) / 2;
            if (Kind == MaskKind.Anchor && d.Id != 0) pairs += n * a;
        }
        return pairs;
    }

    private long CountByPredicate(DocumentLayout layout)
    {
        long pairs = 0;
        for (int q = 0; q < layout.Length; q++)
        {
            var dq = layout.DocumentOf(q);
            int w = SlidingWindow ?? int.MaxValue;
            int lo = Math.Max(0, q - w + 1);
            int docLo = Kind == MaskKind.Causal ? 0 : dq.Start;
            pairs += q - Math.Max(lo, docLo) + 1;
            if (Kind == MaskKind.Anchor && dq.Id != 0)
                pairs += Math.Max(0, Math.Min(layout.AnchorLength, docLo) - lo);
        }
        return pairs;
    }
}
