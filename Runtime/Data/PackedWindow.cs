using ModelGen.Masks;

namespace ModelGen.Data;

/// <summary>
/// One training window of L tokens: token 0 is the shared anchor (document id 0), then documents 1…n as the
/// packer cut them, with next-token labels (−100 where no loss is taken).
/// </summary>
public sealed record PackedWindow(long[] Tokens, long[] Labels, DocumentLayout Layout)
{
    /// <summary>The label value that takes no loss (PyTorch's ignore_index).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>Tokens in the window.</summary>
    public int Length => Tokens.Length;
}

/// <summary>
/// Packs tokenized documents into windows exactly as the paper does: each window starts with the anchor token
/// (BOS, or EOS for a model without BOS) as document 0, documents follow back to back, each ended by EOS, and a
/// document cut at the end of a window continues as the first document of the next. RoPE positions stay
/// continuous (the layout resets them only for the intra-document-reset baseline).
/// </summary>
public sealed class DocumentPacker
{
    private readonly int _length;
    private readonly int _anchor;
    private readonly int? _eos;
    private readonly bool _maskBoundaryLoss;

    /// <summary>A packer for windows of <paramref name="length"/> tokens.</summary>
    /// <param name="length">Window length L (≥ 2).</param>
    /// <param name="anchorToken">Token placed at position 0 of every window.</param>
    /// <param name="eosToken">Appended to each document, or null to append nothing.</param>
    /// <param name="maskBoundaryLoss">Take no loss where a document's last token would predict the next document's first.</param>
    public DocumentPacker(int length, int anchorToken, int? eosToken, bool maskBoundaryLoss = false)
    {
        if (length < 2) throw new ArgumentOutOfRangeException(nameof(length), length, "a window needs the anchor and at least one token");
        (_length, _anchor, _eos, _maskBoundaryLoss) = (length, anchorToken, eosToken, maskBoundaryLoss);
    }

    /// <summary>
    /// Packs <paramref name="documents"/> (token ids, each non-empty) into windows; a final partial window is
    /// dropped. Deterministic: the same documents in the same order give the same windows.
    /// </summary>
    public IEnumerable<PackedWindow> Pack(IEnumerable<IReadOnlyList<int>> documents)
    {
        var tokens = new List<long>(_length) { _anchor };
        var starts = new List<int>();
        var boundaries = new HashSet<int>(); // positions whose next token starts another document
        foreach (var doc in documents)
        {
            if (doc.Count == 0) continue;
            IEnumerable<int> stream = _eos is { } eos ? doc.Append(eos) : doc;
            bool startOfDocument = true;
            foreach (int token in stream)
            {
                if (startOfDocument || tokens.Count == 1)
                {
                    if (startOfDocument && tokens.Count > 1) boundaries.Add(tokens.Count - 1);
                    starts.Add(tokens.Count);
                    startOfDocument = false;
                }
                tokens.Add(token);
                if (tokens.Count == _length)
                {
                    yield return Emit(tokens, starts, boundaries);
                    tokens = new List<long>(_length) { _anchor };
                    starts = [];
                    boundaries = [];
                }
            }
        }
    }

    private PackedWindow Emit(List<long> tokens, List<int> starts, HashSet<int> boundaries)
    {
        var ids = tokens.ToArray();
        var labels = new long[ids.Length];
        for (int t = 0; t < ids.Length - 1; t++)
            labels[t] = _maskBoundaryLoss && boundaries.Contains(t) ? PackedWindow.IgnoreIndex : ids[t + 1];
        labels[^1] = PackedWindow.IgnoreIndex; // its target is in the next window
        return new PackedWindow(ids, labels, DocumentLayout.Anchored(ids.Length, starts.ToArray()));
    }
}
