namespace ModelGen.Masks;

/// <summary>What a (query tile, key tile) block of the attention matrix holds under a mask.</summary>
public enum TileKind : byte
{
    /// <summary>No allowed pair: never loaded, never computed.</summary>
    Empty,
    /// <summary>Every pair allowed: computed without evaluating the mask.</summary>
    Full,
    /// <summary>Some pairs allowed: computed with the element predicate.</summary>
    Partial,
}

/// <summary>
/// The classification of every (query tile, key tile) of a packed window under a mask, derived from the document
/// boundaries alone — each tile costs O(1 + documents it crosses), never an element-by-element evaluation. This is
/// what lets attention skip empty tiles and drop the mask on full ones.
/// </summary>
public sealed class TileMap
{
    private readonly TileKind[] _kinds;

    private TileMap(int length, int tileQ, int tileK, TileKind[] kinds)
    {
        (Length, TileQ, TileK, _kinds) = (length, tileQ, tileK, kinds);
        QueryTiles = (length + tileQ - 1) / tileQ;
        KeyTiles = (length + tileK - 1) / tileK;
    }

    /// <summary>Tokens in the window.</summary>
    public int Length { get; }
    /// <summary>Query rows per tile.</summary>
    public int TileQ { get; }
    /// <summary>Key columns per tile.</summary>
    public int TileK { get; }
    /// <summary>Number of query tiles (the last may be short).</summary>
    public int QueryTiles { get; }
    /// <summary>Number of key tiles (the last may be short).</summary>
    public int KeyTiles { get; }

    /// <summary>The kind of tile (<paramref name="qt"/>, <paramref name="kt"/>).</summary>
    public TileKind this[int qt, int kt] => _kinds[qt * KeyTiles + kt];

    /// <summary>Counts of each kind.</summary>
    public (int Empty, int Full, int Partial) Counts()
    {
        int e = 0, f = 0, p = 0;
        foreach (var k in _kinds) { if (k == TileKind.Empty) e++; else if (k == TileKind.Full) f++; else p++; }
        return (e, f, p);
    }

    /// <summary>Classifies every tile of <paramref name="layout"/> under <paramref name="mask"/>.</summary>
    public static TileMap Build(DocumentLayout layout, AttentionMask mask, int tileQ, int tileK)
    {
        if (tileQ <= 0 || tileK <= 0) throw new ArgumentOutOfRangeException(nameof(tileQ), "tile sizes must be positive");
        int length = layout.Length;
        var map = new TileMap(length, tileQ, tileK, new TileKind[((length + tileQ - 1) / tileQ) * ((length + tileK - 1) / tileK)]);
        int window = mask.SlidingWindow ?? int.MaxValue;
        for (int qt = 0; qt < map.QueryTiles; qt++)
        {
            int q0 = qt * tileQ, q1 = Math.Min(length, q0 + tileQ);
            for (int kt = 0; kt < map.KeyTiles; kt++)
            {
                int k0 = kt * tileK, k1 = Math.Min(length, k0 + tileK);
                map._kinds[qt * map.KeyTiles + kt] = Classify(layout, mask.Kind, window, q0, q1, k0, k1);
            }
        }
        return map;
    }

    private static TileKind Classify(DocumentLayout layout, MaskKind kind, int window, int q0, int q1, int k0, int k1)
    {
        // Fast exits on the causal and window constraints, which hold for every mask kind.
        var band = Band(q0, q1, k0, k1, window);
        if (band == TileKind.Empty || kind == MaskKind.Causal) return band;

        bool anyAllowed = false, allAllowed = true;
        void Add(TileKind part, bool coversTile)
        {
            if (part != TileKind.Empty) anyAllowed = true;
            if (part != TileKind.Full || !coversTile) allAllowed = false;
        }

        // Keys of the anchor prefix are visible to every later query under the anchor mask.
        int a = kind == MaskKind.Anchor ? layout.AnchorLength : 0;
        int restK0 = k0;
        if (a > k0)
        {
            int anchorK1 = Math.Min(k1, a);
            Add(Band(q0, q1, k0, anchorK1, window), coversTile: true);
            restK0 = anchorK1;
        }
        if (restK0 < k1)
        {
            // The rest: pairs inside one document. Walk the documents that overlap the query range.
            int index = layout.IndexOf(q0);
            var doc = layout.Documents[index];
            bool single = doc.End >= q1 && doc.Start <= restK0 && doc.End >= k1;
            for (int d = index; d < layout.Documents.Count && layout.Documents[d].Start < q1; d++)
            {
                var span = layout.Documents[d];
                int qa = Math.Max(q0, span.Start), qb = Math.Min(q1, span.End);
                int ka = Math.Max(restK0, span.Start), kb = Math.Min(k1, span.End);
                if (qa >= qb || ka >= kb) continue;
                Add(Band(qa, qb, ka, kb, window), coversTile: single);
            }
            if (!single) allAllowed = false;
        }
        return !anyAllowed ? TileKind.Empty : allAllowed ? TileKind.Full : TileKind.Partial;
    }

    /// <summary>
    /// The rectangle [q0, q1) × [k0, k1) under 0 ≤ q − k &lt; window: its differences q − k form the contiguous range
    /// [q0 − (k1 − 1), (q1 − 1) − k0], so emptiness and fullness are two comparisons.
    /// </summary>
    private static TileKind Band(int q0, int q1, int k0, int k1, int window)
    {
        long minDiff = q0 - (k1 - 1L), maxDiff = (q1 - 1L) - k0;
        if (maxDiff < 0 || minDiff > window - 1L) return TileKind.Empty;
        if (minDiff >= 0 && maxDiff <= window - 1L) return TileKind.Full;
        return TileKind.Partial;
    }
}
