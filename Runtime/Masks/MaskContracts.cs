namespace ModelGen.Masks;

/// <summary>
/// The document boundaries of one packed window, as a mask sees them: documents by index (the anchor, when present, is
/// index 0), their token spans, and the document index of any token. Implemented over host arrays
/// (<see cref="HostDocuments"/>) and over device buffers (the ILGPU backend), so one mask implementation serves the
/// tile map builder on the CPU, the one on the GPU and the attention kernels.
/// </summary>
public interface IDocumentBounds
{
    /// <summary>Tokens in the window.</summary>
    int Length { get; }
    /// <summary>Number of documents, the anchor included.</summary>
    int Count { get; }
    /// <summary>Tokens in the anchor prefix (document id 0); 0 when the window has none.</summary>
    int AnchorLength { get; }
    /// <summary>First token of document <paramref name="index"/>.</summary>
    int Start(int index);
    /// <summary>One past the last token of document <paramref name="index"/>.</summary>
    int End(int index);
    /// <summary>The index of the document holding <paramref name="token"/>.</summary>
    int IndexOf(int token);
}

/// <summary>
/// A mask that runs inside kernels: an element predicate for partial tiles and an analytic tile classifier that decides
/// from document boundaries alone whether a rectangle of the attention matrix is empty, full or partial. Implementations
/// are readonly structs without references, so they can be generic arguments of ILGPU kernels (which specialize per
/// struct type) and of the CPU tile map builder.
/// </summary>
public interface IAttentionMask
{
    /// <summary>
    /// Whether query <paramref name="q"/> (in document index <paramref name="docQ"/>) may attend key
    /// <paramref name="k"/> (in document index <paramref name="docK"/>).
    /// </summary>
    bool Allows<TDocs>(in TDocs docs, int q, int k, int docQ, int docK) where TDocs : struct, IDocumentBounds;

    /// <summary>The kind of the rectangle of queries [q0, q1) × keys [k0, k1), with q0 &lt; q1 and k0 &lt; k1.</summary>
    TileKind Classify<TDocs>(in TDocs docs, int q0, int q1, int k0, int k1) where TDocs : struct, IDocumentBounds;
}

/// <summary><see cref="IDocumentBounds"/> over a <see cref="DocumentLayout"/> on the host.</summary>
public readonly struct HostDocuments(DocumentLayout layout) : IDocumentBounds
{
    /// <summary>The layout.</summary>
    public DocumentLayout Layout { get; } = layout;
    /// <inheritdoc/>
    public int Length => Layout.Length;
    /// <inheritdoc/>
    public int Count => Layout.Documents.Count;
    /// <inheritdoc/>
    public int AnchorLength => Layout.AnchorLength;
    /// <inheritdoc/>
    public int Start(int index) => Layout.Documents[index].Start;
    /// <inheritdoc/>
    public int End(int index) => Layout.Documents[index].End;
    /// <inheritdoc/>
    public int IndexOf(int token) => Layout.IndexOf(token);
}

/// <summary>Tile arithmetic the mask classifiers share.</summary>
public static class TileMath
{
    /// <summary>
    /// The rectangle [q0, q1) × [k0, k1) under 0 ≤ q − k &lt; window: its differences q − k form the contiguous range
    /// [q0 − (k1 − 1), (q1 − 1) − k0], so emptiness and fullness are two comparisons.
    /// </summary>
    public static TileKind Band(int q0, int q1, int k0, int k1, int window)
    {
        long minDiff = q0 - (k1 - 1L), maxDiff = (q1 - 1L) - k0;
        if (maxDiff < 0 || minDiff > window - 1L) return TileKind.Empty;
        if (minDiff >= 0 && maxDiff <= window - 1L) return TileKind.Full;
        return TileKind.Partial;
    }
}

/// <summary>Full causal attention, optionally within a sliding window: k ≤ q and q − k &lt; window.</summary>
public readonly struct CausalMask(int window) : IAttentionMask
{
    /// <summary>The sliding window (int.MaxValue for none).</summary>
    public int Window { get; } = window;

    /// <inheritdoc/>
    public bool Allows<TDocs>(in TDocs docs, int q, int k, int docQ, int docK) where TDocs : struct, IDocumentBounds =>
        k <= q && q - k < Window;

    /// <inheritdoc/>
    public TileKind Classify<TDocs>(in TDocs docs, int q0, int q1, int k0, int k1) where TDocs : struct, IDocumentBounds =>
        TileMath.Band(q0, q1, k0, k1, Window);
}

/// <summary>
/// Causal attention inside each document (k ≤ q, same document, q − k &lt; window), plus — when
/// <see cref="Anchor"/> — every key of the anchor prefix (AnchorAttention).
/// </summary>
public readonly struct DocumentMask(bool anchor, int window) : IAttentionMask
{
    // Stored as an int: kernel arguments must be blittable, and bool is not.
    private readonly int _anchor = anchor ? 1 : 0;

    /// <summary>Whether keys of the anchor prefix are visible to every later query.</summary>
    public bool Anchor => _anchor != 0;
    /// <summary>The sliding window (int.MaxValue for none).</summary>
    public int Window { get; } = window;

    /// <inheritdoc/>
    public bool Allows<TDocs>(in TDocs docs, int q, int k, int docQ, int docK) where TDocs : struct, IDocumentBounds =>
        k <= q && q - k < Window && (docK == docQ || (_anchor != 0 && k < docs.AnchorLength));

    /// <inheritdoc/>
    public TileKind Classify<TDocs>(in TDocs docs, int q0, int q1, int k0, int k1) where TDocs : struct, IDocumentBounds
    {
        // Fast exit on the causal and window constraints, which bound every part.
        if (TileMath.Band(q0, q1, k0, k1, Window) == TileKind.Empty) return TileKind.Empty;

        // The rectangle splits into disjoint parts (anchor keys, then one part per document); it is empty when every
        // part is, full when the parts cover it and every one is full.
        bool any = false, all = true;
        int restK0 = k0;
        int a = _anchor != 0 ? docs.AnchorLength : 0;
        if (a > k0)
        {
            // Keys of the anchor prefix: the causal window alone decides.
            int anchorK1 = k1 < a ? k1 : a;
            var part = TileMath.Band(q0, q1, k0, anchorK1, Window);
            any |= part != TileKind.Empty;
            all &= part == TileKind.Full;
            restK0 = anchorK1;
        }
        if (restK0 < k1)
        {
            // The rest: pairs inside one document. Walk the documents that overlap the query range.
            int first = docs.IndexOf(q0);
            all &= docs.End(first) >= q1 && docs.Start(first) <= restK0 && docs.End(first) >= k1;
            for (int d = first; d < docs.Count && docs.Start(d) < q1; d++)
            {
                int qa = q0 > docs.Start(d) ? q0 : docs.Start(d), qb = q1 < docs.End(d) ? q1 : docs.End(d);
                int ka = restK0 > docs.Start(d) ? restK0 : docs.Start(d), kb = k1 < docs.End(d) ? k1 : docs.End(d);
                if (qa >= qb || ka >= kb) continue;
                var part = TileMath.Band(qa, qb, ka, kb, Window);
                any |= part != TileKind.Empty;
                all &= part == TileKind.Full;
            }
        }
        return !any ? TileKind.Empty : all ? TileKind.Full : TileKind.Partial;
    }
}
