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
    public static TileMap Build(DocumentLayout layout, AttentionMask mask, int tileQ, int tileK) =>
        mask.Apply<TileMap, BuildAction>(new BuildAction(layout, tileQ, tileK));

    /// <summary>Classifies every tile of <paramref name="layout"/> under the kernel-safe mask <paramref name="mask"/>.</summary>
    public static TileMap Build<TMask>(DocumentLayout layout, TMask mask, int tileQ, int tileK) where TMask : struct, IAttentionMask
    {
        if (tileQ <= 0 || tileK <= 0) throw new ArgumentOutOfRangeException(nameof(tileQ), "tile sizes must be positive");
        int length = layout.Length;
        var map = new TileMap(length, tileQ, tileK, new TileKind[((length + tileQ - 1) / tileQ) * ((length + tileK - 1) / tileK)]);
        var docs = new HostDocuments(layout);
        for (int qt = 0; qt < map.QueryTiles; qt++)
        {
            int q0 = qt * tileQ, q1 = Math.Min(length, q0 + tileQ);
            for (int kt = 0; kt < map.KeyTiles; kt++)
            {
                int k0 = kt * tileK, k1 = Math.Min(length, k0 + tileK);
                map._kinds[qt * map.KeyTiles + kt] = mask.Classify(docs, q0, q1, k0, k1);
            }
        }
        return map;
    }

    /// <summary>The kinds in row-major (query tile, key tile) order.</summary>
    public ReadOnlySpan<TileKind> Kinds => _kinds;

    private readonly struct BuildAction(DocumentLayout layout, int tileQ, int tileK) : IMaskAction<TileMap>
    {
        public TileMap Run<TMask>(TMask mask) where TMask : struct, IAttentionMask => Build(layout, mask, tileQ, tileK);
    }
}
