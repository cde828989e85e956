using ModelGen.Backends.Ilgpu;
using ModelGen.Masks;
using ModelGen.Tests.Masks;

namespace ModelGen.Tests.Ilgpu;

/// <summary>
/// The device tile map of every standard mask (with and without a sliding window) against a brute-force element
/// evaluation, on many random packed layouts whose lengths are not multiples of the tile size; 32-lane warps.
/// </summary>
public class TileMapKernelTests(CpuAcceleratorFixture cpu) : IClassFixture<CpuAcceleratorFixture>
{
    [Theory]
    [InlineData(MaskKind.Causal, null)]
    [InlineData(MaskKind.Causal, 9)]
    [InlineData(MaskKind.IntraDocument, null)]
    [InlineData(MaskKind.Anchor, null)]
    [InlineData(MaskKind.Anchor, 13)]
    public void Device_tile_maps_match_brute_force_on_random_layouts(MaskKind kind, int? window)
    {
        var mask = new AttentionMask(kind, window);
        foreach (var (seq, tileQ, tileK) in new[] { (93, 16, 8), (61, 8, 16), (130, 32, 32) })
        {
            var random = new Random(seq * 31 + (int)kind);
            var layouts = Enumerable.Range(0, 8).Select(_ =>
            {
                int anchor = random.Next(0, 3);
                var cuts = Enumerable.Range(0, random.Next(0, 9)).Select(_ => random.Next(anchor + 1, seq)).Distinct().Order();
                return DocumentLayout.FromStarts(seq, anchor, cuts.Prepend(anchor).ToArray());
            }).ToArray();
            using var batch = new GpuBatch(cpu.Nvidia, layouts.Length, seq, tileQ, tileK);
            batch.Upload(new int[layouts.Length * seq], new int[layouts.Length * seq], layouts, vocab: 1);
            batch.BuildTileMap(mask);
            for (int row = 0; row < layouts.Length; row++)
            {
                var device = batch.TileMapOf(row);
                int keyTiles = (seq + tileK - 1) / tileK;
                for (int i = 0; i < device.Length; i++)
                {
                    int qt = i / keyTiles, kt = i % keyTiles;
                    var layout = layouts[row];
                    var want = BruteForceTiles.Classify((q, k) => mask.Allows(layout, q, k), seq, tileQ, tileK, qt, kt);
                    Assert.True(want == device[i], $"{kind} w={window} L={seq} row {row} tile ({qt},{kt}): device {device[i]}, brute force {want}; layout {layouts[row]}");
                }
            }
        }
    }
}
