using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Rope;

/// <summary>
/// cos/sin of the rotary angles for a batch of position ids, as HF's <c>LlamaRotaryEmbedding.forward</c> computes
/// them in fp32: <c>freqs = inv_freq ⊗ positions</c>, <c>emb = cat(freqs, freqs)</c>, then <c>cos(emb)</c> and
/// <c>sin(emb)</c> times the attention scaling.
/// </summary>
public sealed class RopeTable
{
    /// <summary>The frequencies the table rotates by.</summary>
    public RopeFrequencies Frequencies { get; }

    /// <summary>Dimensions of each head that rotate (the last dimension of cos and sin).</summary>
    public int RotaryDim => Frequencies.RotaryDim;

    /// <summary>A table over <paramref name="frequencies"/>.</summary>
    public RopeTable(RopeFrequencies frequencies)
    {
        ArgumentNullException.ThrowIfNull(frequencies);
        Frequencies = frequencies;
    }

    /// <summary>A table for <paramref name="config"/> with heads of <paramref name="headDim"/> dimensions.</summary>
    public RopeTable(RopeConfig config, int headDim, int maxPositions)
        : this(new RopeFrequencies(config, headDim, maxPositions))
    {
    }

    /// <summary>
    /// cos and sin for <paramref name="positionIds"/> (int64 [B, S]), each fp32 [B, S, <see cref="RotaryDim"/>] on the
    /// ids' device. Dynamic and longrope pick their frequencies from <c>max(position_ids) + 1</c> over the whole
    /// batch, as HF's <c>dynamic_rope_update</c> does, so every row of one call shares one set of frequencies.
    /// </summary>
    public (Tensor cos, Tensor sin) CosSin(Tensor positionIds)
    {
        ArgumentNullException.ThrowIfNull(positionIds);
        if (positionIds.dim() != 2 || positionIds.dtype != ScalarType.Int64)
            throw new ArgumentException($"position ids must be int64 [batch, seq], got {positionIds.dtype} [{string.Join(", ", positionIds.shape)}]", nameof(positionIds));
        long seqLen = positionIds.numel() == 0 ? 0 : positionIds.max().item<long>() + 1;
        float[] invFreq = Frequencies.ForSequenceLength(seqLen);

        using var scope = NewDisposeScope();
        long batch = positionIds.shape[0];
        var inv = tensor(invFreq, device: positionIds.device).unsqueeze(0).unsqueeze(-1).expand(batch, -1, 1);
        var positions = positionIds.unsqueeze(1).to(ScalarType.Float32);
        // HF forms the outer product as a [B, R/2, 1] @ [B, 1, S] matmul: one rounding per element, kept here.
        var freqs = matmul(inv, positions).transpose(1, 2);
        var emb = cat([freqs, freqs], -1);
        var cos = emb.cos() * Frequencies.AttentionScaling;
        var sin = emb.sin() * Frequencies.AttentionScaling;
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }
}
