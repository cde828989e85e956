namespace ModelGen;

/// <summary>How RoPE frequencies are scaled beyond the trained context (HF <c>rope_type</c>).</summary>
public enum RopeScaling
{
    /// <summary>Plain RoPE: inv_freq = θ^(-2i/d).</summary>
    Default,
    /// <summary>Position interpolation: frequencies divided by <c>factor</c>.</summary>
    Linear,
    /// <summary>Dynamic NTK: θ grows with the sequence once it exceeds the original context.</summary>
    Dynamic,
    /// <summary>YaRN: per-frequency blend of interpolation and extrapolation plus an attention factor.</summary>
    Yarn,
    /// <summary>Llama 3.1: low frequencies scaled by <c>factor</c>, high kept, a smooth band between.</summary>
    Llama3,
    /// <summary>LongRoPE (Phi-3): per-frequency short/long factors plus an attention factor.</summary>
    LongRope,
}

/// <summary>Which (query, key) pairs attention may use inside a packed window.</summary>
public enum MaskKind
{
    /// <summary>Full causal over the whole window: k ≤ q, documents ignored.</summary>
    Causal,
    /// <summary>Causal within each document: k ≤ q and doc[k] = doc[q]. Positions continuous.</summary>
    IntraDocument,
    /// <summary>Intra-document, and RoPE positions restart at 0 in each document.</summary>
    IntraDocumentReset,
    /// <summary>AnchorAttention: k ≤ q and (doc[k] = doc[q] or doc[k] = 0); token 0 is the shared anchor.</summary>
    Anchor,
}

/// <summary>The feed-forward block of each decoder layer.</summary>
public enum MlpKind
{
    /// <summary>down(silu(gate(x)) * up(x)), as Llama, Mistral and Qwen2.</summary>
    SwiGlu,
}

/// <summary>Numeric precision of the RoPE rotation (frequencies and angles are always computed in fp32).</summary>
public enum RopePrecision
{
    /// <summary>cos/sin and the rotation in fp32, rounded to the activation dtype afterwards.</summary>
    Fp32,
    /// <summary>cos/sin rounded to bf16 and the rotation done in bf16, as HF with bf16 activations does.</summary>
    Bf16,
}
