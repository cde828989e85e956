using ModelGen.Backends.Ilgpu;
using ModelGen.Masks;
using ModelGen.Models;
using ModelGen.Tests.Masks;

namespace ModelGen.Tests.Ilgpu;

/// <summary>
/// The declared example masks on the ILGPU backend (CPU accelerator): the generated structs as kernel arguments build
/// the same tile maps on the device as on the host, and the tiled attention kernel matches brute force. Tiny shapes:
/// the CPU accelerator emulates every lane.
/// </summary>
public class DeclaredMaskIlgpuTests(CpuAcceleratorFixture cpu) : IClassFixture<CpuAcceleratorFixture>
{
    public static IEnumerable<object[]> Names() => DeclaredMaskTests.Names();

    private static DocumentLayout[] Layouts(string name, int seq) =>
        DeclaredMaskTests.RandomLayouts(seed: seq + name.Length, count: 12, maxLength: seq)
            .Where(l => l.Length == seq)
            .Append(DocumentLayout.FromStarts(seq, 2, [2, seq / 3, seq / 2]))
            .Append(DocumentLayout.FromStarts(seq, 0, [0, 5]))
            .Take(2)
            .ToArray();

    [Theory]
    [MemberData(nameof(Names))]
    public void Device_tile_maps_match_the_host_and_brute_force(string name)
    {
        var mask = AttentionMask.Of(MaskCatalog.Find(name)!);
        foreach (var (seq, tileQ, tileK) in new[] { (100, 16, 8), (77, 32, 16) })
        {
            var layouts = Layouts(name, seq);
            using var batch = new GpuBatch(cpu.Device, layouts.Length, seq, tileQ, tileK);
            batch.Upload(new int[layouts.Length * seq], new int[layouts.Length * seq], layouts, vocab: 1);
            batch.BuildTileMap(mask);
            for (int row = 0; row < layouts.Length; row++)
            {
                var host = TileMap.Build(layouts[row], mask, tileQ, tileK);
                var device = batch.TileMapOf(row);
                Assert.Equal(host.Kinds.ToArray(), device);
                var spec = DeclaredMaskTests.Specifications[name];
                for (int qt = 0; qt < host.QueryTiles; qt++)
                    for (int kt = 0; kt < host.KeyTiles; kt++)
                    {
                        var layout = layouts[row];
                        var want = BruteForceTiles.Classify((q, k) => spec(layout, q, k), seq, tileQ, tileK, qt, kt);
                        Assert.Equal(want, device[qt * host.KeyTiles + kt]);
                    }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Attention_matches_brute_force(string name)
    {
        const int seq = 90, heads = 2, dim = 16;
        var mask = AttentionMask.Of(MaskCatalog.Find(name)!);
        var spec = DeclaredMaskTests.Specifications[name];
        var layouts = Layouts(name, seq);
        int rows = layouts.Length, tokens = rows * seq, width = heads * dim;
        var random = new Random(name.Length);
        float[] Random() => Enumerable.Range(0, tokens * width).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] q = Random(), k = Random(), v = Random();

        using var ops = new GpuOps(cpu.Device, GpuDType.F32);
        using var batch = new GpuBatch(cpu.Device, rows, seq);
        batch.Upload(new int[tokens], new int[tokens], layouts, vocab: 1);
        batch.BuildTileMap(mask);
        using var gq = GpuTensor.FromHost(cpu.Device, GpuDType.F32, "q", q, tokens, width);
        using var gk = GpuTensor.FromHost(cpu.Device, GpuDType.F32, "k", k, tokens, width);
        using var gv = GpuTensor.FromHost(cpu.Device, GpuDType.F32, "v", v, tokens, width);
        using var output = GpuTensor.Allocate(cpu.Device, GpuDType.F32, "out", tokens, width);
        var layout = new HeadLayout(0, (long)seq * width, width, dim, heads);
        mask.Apply<bool, AttentionAction>(new AttentionAction(ops, gq, gk, gv, layout, dim, batch, output));
        var got = output.ToHost();

        double worst = 0;
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < seq; i++)
                {
                    int qi = (r * seq + i) * width + h * dim;
                    var scores = new double[seq];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < seq; j++)
                    {
                        if (!spec(layouts[r], i, j)) { scores[j] = double.NegativeInfinity; continue; }
                        int kj = (r * seq + j) * width + h * dim;
                        double s = 0;
                        for (int d = 0; d < dim; d++) s += q[qi + d] * k[kj + d];
                        scores[j] = s / Math.Sqrt(dim);
                        max = Math.Max(max, scores[j]);
                    }
                    double sum = 0;
                    var want = new double[dim];
                    for (int j = 0; j < seq; j++)
                    {
                        if (double.IsNegativeInfinity(scores[j])) continue;
                        double p = Math.Exp(scores[j] - max);
                        sum += p;
                        for (int d = 0; d < dim; d++) want[d] += p * v[(r * seq + j) * width + h * dim + d];
                    }
                    for (int d = 0; d < dim; d++)
                        worst = Math.Max(worst, Math.Abs((sum > 0 ? want[d] / sum : 0) - got[qi + d]));
                }
        Assert.True(worst < 1e-4, $"{name}: max abs error {worst}");
    }

    private readonly struct AttentionAction(GpuOps ops, GpuTensor q, GpuTensor k, GpuTensor v, HeadLayout layout, int dim, GpuBatch batch, GpuTensor output)
        : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask
        {
            ops.Attention(q, layout, k, layout, v, layout, dim, batch, mask, output);
            return true;
        }
    }
}
