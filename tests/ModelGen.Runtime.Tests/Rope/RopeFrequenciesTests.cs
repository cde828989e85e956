using ModelGen.Rope;

namespace ModelGen.Tests.Rope;

public class RopeFrequenciesTests
{
    // fp32 pow and reciprocal each round once; a few ulps of 2^-24 cover the whole chain.
    private const double Fp32Tolerance = 1e-6;

    private static void AssertRelative(double expected, double actual, double tolerance, string what)
    {
        double error = Math.Abs(actual - expected) / Math.Abs(expected);
        Assert.True(error <= tolerance, $"{what}: expected {expected:R}, got {actual:R} (relative error {error:E2} > {tolerance:E0})");
    }

    private static double[] Plain(double theta, int dim) =>
        Enumerable.Range(0, dim / 2).Select(i => Math.Pow(theta, -2.0 * i / dim)).ToArray();

    [Fact]
    public void Default_InverseFrequencies_AreThetaToTheMinus2iOverD()
    {
        var f = new RopeFrequencies(new RopeConfig { Theta = 10000 }, 128, 4096);
        var expected = Plain(10000, 128);
        Assert.Equal(64, f.InverseFrequencies.Length);
        Assert.Equal(1f, f.AttentionScaling);
        for (int i = 0; i < expected.Length; i++) AssertRelative(expected[i], f.InverseFrequencies[i], Fp32Tolerance, $"inv_freq[{i}]");
    }

    [Fact]
    public void Linear_IsDefaultDividedByFactor()
    {
        var plain = new RopeFrequencies(new RopeConfig { Theta = 10000 }, 64, 4096).InverseFrequencies;
        var linear = new RopeFrequencies(new RopeConfig { Scaling = RopeScaling.Linear, Theta = 10000, Factor = 4 }, 64, 4096).InverseFrequencies;
        // HF divides the fp32 default buffer in place, so the result is the fp32 quotient exactly.
        Assert.Equal(plain.Select(x => x / 4f), linear);
    }

    // Llama 3.1: head_dim 128, θ 500000, factor 8, low 1, high 4, original 8192.
    private static readonly RopeConfig Llama31 = new()
    {
        Scaling = RopeScaling.Llama3, Theta = 500000, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalContext = 8192,
    };

    /// <summary>The three wavelength bands of llama3 scaling.</summary>
    public enum Band { High, Middle, Low }

    // A float64 re-derivation of HF's _compute_llama3_parameters, written from the formula, not from the library.
    private static (Band Band, double Value)[] Llama31Float64()
    {
        const double factor = 8, low = 1, high = 4, original = 8192;
        return Plain(500000, 128).Select(inv =>
        {
            double wavelen = 2 * Math.PI / inv;
            if (wavelen < original / high) return (Band.High, inv);
            if (wavelen > original / low) return (Band.Low, inv / factor);
            double smooth = (original / wavelen - low) / (high - low);
            return (Band.Middle, (1 - smooth) * inv / factor + smooth * inv);
        }).ToArray();
    }

