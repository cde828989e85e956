using ModelGen.Generators.Models;

namespace ModelGen.Generators.Masks;

/// <summary>One AND of parts, as the runtime's <c>MaskTerm</c>: flags and bounds (<see cref="None"/> when absent).</summary>
internal sealed record TermSpec(int Parts, int Window, int Prefix, int Head)
{
    public const int None = int.MaxValue;
    public const int Causal = 1, Document = 2, Anchor = 4;

    /// <summary>Allows every pair.</summary>
    public static TermSpec All { get; } = new(0, None, None, None);

    public TermSpec And(TermSpec other) => new(
        Parts | other.Parts,
        System.Math.Min(Window, other.Window),
        System.Math.Min(Prefix, other.Prefix),
        System.Math.Min(Head, other.Head));
}

/// <summary>
/// One valid <c>[AttentionMask]</c> struct: where it lives, its name and expression, the expression as terms (an OR of
/// at most four ANDs) and the predicate method, if any. Value-equatable.
/// </summary>
internal sealed record MaskSpec(
    string Namespace,
    string StructName,
    LocationInfo? Location,
    string Name,
    string Expression,
    EquatableArray<TermSpec> Terms,
    string? Predicate)
{
    public string FullName => Namespace.Length == 0 ? StructName : Namespace + "." + StructName;
    public string GlobalName => "global::" + FullName;
}

/// <summary>A parsed mask declaration: the spec when it has no errors, and its diagnostics.</summary>
internal sealed record MaskResult(MaskSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>The valid masks after the name check across declarations, and that check's diagnostics.</summary>
internal sealed record MaskSet(EquatableArray<MaskSpec> Valid, EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>What the mask catalog is generated from.</summary>
internal sealed record MaskCatalogModel(string Namespace, bool HasRuntime, EquatableArray<MaskSpec> Masks);
