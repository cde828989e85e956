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

    /// <summary>
    /// The keys query <paramref name="q"/> may attend as at most two spans, when the mask is such a union for every
    /// query (<see cref="RowSpans.Exact"/>); kernels then test partial tiles with four comparisons per pair instead of
    /// evaluating <see cref="Allows"/>.
    /// </summary>
    RowSpans Spans<TDocs>(in TDocs docs, int q, int docQ) where TDocs : struct, IDocumentBounds;
}

/// <summary>
/// The keys one query may attend, as [Lo0, Hi0) ∪ [Lo1, Hi1) (an empty span has Lo ≥ Hi); meaningful only when
/// <see cref="Exact"/>, otherwise the mask must be evaluated pair by pair.
/// </summary>
public readonly struct RowSpans(int lo0, int hi0, int lo1, int hi1, bool exact)
{
    /// <summary>First span.</summary>
    public readonly int Lo0 = lo0, Hi0 = hi0;
    /// <summary>Second span.</summary>
    public readonly int Lo1 = lo1, Hi1 = hi1;
    /// <summary>Whether the spans are the query's allowed keys.</summary>
    public readonly bool Exact = exact;

    /// <summary>Spans that say nothing: evaluate the mask's predicate.</summary>
    public static RowSpans Inexact => new(0, 0, 0, 0, false);

    /// <summary>Whether key <paramref name="k"/> lies in a span (branch-free).</summary>
    public bool Contains(int k) => Contains(k, Lo0, Hi0, Lo1, Hi1);

    /// <summary>Whether <paramref name="k"/> lies in [lo0, hi0) ∪ [lo1, hi1): the test kernels run on spans staged in shared memory.</summary>
    public static bool Contains(int k, int lo0, int hi0, int lo1, int hi1) => (k >= lo0 & k < hi0) | (k >= lo1 & k < hi1);
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
