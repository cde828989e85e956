using ModelGen.Backends.Torch;
using ModelGen.Rope;

namespace ModelGen.Tests.Rope;

/// <summary>The fp32 port used where libtorch is absent (the GPU publish) against the ATen computation.</summary>
public class TorchFreeFrequenciesTests
{
    public static IEnumerable<object[]> AllFixtures() => Fixtures.AllWithLogits().Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(AllFixtures))]
    public void The_port_agrees_with_aten_within_two_ulps_at_every_length(string fixture)
    {
        string dir = Fixtures.Path_(fixture);
        var config = PretrainedModel.Config(dir, Models.ModelCatalog.All);
        var f = new RopeFrequencies(config.Rope, config.HeadDim, config.MaxPositions);
        foreach (long? len in new long?[] { null, f.OriginalContext + 1L, 4L * config.MaxPositions })
        {
            var aten = len is null ? f.InverseFrequencies : f.ForSequenceLength(len.Value);
            var port = f.ComputeWithoutTorch(len is null ? null : (len > f.OriginalContext && config.Rope.Scaling == RopeScaling.LongRope ? f.OriginalContext + 1L : len));
            if (len is not null && aten == f.InverseFrequencies) port = f.ComputeWithoutTorch(null);
            Assert.Equal(aten.Length, port.Length);
            for (int i = 0; i < aten.Length; i++)
            {
                int ulps = Math.Abs(BitConverter.SingleToInt32Bits(aten[i]) - BitConverter.SingleToInt32Bits(port[i]));
                Assert.True(ulps <= 2, $"{fixture} ({config.Rope.Scaling}, seq {len?.ToString() ?? "none"}) frequency {i}: ATen {aten[i]:R}, port {port[i]:R} ({ulps} ulp)");
            }
        }
    }
}
