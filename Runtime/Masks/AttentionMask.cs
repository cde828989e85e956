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
    public bool Allows(DocumentLayout layout, int q, int k) =>
        Apply<bool, AllowsAction>(new AllowsAction(new HostDocuments(layout), q, k));

    /// <summary>
    /// Runs <paramref name="action"/> with this mask as its kernel-safe struct (<see cref="CausalMask"/> or
    /// <see cref="DocumentMask"/>), so generic code — tile maps, kernels — is specialized per mask type.
    /// </summary>
    public TResult Apply<TResult, TAction>(TAction action) where TAction : IMaskAction<TResult>
    {
        int window = SlidingWindow ?? int.MaxValue;
        return Kind switch
        {
            MaskKind.Causal => action.Run(new CausalMask(window)),
            MaskKind.IntraDocument or MaskKind.IntraDocumentReset => action.Run(new DocumentMask(anchor: false, window)),
            MaskKind.Anchor => action.Run(new DocumentMask(anchor: true, window)),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "unknown mask kind"),
        };
    }

    private readonly struct AllowsAction(HostDocuments docs, int q, int k) : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask =>
            (uint)q < (uint)docs.Length && (uint)k < (uint)docs.Length &&
            mask.Allows(docs, q, k, docs.IndexOf(q), docs.IndexOf(k));
    }

    /// <summary>Number of allowed (q, k) pairs — the work a mask-aware kernel does, against L(L+1)/2 for full causal —
    /// from the span boundaries: O(documents) without a window, O(L) with one.</summary>
    public long AllowedPairs(DocumentLayout layout)
    {
        long L = layout.Length;
        if (SlidingWindow is { } window) return CountPerQuery(layout, window);
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

    /// <summary>With a sliding window: per query, the keys its window and document (plus the anchor) reach, O(L).</summary>
    private long CountPerQuery(DocumentLayout layout, int window)
    {
        long pairs = 0;
        for (int q = 0; q < layout.Length; q++)
        {
            var dq = layout.DocumentOf(q);
            int lo = Math.Max(0, q - window + 1);
            int docLo = Kind == MaskKind.Causal ? 0 : dq.Start;
            pairs += q - Math.Max(lo, docLo) + 1;
            if (Kind == MaskKind.Anchor && dq.Id != 0)
                pairs += Math.Max(0, Math.Min(layout.AnchorLength, docLo) - lo);
        }
        return pairs;
    }
}

/// <summary>Generic code that runs with a mask's kernel-safe struct type (see <see cref="AttentionMask.Apply{TResult, TAction}"/>).</summary>
public interface IMaskAction<out TResult>
{
    /// <summary>Runs with <paramref name="mask"/>.</summary>
    TResult Run<TMask>(TMask mask) where TMask : struct, IAttentionMask;
}
