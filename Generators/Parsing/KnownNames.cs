using System.Collections.Immutable;

namespace ModelGen.Generators.Parsing;

/// <summary>
/// Names the generator knows. The enum tables mirror <c>Runtime/Declarations/Enums.cs</c> (index = value);
/// a test checks them against the runtime enums, so the two cannot drift apart.
/// </summary>
internal static class KnownNames
{
    /// <summary>HF <c>model_type</c>s whose weight names and config binding are known.</summary>
    public static readonly ImmutableArray<string> Families = ImmutableArray.Create("llama", "mistral", "qwen2");

    /// <summary><c>ModelGen.RopeScaling</c> members by value.</summary>
    public static readonly ImmutableArray<string> RopeScaling = ImmutableArray.Create("Default", "Linear", "Dynamic", "Yarn", "Llama3", "LongRope");

    /// <summary><c>ModelGen.MaskKind</c> members by value.</summary>
    public static readonly ImmutableArray<string> MaskKind = ImmutableArray.Create("Causal", "IntraDocument", "IntraDocumentReset", "Anchor");

    /// <summary><c>ModelGen.MlpKind</c> members by value.</summary>
    public static readonly ImmutableArray<string> MlpKind = ImmutableArray.Create("SwiGlu");

    /// <summary><c>ModelGen.RopePrecision</c> members by value.</summary>
    public static readonly ImmutableArray<string> RopePrecision = ImmutableArray.Create("Fp32", "Bf16");
}
