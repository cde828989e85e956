namespace ModelGen;

/// <summary>
/// Declares an attention mask on a <c>partial struct</c>: the generator implements <c>IAttentionMask</c> on it (element
/// predicate and analytic tile classifier) and lists it in the assembly's <c>MaskCatalog</c>, so both backends run it by
/// name (<c>modelgen train --mask NAME</c>).
/// </summary>
/// <remarks>
/// The expression is an OR (<c>|</c>) of ANDs (<c>&amp;</c>) of parts, with parentheses: <c>causal</c> (k ≤ q),
/// <c>document</c> (same document), <c>anchor</c> (k in the anchor prefix), <c>window(W)</c> (q − k &lt; W),
/// <c>prefix(P)</c> (q &lt; P and k &lt; P: a bidirectional prefix), <c>head(K)</c> (k among the first K tokens of its
/// document) and <c>all</c>. A static <c>[MaskPredicate]</c> method in the struct further restricts the mask.
/// </remarks>
[AttributeUsage(AttributeTargets.Struct, Inherited = false)]
public sealed class AttentionMaskAttribute(string name, string expression) : Attribute
{
    /// <summary>A mask given by its predicate alone (the expression is <c>all</c>).</summary>
    public AttentionMaskAttribute(string name) : this(name, "all") { }

    /// <summary>The mask's name, unique in the program.</summary>
    public string Name { get; } = name;
    /// <summary>The mask expression.</summary>
    public string Expression { get; } = expression;
}

/// <summary>
/// Marks <c>static bool Name(in MaskPoint p)</c> in an <c>[AttentionMask]</c> struct: the mask allows a pair when its
/// expression and this predicate both do. The predicate runs inside kernels, so it may not allocate, throw, recurse, read
/// mutable or instance state, or call through references; the generator reports each of those as an error. Its tiles are
/// classified by evaluating it (an Info diagnostic says so).
/// </summary>
[AttributeUsage(AttributeTargets.Method, Inherited = false)]
public sealed class MaskPredicateAttribute : Attribute;
