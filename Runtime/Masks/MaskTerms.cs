namespace ModelGen.Masks;

/// <summary>The constraint flags of a <see cref="MaskTerm"/>.</summary>
[Flags]
public enum MaskParts
{
    /// <summary>No flag: every pair the numeric parts allow.</summary>
    None = 0,
    /// <summary><c>causal</c>: k ≤ q.</summary>
    Causal = 1,
    /// <summary><c>document</c>: q and k lie in the same document.</summary>
    Document = 2,
    /// <summary><c>anchor</c>: k lies in the anchor prefix (document id 0).</summary>
    Anchor = 4,
}

/// <summary>
/// One conjunction of mask parts: flags (<see cref="MaskParts"/>) and three numeric bounds — <c>window(W)</c>:
/// q − k &lt; W; <c>prefix(P)</c>: q &lt; P and k &lt; P (a bidirectional prefix of the window); <c>head(K)</c>: k is
/// among the first K tokens of its own document. A bound of <see cref="int.MaxValue"/> is absent, so the conjunction of
/// two terms is the union of their flags and the minimum of their bounds (<see cref="And"/>). Blittable (ints only):
/// it travels into kernels inside the mask struct.
/// </summary>
public readonly struct MaskTerm
{
    /// <summary>A bound that is not there.</summary>
    public const int None = int.MaxValue;

    /// <summary>The <see cref="MaskParts"/> flags, as an int.</summary>
    public readonly int Parts;
    /// <summary>q − k &lt; Window.</summary>
    public readonly int Window;
    /// <summary>q &lt; Prefix and k &lt; Prefix.</summary>
    public readonly int Prefix;
    /// <summary>k − start of k's document &lt; Head.</summary>
    public readonly int Head;

    /// <summary>A term of <paramref name="parts"/> and the given bounds (<see cref="None"/> for absent ones).</summary>
    public MaskTerm(MaskParts parts, int window = None, int prefix = None, int head = None) =>
        (Parts, Window, Prefix, Head) = ((int)parts, window, prefix, head);

    /// <summary>Pairs allowed by both terms.</summary>
    public MaskTerm And(MaskTerm other) => new(
        (MaskParts)(Parts | other.Parts),
        Window < other.Window ? Window : other.Window,
        Prefix < other.Prefix ? Prefix : other.Prefix,
        Head < other.Head ? Head : other.Head);

    /// <summary>Whether the term allows query <paramref name="q"/> to attend key <paramref name="k"/>.</summary>
    public bool Allows<TDocs>(in TDocs docs, int q, int k, int docQ, int docK) where TDocs : struct, IDocumentBounds =>
        ((Parts & (int)MaskParts.Causal) == 0 || k <= q)
        && (Window == None || (long)q - k < Window)
        && q < Prefix && k < Prefix
        && ((Parts & (int)MaskParts.Document) == 0 || docQ == docK)
        && ((Parts & (int)MaskParts.Anchor) == 0 || k < docs.AnchorLength)
        && (Head == None || (long)k - docs.Start(docK) < Head);

    /// <summary>
    /// The keys query <paramref name="q"/> (in document <paramref name="docQ"/>) may attend under this term, as one span
    /// [Lo, Hi) — every term without <c>head</c> is one: causal, window, prefix, document and anchor each bound it.
    /// </summary>
    public (int Lo, int Hi) Span<TDocs>(in TDocs docs, int q, int docQ) where TDocs : struct, IDocumentBounds
    {
        int lo = 0, hi = docs.Length;
        if ((Parts & (int)MaskParts.Causal) != 0 && q + 1 < hi) hi = q + 1;
        if (Window != None && (long)q - Window + 1 > lo) lo = (int)((long)q - Window + 1);
        if (Prefix != None)
        {
            if (q >= Prefix) hi = 0;
            else if (Prefix < hi) hi = Prefix;
        }
        if ((Parts & (int)MaskParts.Document) != 0)
        {
            int start = docs.Start(docQ), end = docs.End(docQ);
            if (start > lo) lo = start;
            if (end < hi) hi = end;
        }
        if ((Parts & (int)MaskParts.Anchor) != 0 && docs.AnchorLength < hi) hi = docs.AnchorLength;
        return (lo, hi);
    }

    /// <summary>
    /// The exact number of allowed pairs in queries [q0, q1) × keys [k0, k1), from the document boundaries: O(1) without
    /// document parts, O(documents overlapping the rectangle) with them.
    /// </summary>
    public long Count<TDocs>(in TDocs docs, int q0, int q1, int k0, int k1) where TDocs : struct, IDocumentBounds
    {
        if (q1 > Prefix) q1 = Prefix;
        if (k1 > Prefix) k1 = Prefix;
        if ((Parts & (int)MaskParts.Anchor) != 0 && k1 > docs.AnchorLength) k1 = docs.AnchorLength;
        if (q0 >= q1 || k0 >= k1) return 0;
        // The difference q − k ranges over [lo, hi].
        long lo = (Parts & (int)MaskParts.Causal) != 0 ? 0 : long.MinValue / 4;
        long hi = Window == None ? long.MaxValue / 4 : Window - 1L;
        if (lo > hi) return 0;
        long total = 0;
        if ((Parts & (int)MaskParts.Document) != 0)
        {
            // Pairs inside one document: walk the documents overlapping both ranges (start < min(q1, k1) and
            // end > max(q0, k0)).
            int from = q0 > k0 ? q0 : k0, to = q1 < k1 ? q1 : k1;
            for (int d = docs.IndexOf(from); d < docs.Count && docs.Start(d) < to; d++)
            {
                int start = docs.Start(d), end = docs.End(d);
                int qa = q0 > start ? q0 : start, qb = q1 < end ? q1 : end;
                int ka = k0 > start ? k0 : start, kb = k1 < end ? k1 : end;
                if (Head != None && (long)start + Head < kb) kb = start + Head;
                total += DiagonalBand(qa, qb, ka, kb, lo, hi);
            }
            return total;
        }
        if (Head != None)
        {
            // Keys among the first Head tokens of their document: walk the documents overlapping the key range.
            for (int d = docs.IndexOf(k0); d < docs.Count && docs.Start(d) < k1; d++)
            {
                int start = docs.Start(d), end = docs.End(d);
                int ka = k0 > start ? k0 : start, kb = k1 < end ? k1 : end;
                if ((long)start + Head < kb) kb = start + Head;
                total += DiagonalBand(q0, q1, ka, kb, lo, hi);
            }
            return total;
        }
        return DiagonalBand(q0, q1, k0, k1, lo, hi);
    }

    /// <summary>Pairs of [q0, q1) × [k0, k1) with lo ≤ q − k ≤ hi.</summary>
    public static long DiagonalBand(int q0, int q1, int k0, int k1, long lo, long hi)
    {
        if (q0 >= q1 || k0 >= k1 || lo > hi) return 0;
        return AtMost(q0, q1, k0, k1, hi) - AtMost(q0, q1, k0, k1, lo - 1);
    }

    /// <summary>Pairs of a non-empty rectangle with q − k ≤ t: per query q, the keys in [max(k0, q − t), k1).</summary>
    private static long AtMost(int q0, int q1, int k0, int k1, long t)
    {
        long minDiff = q0 - (k1 - 1L), maxDiff = (q1 - 1L) - k0;
        if (t >= maxDiff) return (q1 - (long)q0) * (k1 - (long)k0);
        if (t < minDiff) return 0;
        // Queries q ≤ k0 + t see the whole key range; queries up to k1 + t see k1 + t − q keys.
        long fullEnd = Math.Min(q1, k0 + t + 1);
        long full = fullEnd > q0 ? (fullEnd - q0) * (k1 - (long)k0) : 0;
        long a = Math.Max(q0, k0 + t + 1), b = Math.Min(q1, k1 + t);
        long partial = b > a ? (b - a) * (k1 + t) - (a + b - 1) * (b - a) / 2 : 0;
        return full + partial;
    }
}

