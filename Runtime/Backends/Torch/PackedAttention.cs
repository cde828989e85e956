using ModelGen.Masks;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Backends.Torch;

/// <summary>
/// Attention over packed windows on TorchSharp whose cost follows the mask: intra-document and anchor masks run
/// one causal attention per document (the anchor prepended to each document's keys, so "attend the anchor or
/// your own document, causally" is a plain causal attention over [anchor; document]). No L×L mask is built;
/// work is Σ over documents of len², not L². Declared masks (<see cref="AttentionMask.Custom"/>) run tiled, driven by
/// their tile map: empty tiles are skipped, full ones need no mask, and only partial ones evaluate the predicate.
/// </summary>
public static class PackedAttention
{
    /// <summary>Largest query block of the sliding-window path; keys span block + window.</summary>
    private const int WindowBlock = 256;

    /// <summary>
    /// q [B, Hq, S, D], k and v [B, Hkv, S, D] (Hkv divides Hq; rotary already applied). Returns [B, Hq, S, D].
    /// </summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, AttentionInputs inputs)
    {
        long hq = q.shape[1], hkv = k.shape[1];
        if (hq % hkv != 0) throw new ArgumentException($"{hkv} key/value heads do not divide {hq} query heads");
        if (hq != hkv)
        {
            // HF's repeat_kv: query head h reads kv head h / group.
            k = k.repeat_interleave(hq / hkv, dim: 1);
            v = v.repeat_interleave(hq / hkv, dim: 1);
        }

        if (inputs.AdditiveMask is { } additive)
            return nn.functional.scaled_dot_product_attention(q, k, v, additive.to(q.dtype));

        var mask = inputs.Mask;
        if (inputs.Layouts is null || mask.Kind == MaskKind.Causal)
        {
            if (mask.SlidingWindow is null) return nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
            long s = q.shape[2];
            return Blockwise(q, k, v, DocumentLayout.Single((int)s), mask);
        }

        // Rows that share a layout (the usual case: one packing per batch, or equal packings) run together.
        long batch = q.shape[0];
        if (inputs.Layouts.Count != batch)
            throw new ArgumentException($"{inputs.Layouts.Count} layouts for a batch of {batch} rows");
        var outputs = new Tensor[batch];
        var done = new bool[batch];
        for (int b = 0; b < batch; b++)
        {
            if (done[b]) continue;
            var rows = new List<long>();
            for (int r = b; r < batch; r++)
                if (!done[r] && inputs.Layouts[r].Equals(inputs.Layouts[b])) { rows.Add(r); done[r] = true; }
            using var index = tensor(rows.ToArray());
            var result = ForLayout(q.index_select(0, index), k.index_select(0, index), v.index_select(0, index), inputs.Layouts[b], mask);
            for (int i = 0; i < rows.Count; i++) outputs[rows[i]] = result[i].unsqueeze(0);
        }
        return cat(outputs, 0);
    }

    private static Tensor ForLayout(Tensor q, Tensor k, Tensor v, DocumentLayout layout, AttentionMask mask)
    {
        if (mask.Custom is not null) return Tiled(q, k, v, layout, mask);
        if (mask.SlidingWindow is not null) return Blockwise(q, k, v, layout, mask);
        // One split per tensor (its backward is a single cat) rather than a slice per document (each slice's backward
        // would allocate a full-length gradient: O(documents × L) extra memory traffic).
        long[] sizes = layout.Documents.Select(d => (long)d.Length).ToArray();
        var qs = q.split(sizes, 2);
        var ks = k.split(sizes, 2);
        var vs = v.split(sizes, 2);
        int a = layout.AnchorLength;
        var parts = new Tensor[sizes.Length];
        for (int i = 0; i < sizes.Length; i++)
        {
            var doc = layout.Documents[i];
            bool withAnchor = mask.Kind == MaskKind.Anchor && doc.Id != 0 && a > 0;
            if (!withAnchor)
            {
                parts[i] = Causal(qs[i], ks[i], vs[i]);
                continue;
            }
            // Causal attention over [anchor; document]: document query j sees the whole anchor and document keys ≤ j —
            // exactly the anchor mask. The anchor's own rows are computed by its own span, so they are dropped.
            var full = Causal(cat([qs[0], qs[i]], 2), cat([ks[0], ks[i]], 2), cat([vs[0], vs[i]], 2));
            parts[i] = full.narrow(2, a, doc.Length);
        }
        return parts.Length == 1 ? parts[0] : cat(parts, 2);
    }