    [Theory]
    [InlineData(Band.High)]
    [InlineData(Band.Middle)]
    [InlineData(Band.Low)]
    public void Llama3_MatchesFloat64Formula_InEachWavelengthBand(Band band)
    {
        var actual = new RopeFrequencies(Llama31, 128, 131072).InverseFrequencies;
        var expected = Llama31Float64();
        int count = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i].Band != band) continue;
            count++;
            // The middle band subtracts nearby quantities, so its fp32 error is a little larger than a few ulps.
            AssertRelative(expected[i].Value, actual[i], 1e-5, $"{band} inv_freq[{i}]");
        }
        Assert.True(count > 0, $"no frequency falls in the {band} band");
    }

    [Fact]
    public void Llama3_HighBandUnchanged_LowBandDividedByFactor()
    {
        var plain = new RopeFrequencies(new RopeConfig { Theta = 500000 }, 128, 131072).InverseFrequencies;
        var llama = new RopeFrequencies(Llama31, 128, 131072).InverseFrequencies;
        var bands = Llama31Float64();
        for (int i = 0; i < bands.Length; i++)
        {
            if (bands[i].Band == Band.High) Assert.Equal(plain[i], llama[i]);
            if (bands[i].Band == Band.Low) Assert.Equal(plain[i] / 8f, llama[i]);
        }
    }

    private static RopeConfig Yarn(bool truncate = true) => new()
    {
        Scaling = RopeScaling.Yarn, Theta = 10000, Factor = 4, OriginalContext = 4096, Truncate = truncate,
    };

    [Fact]
    public void Yarn_DefaultAttentionFactor_IsPoint1LnFactorPlus1()
    {
        var f = new RopeFrequencies(Yarn(), 128, 16384);
        Assert.Equal((float)(0.1 * Math.Log(4) + 1), f.AttentionScaling);
    }

    [Fact]
    public void Yarn_EqualMscales_GiveAttentionFactorOne()
    {
        var f = new RopeFrequencies(Yarn() with { Mscale = 0.707, MscaleAllDim = 0.707 }, 128, 16384);
        Assert.Equal(1f, f.AttentionScaling);
    }

    [Fact]
    public void Yarn_ExtrapolatesHighestAndInterpolatesLowestFrequencies()
    {
        var plain = new RopeFrequencies(new RopeConfig { Theta = 10000 }, 128, 16384).InverseFrequencies;
        var yarn = new RopeFrequencies(Yarn(), 128, 16384).InverseFrequencies;
        Assert.Equal(plain[0], yarn[0]);
        AssertRelative(plain[^1] / 4.0, yarn[^1], Fp32Tolerance, "lowest frequency");
        // In between, the ramp blends the two, so each frequency lies between interpolation and extrapolation.
        for (int i = 0; i < yarn.Length; i++)
            Assert.InRange(yarn[i], plain[i] / 4f * (1 - 1e-6f), plain[i] * (1 + 1e-6f));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Yarn_MatchesFloat64Formula(bool truncate)
    {
        var actual = new RopeFrequencies(Yarn(truncate), 128, 16384).InverseFrequencies;
        var expected = RopeFrequencies.Float64(Yarn(truncate), 128, 16384);
        for (int i = 0; i < expected.Length; i++) AssertRelative(expected[i], actual[i], 1e-5, $"inv_freq[{i}]");
    }

    [Fact]
    public void Yarn_TruncateOnAndOff_DifferOnlyInTheRamp()
    {
        var on = new RopeFrequencies(Yarn(true), 128, 16384).InverseFrequencies;
        var off = new RopeFrequencies(Yarn(false), 128, 16384).InverseFrequencies;
        // truncate floors/ceils the correction range (20.9.. → 20, 45.0.. → 46); both ends stay pure.
        Assert.Equal(on[0], off[0]);
        Assert.Equal(on[^1], off[^1]);
        Assert.Contains(Enumerable.Range(0, on.Length), i => Math.Abs(on[i] - off[i]) > 1e-3 * on[i]);
    }

    private static readonly RopeConfig Dynamic = new() { Scaling = RopeScaling.Dynamic, Theta = 10000, Factor = 2 };

    [Theory]
    [InlineData(1)]
    [InlineData(2048)]
    [InlineData(4096)]
    public void Dynamic_WithinMaxPositions_IsDefault(long seqLen)
    {
        var plain = new RopeFrequencies(new RopeConfig { Theta = 10000 }, 128, 4096).InverseFrequencies;
        var f = new RopeFrequencies(Dynamic, 128, 4096);
        Assert.Equal(plain, f.InverseFrequencies);
        Assert.Equal(plain, f.ForSequenceLength(seqLen));
    }

    [Theory]
    [InlineData(4097)]
    [InlineData(10000)]
    public void Dynamic_BeyondMaxPositions_GrowsTheBase(long seqLen)
    {
        var f = new RopeFrequencies(Dynamic, 128, 4096);
        double theta = 10000 * Math.Pow(2.0 * seqLen / 4096 - 1, 128.0 / 126);
        var expected = Plain(theta, 128);
        var actual = f.ForSequenceLength(seqLen);
        Assert.True(theta > 10000);
        for (int i = 0; i < expected.Length; i++) AssertRelative(expected[i], actual[i], 1e-5, $"inv_freq[{i}]");
        Assert.True(actual[^1] < f.InverseFrequencies[^1]);
    }

    private static RopeConfig LongRope() => new()
    {
        Scaling = RopeScaling.LongRope, Theta = 10000, OriginalContext = 4096,
        ShortFactor = [1.0, 1.5, 2.0, 3.0], LongFactor = [1.0, 4.0, 16.0, 64.0],
    };

    [Fact]
    public void LongRope_UsesShortFactorsUpToOriginal_LongBeyond()
    {
        var f = new RopeFrequencies(LongRope(), 8, 131072);
        var plain = Plain(10000, 8);
        double[] shortF = [1.0, 1.5, 2.0, 3.0], longF = [1.0, 4.0, 16.0, 64.0];
        for (int i = 0; i < 4; i++)
        {
            AssertRelative(plain[i] / shortF[i], f.InverseFrequencies[i], Fp32Tolerance, $"init[{i}]");
            AssertRelative(plain[i] / shortF[i], f.ForSequenceLength(4096)[i], Fp32Tolerance, $"short[{i}]");
            AssertRelative(plain[i] / longF[i], f.ForSequenceLength(4097)[i], Fp32Tolerance, $"long[{i}]");
        }
    }

    [Fact]
    public void LongRope_AttentionFactor_IsSqrtOf1PlusLnFactorOverLnOriginal()
    {
        // No explicit factor: HF uses max_position_embeddings / original = 32.
        var f = new RopeFrequencies(LongRope(), 8, 131072);
        Assert.Equal((float)Math.Sqrt(1 + Math.Log(32) / Math.Log(4096)), f.AttentionScaling);
        var explicitFactor = new RopeFrequencies(LongRope() with { Factor = 8 }, 8, 131072);
        Assert.Equal((float)Math.Sqrt(1 + Math.Log(8) / Math.Log(4096)), explicitFactor.AttentionScaling);
        var given = new RopeFrequencies(LongRope() with { AttentionFactor = 1.25 }, 8, 131072);
        Assert.Equal(1.25f, given.AttentionScaling);
    }

    [Fact]
    public void OriginalContext_FallsBackToMaxPositions_ForYarnAndLongRope()
    {
        Assert.Equal(4096, RopeFrequencies.OriginalContextOf(Yarn() with { OriginalContext = 0 }, 4096));
        Assert.Equal(4096, RopeFrequencies.OriginalContextOf(LongRope() with { OriginalContext = 0 }, 4096));
        // Dynamic always measures against max_position_embeddings, even when an original context is given.
        Assert.Equal(4096, RopeFrequencies.OriginalContextOf(Dynamic with { OriginalContext = 2048 }, 4096));
    }
}
