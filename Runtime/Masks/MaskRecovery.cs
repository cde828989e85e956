namespace ModelGen.Masks;

/// <summary>
/// Recovers the document layout and mask kind behind a dense boolean mask (e.g. the 4D additive mask of a reference
/// file), so backends that never take an L×L mask can run the same inputs. Exact: the candidate is checked pair by pair
/// — fine for reference files, not meant for the hot path.
/// </summary>
public static class MaskRecovery
{
    /// <summary>
    /// Finds the mask kind and per-row layouts for <paramref name="allowed"/>(row, q, k) over rows of
    /// <paramref name="seq"/> tokens: causal, intra-document, or anchor (a one-token anchor at token 0), each with
    /// <paramref name="slidingWindow"/>. Returns null when none reproduces every pair.
    /// </summary>
    public static (AttentionMask Mask, DocumentLayout[] Layouts)? Recover(int rows, int seq, Func<int, int, int, bool> allowed, int? slidingWindow)
    {
        foreach (var (kind, anchor) in new[] { (MaskKind.Causal, 0), (MaskKind.IntraDocument, 0), (MaskKind.Anchor, 1) })
        {
            if (anchor >= seq) continue;
            var mask = new AttentionMask(kind, slidingWindow);
            var layouts = new DocumentLayout[rows];
            bool all = true;
            for (int r = 0; r < rows && all; r++)
            {
                var starts = new List<int> { anchor };
                if (kind != MaskKind.Causal)
                    for (int q = anchor + 1; q < seq; q++)
                        if (!allowed(r, q, q - 1)) starts.Add(q);
                var layout = DocumentLayout.FromStarts(seq, anchor, starts);
                for (int q = 0; q < seq && all; q++)
                    for (int k = 0; k < seq && all; k++)
                        all = allowed(r, q, k) == mask.Allows(layout, q, k);
                layouts[r] = layout;
            }
            if (all) return (mask, layouts);
        }
        return null;
    }
}
