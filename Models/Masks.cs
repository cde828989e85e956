using ModelGen.Masks;

namespace ModelGen.Models;

// Declared attention masks. The generator turns each into a kernel-safe struct (element predicate + tile classifier)
// that both backends take as their mask type, and lists it in MaskCatalog: `modelgen train --mask anchor-sliding-window`.

/// <summary>AnchorAttention with a sliding window inside each document: a query sees the anchor and the last 64 tokens of its document.</summary>
[AttentionMask("anchor-sliding-window", "causal & (document & window(64) | anchor)")]
public partial struct AnchorSlidingWindow;

/// <summary>A prefix LM with an anchor: the first 64 tokens of the window attend to each other both ways; the rest is AnchorAttention.</summary>
[AttentionMask("prefix-lm-anchor", "prefix(64) | causal & (document | anchor)")]
public partial struct PrefixLmAnchor;

/// <summary>A query sees the anchor and the first 16 tokens of its own document (causally).</summary>
[AttentionMask("anchor-document-head", "causal & (anchor | document & head(16))")]
public partial struct AnchorDocumentHead;

/// <summary>
/// AnchorAttention thinned by a predicate: besides the anchor, a query sees the tokens of its document at distances that
/// are multiples of 4. The predicate is opaque to the generator, so its tiles are classified by evaluating it (MG0027).
/// </summary>
[AttentionMask("strided-anchor", "causal & (document | anchor)")]
public partial struct StridedAnchor
{
    [MaskPredicate]
    private static bool EveryFourth(in MaskPoint p) => p.K < p.AnchorLength || (p.Q - p.K) % 4 == 0;
}
