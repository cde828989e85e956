using static TorchSharp.torch;

namespace ModelGen.Rope;

/// <summary>
/// cos/sin tables of one model for batches of position ids, always in fp32 (HF's
/// <c>inv_freq ⊗ position_ids</c>, then <c>cat(freqs, freqs)</c>, times the attention scaling).
/// </summary>
public sealed class RopeTable
{
    private readonly RopeConfig _rope;
    private readonly int _headDim;
    private readonly int _maxPositions;
    private readonly RopeFrequencies _initial;

    /// <summary>A table for <paramref name="rope"/> on heads of <paramref name="headDim"/>.</summary>
    public RopeTable(RopeConfig rope, int headDim, int maxPositions)
    {
        rope.Validate("rope", headDim);
        (_rope, _headDim, _maxPositions) = (rope, headDim, maxPositions);
        _initial = RopeFrequencies.For(rope, headDim, maxPositions);
        RotaryDim = rope.RotaryDim(headDim);
    }

    /// <summary>Dimensions of each head that rotate.</summary>
    public int RotaryDim { get; }

    /// <summary>The frequencies a batch whose largest position is <paramref name="maxPositionId"/> uses.</summary>
    public RopeFrequencies FrequenciesFor(long maxPositionId) =>
        _rope.Scaling is RopeScaling.Dynamic or RopeScaling.LongRope
            ? RopeFrequencies.For(_rope, _headDim, _maxPositions, maxPositionId + 1)
            : _initial;

    /// <summary>cos and sin, fp32 [B, S, rotary_dim], for int64 position ids [B, S].</summary>
    public (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds)
    {
        var frequencies = FrequenciesFor(positionIds.max().item<long>());
        using var inv = tensor(frequencies.InverseFrequencies);
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * inv; // [B, S, dim/2]
        var emb = cat([freqs, freqs], -1);
        var cos = emb.cos();
        var sin = emb.sin();
        if (frequencies.AttentionScaling != 1f)
        {
            cos = cos * frequencies.AttentionScaling;
            sin = sin * frequencies.AttentionScaling;
        }
        return (cos, sin);
    }
}
