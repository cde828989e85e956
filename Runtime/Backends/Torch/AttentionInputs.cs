using ModelGen.Masks;
using static TorchSharp.torch;

namespace ModelGen.Backends.Torch;

/// <summary>
/// What attention needs for one forward pass of a batch [B, S]: RoPE position ids and which pairs may attend —
/// either a mask kind over per-row document layouts (the fast path), or an explicit additive 4D mask as HF takes
/// it (for parity with reference logits only: it is L×L by construction).
/// </summary>
public sealed class AttentionInputs
{
    private AttentionInputs(Tensor positionIds, AttentionMask mask, IReadOnlyList<DocumentLayout>? layouts, Tensor? additiveMask)
    {
        PositionIds = positionIds;
        Mask = mask;
        Layouts = layouts;
        AdditiveMask = additiveMask;
    }

    /// <summary>RoPE positions, int64 [B, S].</summary>
    public Tensor PositionIds { get; }

    /// <summary>The mask kind and sliding window (ignored when <see cref="AdditiveMask"/> is set).</summary>
    public AttentionMask Mask { get; }

    /// <summary>Per-row document layouts; null for plain causal windows.</summary>
    public IReadOnlyList<DocumentLayout>? Layouts { get; }

    /// <summary>An explicit additive mask [B, 1, S, S] (0 allowed, very negative masked), or null.</summary>
    public Tensor? AdditiveMask { get; }

    /// <summary>Plain causal windows with positions 0…S-1 (and the model's sliding window, if any).</summary>
    public static AttentionInputs Causal(long batch, long length, int? slidingWindow = null) =>
        Causal(arange(length, dtype: ScalarType.Int64).unsqueeze(0).expand(batch, length).contiguous(), slidingWindow);

    /// <summary>Causal windows with explicit position ids [B, S] (and the model's sliding window, if any).</summary>
    public static AttentionInputs Causal(Tensor positionIds, int? slidingWindow = null) =>
        new(positionIds, new AttentionMask(MaskKind.Causal, slidingWindow), null, null);

    /// <summary>
    /// Packed windows: one layout per row. Positions are continuous, or restart per document for
    /// <see cref="MaskKind.IntraDocumentReset"/>.
    /// </summary>
    public static AttentionInputs Packed(IReadOnlyList<DocumentLayout> layouts, AttentionMask mask)
    {
        if (layouts.Count == 0) throw new ArgumentException("a batch needs at least one row", nameof(layouts));
        int length = layouts[0].Length;
        var pos = new long[layouts.Count * length];
        for (int b = 0; b < layouts.Count; b++)
        {
            if (layouts[b].Length != length)
                throw new ArgumentException($"row {b} has {layouts[b].Length} tokens but row 0 has {length}", nameof(layouts));
            layouts[b].PositionIds(mask.ResetsPositions).CopyTo(pos, b * length);
        }
        return new AttentionInputs(tensor(pos, [layouts.Count, length]), mask, layouts, null);
    }

    /// <summary>An explicit HF-style additive mask [B, 1, S, S] with the given position ids [B, S].</summary>
    public static AttentionInputs FromAdditiveMask(Tensor additiveMask, Tensor positionIds)
    {
        if (additiveMask.ndim != 4 || additiveMask.shape[1] != 1 || additiveMask.shape[2] != additiveMask.shape[3])
            throw new ArgumentException($"attention_mask must be [B, 1, S, S], got [{string.Join(", ", additiveMask.shape)}]");
        return new AttentionInputs(positionIds, new AttentionMask(MaskKind.Causal), null, additiveMask);
    }
}
