using ModelGen.Masks;

namespace ModelGen.Tests.Masks;

/// <summary>Analytic tile classification against brute-force evaluation of the element predicate.</summary>
public class TileMapTests
{
    public static IEnumerable<object[]> Layouts()
    {
        var random = new Random(99);
        for (int n = 0; n < 60; n++)
        {
            int length = random.Next(1, 300);
            var starts = new SortedSet<int>();
            int docs = random.Next(0, 12);
            for (int d = 0; d < docs; d++) starts.Add(random.Next(1, Math.Max(2, length)));
            starts.RemoveWhere(s => s >= length);
            int window = random.Next(0, 3) == 0 ? random.Next(1, 80) : 0;
            int tileQ = new[] { 1, 7, 16, 32, 64 }[random.Next(5)], tileK = new[] { 1, 5, 16, 32, 64 }[random.Next(5)];
            yield return [length, starts.Prepend(1).Distinct().Where(s => s < length).ToArray(), window, tileQ, tileK];
        }
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Every_tile_matches_brute_force_for_every_mask(int length, int[] starts, int window, int tileQ, int tileK)
    {
        var layout = length == 1 || starts.Length == 0 ? DocumentLayout.FromStarts(length, 1, []) : DocumentLayout.Anchored(length, starts);
        foreach (MaskKind kind in Enum.GetValues<MaskKind>())
        {
            var mask = new AttentionMask(kind, window > 0 ? window : null);
            var map = TileMap.Build(layout, mask, tileQ, tileK);
            for (int qt = 0; qt < map.QueryTiles; qt++)
                for (int kt = 0; kt < map.KeyTiles; kt++)
                {
                    var want = BruteForceTiles.Classify((q, k) => mask.Allows(layout, q, k), length, tileQ, tileK, qt, kt);
                    Assert.True(want == map[qt, kt], $"{kind} W={window} {layout} tile ({qt},{kt}) of {tileQ}×{tileK}: {map[qt, kt]}, brute force {want}");
                }
        }
    }

    [Fact]
    public void Anchor_tiles_of_a_long_window_are_mostly_empty()
    {
        var layout = DocumentLayout.Anchored(65536, Enumerable.Range(0, 64).Select(i => 1 + i * 1024).ToArray());
        var (empty, full, partial) = TileMap.Build(layout, new AttentionMask(MaskKind.Anchor), 128, 128).Counts();
        Assert.Equal(512 * 512, empty + full + partial);
        Assert.True(empty > 0.9 * 512 * 512, $"{empty} empty of {512 * 512}");
        Assert.True(partial < 0.02 * 512 * 512, $"{partial} partial tiles"); // diagonals, boundaries and the anchor column
    }
}