/// <summary>
/// A mask as the disjunction of up to four <see cref="MaskTerm"/>s — the form every declared mask expression and every
/// standard mask compiles to. The element predicate is "some term allows"; the tile classifier counts the rectangle's
/// allowed pairs exactly by inclusion–exclusion over the terms (each intersection is again a term), so a tile is
/// Empty when the count is 0 and Full when it is the rectangle's area: O(2^terms × documents overlapping the tile).
/// Blittable, so it is itself a kernel-safe <see cref="IAttentionMask"/>.
/// </summary>
public readonly struct MaskTerms : IAttentionMask
{
    /// <summary>Most terms in one mask.</summary>
    public const int MaxTerms = 4;

    private readonly MaskTerm _t0, _t1, _t2, _t3;

    /// <summary>Number of terms (1 to <see cref="MaxTerms"/>).</summary>
    public readonly int Count;

    /// <summary>One term.</summary>
    public MaskTerms(MaskTerm t0) => (_t0, Count) = (t0, 1);
    /// <summary>Two terms.</summary>
    public MaskTerms(MaskTerm t0, MaskTerm t1) => (_t0, _t1, Count) = (t0, t1, 2);
    /// <summary>Three terms.</summary>
    public MaskTerms(MaskTerm t0, MaskTerm t1, MaskTerm t2) => (_t0, _t1, _t2, Count) = (t0, t1, t2, 3);
    /// <summary>Four terms.</summary>
    public MaskTerms(MaskTerm t0, MaskTerm t1, MaskTerm t2, MaskTerm t3) => (_t0, _t1, _t2, _t3, Count) = (t0, t1, t2, t3, 4);

    /// <summary>Term <paramref name="index"/>.</summary>
    public MaskTerm Term(int index) => index switch { 0 => _t0, 1 => _t1, 2 => _t2, _ => _t3 };

    /// <summary>Full causal attention, optionally within a sliding window: <c>causal &amp; window(W)</c>.</summary>
    public static MaskTerms Causal(int window = MaskTerm.None) => new(new MaskTerm(MaskParts.Causal, window));

    /// <summary>
    /// Causal attention inside each document, plus — with <paramref name="anchor"/> — every key of the anchor prefix:
    /// <c>causal &amp; document &amp; window(W) | causal &amp; anchor &amp; window(W)</c>.
    /// </summary>
    public static MaskTerms Document(bool anchor, int window = MaskTerm.None) => anchor
        ? new(new MaskTerm(MaskParts.Causal | MaskParts.Document, window), new MaskTerm(MaskParts.Causal | MaskParts.Anchor, window))
        : new(new MaskTerm(MaskParts.Causal | MaskParts.Document, window));

    /// <summary>
    /// Whether this is the anchor mask <see cref="Document"/>(anchor: true, window) — exactly — and then its intra-document
    /// part (<paramref name="documents"/>, the first term) and window: the anchor mask is that part plus the pairs (q, k)
    /// with k in the anchor prefix, q after it and q − k &lt; window.
    /// </summary>
    public bool WithoutAnchor(out MaskTerms documents, out int window)
    {
        var both = MaskParts.Causal | MaskParts.Document;
        bool anchor = Count == 2 && _t0.Parts == (int)both && _t1.Parts == (int)(MaskParts.Causal | MaskParts.Anchor) && _t0.Window == _t1.Window
            && _t0.Prefix == MaskTerm.None && _t1.Prefix == MaskTerm.None && _t0.Head == MaskTerm.None && _t1.Head == MaskTerm.None;
        documents = anchor ? new MaskTerms(_t0) : default;
        window = anchor ? _t0.Window : 0;
        return anchor;
    }

    /// <inheritdoc/>
    /// <remarks>Written out term by term: kernels evaluate it per element of partial tiles, and ILGPU does not unroll loops.</remarks>
    public bool Allows<TDocs>(in TDocs docs, int q, int k, int docQ, int docK) where TDocs : struct, IDocumentBounds =>
        _t0.Allows(docs, q, k, docQ, docK)
        || (Count > 1 && _t1.Allows(docs, q, k, docQ, docK))
        || (Count > 2 && _t2.Allows(docs, q, k, docQ, docK))
        || (Count > 3 && _t3.Allows(docs, q, k, docQ, docK));

    /// <inheritdoc/>
    /// <remarks>Exact for one or two terms without <c>head</c> (every standard mask); otherwise <see cref="RowSpans.Inexact"/>.</remarks>
    public RowSpans Spans<TDocs>(in TDocs docs, int q, int docQ) where TDocs : struct, IDocumentBounds
    {
        if (Count > 2 || _t0.Head != MaskTerm.None || (Count > 1 && _t1.Head != MaskTerm.None)) return RowSpans.Inexact;
        var (lo0, hi0) = _t0.Span(docs, q, docQ);
        if (Count == 1) return new RowSpans(lo0, hi0, 0, 0, true);
        var (lo1, hi1) = _t1.Span(docs, q, docQ);
        return new RowSpans(lo0, hi0, lo1, hi1, true);
    }

    /// <summary>The exact number of allowed pairs in [q0, q1) × [k0, k1), by inclusion–exclusion over the terms.</summary>
    public long CountAllowed<TDocs>(in TDocs docs, int q0, int q1, int k0, int k1) where TDocs : struct, IDocumentBounds
    {
        long count = 0;
        for (int subset = 1; subset < 1 << Count; subset++)
        {
            MaskTerm both = default;
            int members = 0;
            for (int i = 0; i < Count; i++)
            {
                if ((subset & (1 << i)) == 0) continue;
                both = members == 0 ? Term(i) : both.And(Term(i));
                members++;
            }
            long pairs = both.Count(docs, q0, q1, k0, k1);
            count += (members & 1) != 0 ? pairs : -pairs;
        }
        return count;
    }

    /// <inheritdoc/>
    public TileKind Classify<TDocs>(in TDocs docs, int q0, int q1, int k0, int k1) where TDocs : struct, IDocumentBounds
    {
        long allowed = CountAllowed(docs, q0, q1, k0, k1);
        return allowed == 0 ? TileKind.Empty : allowed == (q1 - (long)q0) * (k1 - k0) ? TileKind.Full : TileKind.Partial;
    }
}

