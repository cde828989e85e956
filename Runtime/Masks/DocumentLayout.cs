namespace ModelGen.Masks;

/// <summary>One document of a packed window: tokens [<see cref="Start"/>, <see cref="End"/>) with id <see cref="Id"/>.</summary>
public readonly record struct DocumentSpan(int Id, int Start, int End)
{
    /// <summary>Number of tokens.</summary>
    public int Length => End - Start;
}

/// <summary>
/// How the tokens of one packed window split into documents. Documents are contiguous spans with distinct ids;
/// id 0 is the shared anchor and, when present, must be a prefix of the window (the paper puts the BOS/EOS anchor
/// at token 0). Everything attention needs is derived from the span boundaries, never from an L×L matrix.
/// </summary>
public sealed class DocumentLayout : IEquatable<DocumentLayout>
{
    private readonly DocumentSpan[] _documents;

    private DocumentLayout(DocumentSpan[] documents, int length)
    {
        _documents = documents;
        Length = length;
        AnchorLength = documents.Length > 0 && documents[0].Id == 0 ? documents[0].Length : 0;
    }

    /// <summary>Tokens in the window.</summary>
    public int Length { get; }

    /// <summary>Length of the anchor prefix (tokens with document id 0); 0 when the window has none.</summary>
    public int AnchorLength { get; }

    /// <summary>The documents in window order, the anchor (id 0) first when present.</summary>
    public IReadOnlyList<DocumentSpan> Documents => _documents;

    /// <summary>A window that is one document (plain causal LM data), id 1, with no anchor.</summary>
    public static DocumentLayout Single(int length) => FromStarts(length, anchorLength: 0, [0]);

    /// <summary>
    /// The paper's packing: token 0 (BOS, or EOS for a model without BOS) is the anchor with id 0, then documents
    /// 1…n starting at <paramref name="documentStarts"/> (the first must be 1).
    /// </summary>
    public static DocumentLayout Anchored(int length, params int[] documentStarts) =>
        FromStarts(length, anchorLength: 1, documentStarts);

    /// <summary>
    /// Documents with ids 1…n starting at <paramref name="documentStarts"/>, after an anchor prefix of
    /// <paramref name="anchorLength"/> tokens (id 0; may be 0 tokens). Starts must increase and the first must
    /// equal <paramref name="anchorLength"/>.
    /// </summary>
    public static DocumentLayout FromStarts(int length, int anchorLength, IReadOnlyList<int> documentStarts)
    {
        if (length <= 0) throw new ArgumentOutOfRangeException(nameof(length), length, "a window needs at least one token");
        if (anchorLength < 0 || anchorLength > length)
            throw new ArgumentOutOfRangeException(nameof(anchorLength), anchorLength, $"must be in [0, {length}]");
        var docs = new List<DocumentSpan>();
        if (anchorLength > 0) docs.Add(new DocumentSpan(0, 0, anchorLength));
        if (documentStarts.Count == 0)
        {
            if (anchorLength != length) throw new ArgumentException($"no documents given but the anchor covers only {anchorLength} of {length} tokens", nameof(documentStarts));
        }
        else if (documentStarts[0] != anchorLength)
        {
            throw new ArgumentException($"the first document must start at token {anchorLength} (right after the anchor), not {documentStarts[0]}", nameof(documentStarts));
        }
        for (int i = 0; i < documentStarts.Count; i++)
        {
            int start = documentStarts[i];
            int end = i + 1 < documentStarts.Count ? documentStarts[i + 1] : length;
            if (end <= start || end > length)
                throw new ArgumentException($"document {i + 1} would span [{start}, {end}) in a window of {length} tokens: starts must increase and stay inside the window", nameof(documentStarts));
            docs.Add(new DocumentSpan(i + 1, start, end));
        }
        return new DocumentLayout(docs.ToArray(), length);
    }

    /// <summary>
    /// Reads a layout from per-token document ids (0 = anchor). Each id must occupy one contiguous span, and id 0,
    /// if present, must be a prefix.
    /// </summary>
    public static DocumentLayout FromDocumentIds(ReadOnlySpan<long> documentIds)
    {
        if (documentIds.Length == 0) throw new ArgumentException("document ids are empty", nameof(documentIds));
        var docs = new List<DocumentSpan>();
        var seen = new HashSet<long>();
        int start = 0;
        for (int t = 1; t <= documentIds.Length; t++)
        {
            if (t < documentIds.Length && documentIds[t] == documentIds[start]) continue;
            long id = documentIds[start];
            if (id < 0 || id > int.MaxValue) throw new ArgumentException($"document id {id} at token {start} is out of range", nameof(documentIds));
            if (!seen.Add(id)) throw new ArgumentException($"document id {id} occurs again at token {start}: each document must be one contiguous span", nameof(documentIds));
            if (id == 0 && start != 0) throw new ArgumentException($"the anchor (document id 0) must be a prefix of the window, but it starts at token {start}", nameof(documentIds));
            docs.Add(new DocumentSpan((int)id, start, t));
            start = t;
        }
        return new DocumentLayout(docs.ToArray(), documentIds.Length);
    }

    /// <summary>Per-token document ids.</summary>
    public long[] DocumentIds()
    {
        var ids = new long[Length];
        foreach (var d in _documents) Array.Fill(ids, d.Id, d.Start, d.Length);
        return ids;
    }

    /// <summary>RoPE position ids: 0…L-1, or restarting at 0 in every document when <paramref name="resetPerDocument"/>.</summary>
    public long[] PositionIds(bool resetPerDocument)
    {
        var pos = new long[Length];
        if (!resetPerDocument)
        {
            for (int i = 0; i < Length; i++) pos[i] = i;
            return pos;
        }
        foreach (var d in _documents)
            for (int i = d.Start; i < d.End; i++) pos[i] = i - d.Start;
        return pos;
    }

    /// <summary>The document holding token <paramref name="token"/> (binary search over span starts).</summary>
    public DocumentSpan DocumentOf(int token) => _documents[IndexOf(token)];

    /// <summary>The index in <see cref="Documents"/> of the document holding <paramref name="token"/>.</summary>
    public int IndexOf(int token)
    {
        if ((uint)token >= (uint)Length) throw new ArgumentOutOfRangeException(nameof(token));
        int lo = 0, hi = _documents.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (_documents[mid].Start <= token) lo = mid; else hi = mid - 1;
        }
        return lo;
    }

    /// <inheritdoc/>
    public bool Equals(DocumentLayout? other) =>
        other is not null && Length == other.Length && _documents.AsSpan().SequenceEqual(other._documents);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as DocumentLayout);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(Length);
        foreach (var d in _documents) h.Add(d);
        return h.ToHashCode();
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"L={Length}: " + string.Join(" ", _documents.Select(d => $"{d.Id}:[{d.Start},{d.End})"));
}
