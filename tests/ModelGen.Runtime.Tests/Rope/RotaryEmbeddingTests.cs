using ModelGen.Rope;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Tests.Rope;

public class RotaryEmbeddingTests
{
    private static Tensor Positions(params long[] ids) => tensor(ids).unsqueeze(0);

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Fact]
    public void CosSin_AreFp32_BatchSeqRotaryDim_WithDuplicatedHalves()
    {
        var table = new RopeTable(new RopeConfig { Theta = 10000 }, 64, 4096);
        var (cos, sin) = table.CosSin(tensor(new long[] { 0, 1, 2, 7, 3, 4, 5, 6 }).reshape(2, 4));
        Assert.Equal(new long[] { 2, 4, 64 }, cos.shape);
        Assert.Equal(ScalarType.Float32, sin.dtype);
        Assert.True(Same(cos.narrow(-1, 0, 32), cos.narrow(-1, 32, 32)));
        float inv = table.Frequencies.InverseFrequencies[5];
        Assert.Equal(MathF.Sin(inv * 7f), sin[0, 3, 5].item<float>(), 6);
    }

    [Fact]
    public void CosSin_Dynamic_TakesSequenceLengthFromTheWholeBatch()
    {
        var config = new RopeConfig { Scaling = RopeScaling.Dynamic, Theta = 10000, Factor = 2 };
        var table = new RopeTable(config, 64, 16);
        var (shortCos, _) = table.CosSin(Positions(0, 1, 2, 3));
        var (mixedCos, _) = table.CosSin(tensor(new long[] { 0, 1, 2, 3, 30, 31, 32, 33 }).reshape(2, 4));
        var grown = table.Frequencies.ForSequenceLength(34);
        // Row 0 has the same positions in both calls, but the second call's batch reaches 34 > 16 positions.
        Assert.False(Same(shortCos[0], mixedCos[0]));
        Assert.Equal(MathF.Cos(grown[31] * 3f), mixedCos[0, 3, 31].item<float>(), 6);
    }

    [Fact]
    public void CosSin_LongRope_AreScaledByTheAttentionFactor()
    {
        var config = new RopeConfig
        {
            Scaling = RopeScaling.LongRope, Theta = 10000, OriginalContext = 16, ShortFactor = [1.0, 1.0], LongFactor = [1.0, 2.0],
        };
        var table = new RopeTable(config, 4, 64);
        var (cos, sin) = table.CosSin(Positions(0, 17));
        float scale = table.Frequencies.AttentionScaling;
        Assert.True(scale > 1f);
        Assert.Equal(scale, cos[0, 0, 0].item<float>());
        Assert.Equal(scale * MathF.Sin(table.Frequencies.ForSequenceLength(18)[1] * 17f), sin[0, 1, 1].item<float>(), 5);
    }

    [Fact]
    public void PartialRotary_PassThroughDimsUntouched_RotatedPairsKeepTheirNorm()
    {
        var config = new RopeConfig { Theta = 10000, PartialRotaryFactor = 0.5 };
        var table = new RopeTable(config, 16, 4096);
        Assert.Equal(8, table.RotaryDim);
        var gen = new torch.Generator(7);
        var q = randn([1, 2, 5, 16], generator: gen);
        var k = randn([1, 1, 5, 16], generator: gen);
        var (cos, sin) = table.CosSin(Positions(0, 1, 100, 1000, 3000));
        var (qr, kr) = RotaryEmbedding.Apply(q, k, cos, sin, RopePrecision.Fp32);
        Assert.True(Same(qr.narrow(-1, 8, 8), q.narrow(-1, 8, 8)));
        Assert.True(Same(kr.narrow(-1, 8, 8), k.narrow(-1, 8, 8)));
        // rotate_half pairs dimension j with j + R/2.
        static Tensor PairNorms(Tensor x) => x.narrow(-1, 0, 4).square() + x.narrow(-1, 4, 4).square();
        Assert.True(PairNorms(qr).allclose(PairNorms(q), rtol: 1e-5, atol: 1e-6));
        Assert.True(PairNorms(kr).allclose(PairNorms(k), rtol: 1e-5, atol: 1e-6));
        // Position 0 is the identity rotation.
        Assert.True(Same(qr.narrow(2, 0, 1), q.narrow(2, 0, 1)));
    }

    [Fact]
    public void Apply_ReturnsTheInputDtype()
    {
        var table = new RopeTable(new RopeConfig(), 8, 64);
        var q = ones([1, 1, 2, 8], dtype: ScalarType.BFloat16);
        var (cos, sin) = table.CosSin(Positions(0, 1));
        foreach (var precision in new[] { RopePrecision.Fp32, RopePrecision.Bf16 })
        {
            var (qr, kr) = RotaryEmbedding.Apply(q, q, cos, sin, precision);
            Assert.Equal(ScalarType.BFloat16, qr.dtype);
            Assert.Equal(ScalarType.BFloat16, kr.dtype);
        }
    }

    // Mean over heads of |⟨RoPE(q, m), RoPE(k, n)⟩ − ⟨RoPE(q, m0), RoPE(k, n0)⟩| / (|q|·|k|) with m − n = m0 − n0:
    // zero for exact RoPE, whose scores depend only on the offset. Normalising by the norms keeps a near-orthogonal
    // pair from inflating the ratio.
    private static double RelativePositionError(long m, long n, long m0, long n0, RopePrecision precision)
    {
        const int heads = 32, dim = 128;
        var table = new RopeTable(new RopeConfig { Theta = 10000 }, dim, 8192);
        var gen = new torch.Generator(1234);
        var q = randn([1, heads, 1, dim], generator: gen);
        var k = randn([1, heads, 1, dim], generator: gen);
        double[] Scores(long qm, long kn)
        {
            var (cq, sq) = table.CosSin(Positions(qm));
            var (ck, sk) = table.CosSin(Positions(kn));
            var (qr, _) = RotaryEmbedding.Apply(q, q, cq, sq, precision);
            var (_, kr) = RotaryEmbedding.Apply(k, k, ck, sk, precision);
            return (qr.to(ScalarType.Float64) * kr.to(ScalarType.Float64)).sum(-1).flatten().data<double>().ToArray();
        }
        var norms = (q.to(ScalarType.Float64).norm(-1) * k.to(ScalarType.Float64).norm(-1)).flatten().data<double>().ToArray();
        Assert.Equal(m - n, m0 - n0);
        var near = Scores(m0, n0);
        var far = Scores(m, n);
        return near.Zip(far, (a, b) => Math.Abs(a - b)).Zip(norms, (d, z) => d / z).Average();
    }

    [Fact]
    public void Fp32_ScoresDependOnlyOnTheOffset()
    {
        double error = RelativePositionError(1005, 1002, 5, 2, RopePrecision.Fp32);
        Assert.True(error < 1e-4, $"relative error {error:E2}");
    }

    [Fact]
    public void Bf16_BreaksTheOffsetProperty_AtLargePositions()
    {
        double fp32 = RelativePositionError(4005, 4002, 5, 2, RopePrecision.Fp32);
        double bf16 = RelativePositionError(4005, 4002, 5, 2, RopePrecision.Bf16);
        Assert.True(bf16 > 10 * fp32, $"bf16 error {bf16:E2} is not > 10 × fp32 error {fp32:E2}");
    }
}