/// <summary>What a <c>[MaskPredicate]</c> method sees of one (query, key) pair: positions and the two documents.</summary>
public readonly struct MaskPoint
{
    /// <summary>Query token.</summary>
    public readonly int Q;
    /// <summary>Key token.</summary>
    public readonly int K;
    /// <summary>Document index of the query (0 is the anchor when the window has one).</summary>
    public readonly int QueryDocument;
    /// <summary>Document index of the key.</summary>
    public readonly int KeyDocument;
    /// <summary>First token of the query's document.</summary>
    public readonly int QueryStart;
    /// <summary>One past the last token of the query's document.</summary>
    public readonly int QueryEnd;
    /// <summary>First token of the key's document.</summary>
    public readonly int KeyStart;
    /// <summary>One past the last token of the key's document.</summary>
    public readonly int KeyEnd;
    /// <summary>Tokens in the anchor prefix.</summary>
    public readonly int AnchorLength;
    /// <summary>Tokens in the window.</summary>
    public readonly int Length;

    /// <summary>The point (q, k) of a window.</summary>
    public MaskPoint(int q, int k, int queryDocument, int keyDocument, int queryStart, int queryEnd, int keyStart, int keyEnd, int anchorLength, int length)
    {
        (Q, K, QueryDocument, KeyDocument) = (q, k, queryDocument, keyDocument);
        (QueryStart, QueryEnd, KeyStart, KeyEnd, AnchorLength, Length) = (queryStart, queryEnd, keyStart, keyEnd, anchorLength, length);
    }

    /// <summary>The point (q, k) of the window <paramref name="docs"/>.</summary>
    public static MaskPoint Of<TDocs>(in TDocs docs, int q, int k, int docQ, int docK) where TDocs : struct, IDocumentBounds =>
        new(q, k, docQ, docK, docs.Start(docQ), docs.End(docQ), docs.Start(docK), docs.End(docK), docs.AnchorLength, docs.Length);
}

/// <summary>
/// The tile classifier of masks with a predicate the generator cannot analyze: it evaluates the element predicate over
/// the tile (on the GPU, once per tile per batch while the tile map is built) and stops as soon as it has seen both an
/// allowed and a masked pair.
/// </summary>
public static class ElementwiseClassifier
{
    /// <summary>The kind of [q0, q1) × [k0, k1) under <paramref name="mask"/>, pair by pair.</summary>
    public static TileKind Classify<TMask, TDocs>(in TMask mask, in TDocs docs, int q0, int q1, int k0, int k1)
        where TMask : struct, IAttentionMask where TDocs : struct, IDocumentBounds
    {
        int seen = 0; // bit 0: an allowed pair, bit 1: a masked pair
        for (int q = q0; q < q1; q++)
        {
            int docQ = docs.IndexOf(q);
            for (int k = k0; k < k1; k++)
            {
                seen |= mask.Allows(docs, q, k, docQ, docs.IndexOf(k)) ? 1 : 2;
                if (seen == 3) return TileKind.Partial;
            }
        }
        return seen == 1 ? TileKind.Full : TileKind.Empty;
    }
}
