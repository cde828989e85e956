namespace ModelGen.Masks;

/// <summary>
/// A mask over a packed window: a standard kind with an optional sliding window, or a mask declared with
/// <c>[AttentionMask]</c> (<see cref="Custom"/>). Either way it runs as a kernel-safe struct (<see cref="Apply{TResult, TAction}"/>):
/// the standard kinds as <see cref="MaskTerms"/>, a declared mask as its generated struct, whose analytic part is
/// <see cref="MaskTerms"/> too. The predicate is the specification the fast paths are tested against; the hot path
/// never evaluates it L×L.
/// </summary>
public readonly record struct AttentionMask(MaskKind Kind, int? SlidingWindow = null)
{
    /// <summary>The declared mask, or null for a standard <see cref="Kind"/> (which is then ignored, as is the window).</summary>
    public MaskDefinition? Custom { get; private init; }

    /// <summary>The declared mask <paramref name="definition"/>: packed like the intra-document masks, positions continuous.</summary>
    public static AttentionMask Of(MaskDefinition definition) =>
        new(MaskKind.IntraDocument) { Custom = definition ?? throw new ArgumentNullException(nameof(definition)) };

    /// <summary>The declared mask's name, or the kind (with its window).</summary>
    public string Name => Custom?.Name ?? (SlidingWindow is { } w ? $"{Kind} (window {w})" : Kind.ToString());

    /// <summary>Whether RoPE positions restart in each document.</summary>
    public bool ResetsPositions => Custom is null && Kind == MaskKind.IntraDocumentReset;

    /// <summary>Whether query <paramref name="q"/> may attend key <paramref name="k"/>.</summary>
    public bool Allows(DocumentLayout layout, int q, int k) =>
        Apply<bool, AllowsAction>(new AllowsAction(new HostDocuments(layout), q, k));

    /// <summary>The standard kinds as mask terms (<see cref="MaskTerms.Causal"/>, <see cref="MaskTerms.Document"/>).</summary>
    public MaskTerms StandardTerms()
    {
        int window = SlidingWindow ?? MaskTerm.None;
        return Kind switch
        {
            MaskKind.Causal => MaskTerms.Causal(window),
            MaskKind.IntraDocument or MaskKind.IntraDocumentReset => MaskTerms.Document(anchor: false, window),
            MaskKind.Anchor => MaskTerms.Document(anchor: true, window),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "unknown mask kind"),
        };
    }

    /// <summary>
    /// Runs <paramref name="action"/> with this mask as its kernel-safe struct (<see cref="MaskTerms"/>, or a declared
    /// mask's generated struct), so generic code — tile maps, kernels — is specialized per mask type.
    /// </summary>
    public TResult Apply<TResult, TAction>(TAction action) where TAction : IMaskAction<TResult> =>
        Custom is { } custom ? custom.Apply<TResult, TAction>(action) : action.Run(StandardTerms());

    private readonly struct AllowsAction(HostDocuments docs, int q, int k) : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask =>
            (uint)q < (uint)docs.Length && (uint)k < (uint)docs.Length &&
            mask.Allows(docs, q, k, docs.IndexOf(q), docs.IndexOf(k));
    }

    /// <summary>Number of allowed (q, k) pairs — the work a mask-aware kernel does, against L(L+1)/2 for full causal:
    /// for the standard kinds counted exactly from the span boundaries, O(documents); for a declared mask, full tiles
    /// by area and partial ones pair by pair.</summary>
    public long AllowedPairs(DocumentLayout layout) => Custom is null
        ? StandardTerms().CountAllowed(new HostDocuments(layout), 0, layout.Length, 0, layout.Length)
        : Apply<long, CountAction>(new CountAction(layout));

    private readonly struct CountAction(DocumentLayout layout) : IMaskAction<long>
    {
        public long Run<TMask>(TMask mask) where TMask : struct, IAttentionMask
        {
            const int tile = 64;
            var docs = new HostDocuments(layout);
            long pairs = 0;
            for (int q0 = 0; q0 < layout.Length; q0 += tile)
            {
                int q1 = Math.Min(layout.Length, q0 + tile);
                for (int k0 = 0; k0 < layout.Length; k0 += tile)
                {
                    int k1 = Math.Min(layout.Length, k0 + tile);
                    var kind = mask.Classify(docs, q0, q1, k0, k1);
                    if (kind == TileKind.Full) pairs += (long)(q1 - q0) * (k1 - k0);
                    else if (kind == TileKind.Partial)
                        for (int q = q0; q < q1; q++)
                            for (int k = k0; k < k1; k++)
                                if (mask.Allows(docs, q, k, docs.IndexOf(q), docs.IndexOf(k))) pairs++;
                }
            }
            return pairs;
        }
    }
}

/// <summary>Generic code that runs with a mask's kernel-safe struct type (see <see cref="AttentionMask.Apply{TResult, TAction}"/>).</summary>
public interface IMaskAction<out TResult>
{
    /// <summary>Runs with <paramref name="mask"/>.</summary>
    TResult Run<TMask>(TMask mask) where TMask : struct, IAttentionMask;
}