    private static Tensor Causal(Tensor q, Tensor k, Tensor v) =>
        nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);

    /// <summary>
    /// Sliding-window (optionally with documents/anchor) attention in query blocks: each block sees only the keys
    /// its window and documents can reach, with a block-sized boolean mask from the element predicate.
    /// </summary>
    private static Tensor Blockwise(Tensor q, Tensor k, Tensor v, DocumentLayout layout, AttentionMask mask)
    {
        int s = layout.Length;
        int window = mask.SlidingWindow ?? s;
        int a = mask.Kind == MaskKind.Anchor ? layout.AnchorLength : 0;
        var parts = new List<Tensor>();
        for (int qs = 0; qs < s; qs += WindowBlock)
        {
            int qe = Math.Min(s, qs + WindowBlock);
            int ks = Math.Max(0, qs - window + 1);
            if (mask.Kind != MaskKind.Causal) ks = Math.Max(ks, layout.DocumentOf(qs).Start);
            // Anchor keys before the block's key range are reachable only if the window allows them.
            int anchorKeys = Math.Min(a, ks);
            var keyIndex = new List<long>(anchorKeys + qe - ks);
            for (int t = 0; t < anchorKeys; t++) keyIndex.Add(t);
            for (int t = ks; t < qe; t++) keyIndex.Add(t);
            var allowed = new bool[(qe - qs) * keyIndex.Count];
            for (int i = qs; i < qe; i++)
                for (int j = 0; j < keyIndex.Count; j++)
                    allowed[(i - qs) * keyIndex.Count + j] = mask.Allows(layout, i, (int)keyIndex[j]);
            using var keys = tensor(keyIndex.ToArray());
            using var m = tensor(allowed, [qe - qs, keyIndex.Count]);
            var qb = q[.., .., TensorIndex.Slice(qs, qe)];
            parts.Add(nn.functional.scaled_dot_product_attention(qb, k.index_select(2, keys), v.index_select(2, keys), m));
        }
        return parts.Count == 1 ? parts[0] : cat(parts, 2);
    }

    /// <summary>Query and key tile of the tiled path for declared masks.</summary>
    private const int Tile = 64;

    /// <summary>
    /// Attention for a declared mask, driven by its tile map: each query tile attends to the keys of its non-empty tiles
    /// only; when all of them are full it runs without a mask, otherwise with a mask of that query tile × those keys,
    /// true on full tiles and the element predicate on partial ones. Queries that the mask leaves without a key get 0.
    /// </summary>
    private static Tensor Tiled(Tensor q, Tensor k, Tensor v, DocumentLayout layout, AttentionMask mask)
    {
        var plans = mask.Apply<List<TilePlan>, PlanAction>(new PlanAction(layout));
        var parts = new List<Tensor>(plans.Count);
        foreach (var plan in plans)
        {
            var qb = q[.., .., TensorIndex.Slice(plan.Q0, plan.Q1)];
            if (plan.Keys.Length == 0)
            {
                parts.Add(zeros_like(qb));
                continue;
            }
            using var keys = tensor(plan.Keys);
            var kb = k.index_select(2, keys);
            var vb = v.index_select(2, keys);
            if (plan.Allowed is null)
            {
                parts.Add(nn.functional.scaled_dot_product_attention(qb, kb, vb));
                continue;
            }
            using var allowed = tensor(plan.Allowed, [plan.Q1 - plan.Q0, plan.Keys.Length]);
            var output = nn.functional.scaled_dot_product_attention(qb, kb, vb, allowed);
            if (plan.Keep is { } keep)
            {
                using var rows = tensor(keep, [plan.Q1 - plan.Q0, 1]).to(output.dtype);
                output = output * rows;
            }
            parts.Add(output);
        }
        return parts.Count == 1 ? parts[0] : cat(parts, 2);
    }

    /// <summary>One query tile: its keys, the element mask over them (null when every key tile is full), and which
    /// rows keep their output (null when every row has a key).</summary>
    private sealed record TilePlan(int Q0, int Q1, long[] Keys, bool[]? Allowed, bool[]? Keep);

    private readonly struct PlanAction(DocumentLayout layout) : IMaskAction<List<TilePlan>>
    {
        public List<TilePlan> Run<TMask>(TMask mask) where TMask : struct, IAttentionMask
        {
            var map = TileMap.Build(layout, mask, Tile, Tile);
            var docs = new HostDocuments(layout);
            int length = layout.Length;
            var plans = new List<TilePlan>(map.QueryTiles);
            for (int qt = 0; qt < map.QueryTiles; qt++)
            {
                int q0 = qt * Tile, q1 = Math.Min(length, q0 + Tile);
                var keys = new List<long>();
                bool partial = false;
                for (int kt = 0; kt < map.KeyTiles; kt++)
                {
                    if (map[qt, kt] == TileKind.Empty) continue;
                    partial |= map[qt, kt] == TileKind.Partial;
                    for (int t = kt * Tile; t < Math.Min(length, (kt + 1) * Tile); t++) keys.Add(t);
                }
                if (!partial)
                {
                    plans.Add(new TilePlan(q0, q1, keys.ToArray(), null, null));
                    continue;
                }
                int n = keys.Count;
                var allowed = new bool[(q1 - q0) * n];
                bool[]? keep = null;
                int column = 0;
                for (int kt = 0; kt < map.KeyTiles; kt++)
                {
                    var kind = map[qt, kt];
                    if (kind == TileKind.Empty) continue;
                    int k0 = kt * Tile, k1 = Math.Min(length, k0 + Tile);
                    for (int q = q0; q < q1; q++)
                    {
                        int docQ = docs.IndexOf(q), row = (q - q0) * n + column;
                        for (int k = k0; k < k1; k++)
                            allowed[row + k - k0] = kind == TileKind.Full || mask.Allows(docs, q, k, docQ, docs.IndexOf(k));
                    }
                    column += k1 - k0;
                }
                for (int r = 0; r < q1 - q0; r++)
                {
                    if (Array.IndexOf(allowed, true, r * n, n) >= 0) continue;
                    // A row without keys would make softmax NaN: let it see every key, then zero its output.
                    keep ??= Enumerable.Repeat(true, q1 - q0).ToArray();
                    keep[r] = false;
                    Array.Fill(allowed, true, r * n, n);
                }
                plans.Add(new TilePlan(q0, q1, keys.ToArray(), allowed, keep));
            }
            return plans;
        }
    }
}
