namespace ModelGen.Tests.Rope;

public class RopeValidationTests
{
    [Theory]
    [InlineData(RopeScaling.Linear, "rope_scaling.factor")]
    [InlineData(RopeScaling.Dynamic, "rope_scaling.factor")]
    [InlineData(RopeScaling.Yarn, "rope_scaling.factor")]
    [InlineData(RopeScaling.Llama3, "rope_scaling.original_max_position_embeddings")]
    [InlineData(RopeScaling.LongRope, "rope_scaling.short_factor")]
    public void MissingScalingParameter_IsNamed(RopeScaling scaling, string field)
    {
        var config = scaling == RopeScaling.Llama3
            ? new RopeConfig { Scaling = scaling, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4 }
            : new RopeConfig { Scaling = scaling };
        var e = Assert.Throws<ModelConfigException>(() => config.Validate("config.json", 128));
        Assert.Equal(field, e.Field);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void Llama3_MissingLowFreqFactor_IsNamed()
    {
        var config = new RopeConfig { Scaling = RopeScaling.Llama3, Factor = 8, OriginalContext = 8192, HighFreqFactor = 4 };
        var e = Assert.Throws<ModelConfigException>(() => config.Validate("config.json", 128));
        Assert.Equal("rope_scaling.low_freq_factor", e.Field);
    }

    [Fact]
    public void LongRope_WrongLongFactorLength_IsNamed()
    {
        var config = new RopeConfig { Scaling = RopeScaling.LongRope, ShortFactor = new double[64], LongFactor = new double[3] };
        var e = Assert.Throws<ModelConfigException>(() => config.Validate("config.json", 128));
        Assert.Equal("rope_scaling.long_factor", e.Field);
    }
}
