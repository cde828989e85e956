using ModelGen.Masks;

namespace ModelGen.Tests.Masks;

/// <summary>The reference every tile classifier is tested against: count the allowed pairs of a tile one by one.</summary>
public static class BruteForceTiles
{
    /// <summary>The kind of tile [q0, q1) × [k0, k1) under the element predicate <paramref name="allows"/>(q, k).</summary>
    public static TileKind Classify(Func<int, int, bool> allows, int q0, int q1, int k0, int k1)
    {
        long allowed = 0;
        for (int q = q0; q < q1; q++)
            for (int k = k0; k < k1; k++)
                if (allows(q, k)) allowed++;
        return allowed == 0 ? TileKind.Empty : allowed == (long)(q1 - q0) * (k1 - k0) ? TileKind.Full : TileKind.Partial;
    }

    /// <summary>The kind of tile (<paramref name="qt"/>, <paramref name="kt"/>) of a window of <paramref name="seq"/> tokens (edge tiles cut).</summary>
    public static TileKind Classify(Func<int, int, bool> allows, int seq, int tileQ, int tileK, int qt, int kt) =>
        Classify(allows, qt * tileQ, Math.Min(seq, (qt + 1) * tileQ), kt * tileK, Math.Min(seq, (kt + 1) * tileK));
}
