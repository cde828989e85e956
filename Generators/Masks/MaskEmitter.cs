using System.Collections.Generic;
using System.Linq;
using ModelGen.Generators.Emit;
using static ModelGen.Generators.Emit.Literals;

namespace ModelGen.Generators.Masks;

/// <summary>
/// Emits the generated part of one mask struct — its <c>IAttentionMask</c> implementation over the expression's terms
/// (analytic classifier) and predicate (element-wise classifier) — and the assembly's <c>MaskCatalog</c>.
/// </summary>
internal static class MaskEmitter
{
    private const string Masks = "global::ModelGen.Masks.";
    private const string Docs = "where TDocs : struct, " + Masks + "IDocumentBounds";

    public static string HintName(MaskSpec spec) => spec.FullName + ".Mask.g.cs";

    public const string CatalogHintName = "MaskCatalog.g.cs";

    public static string Emit(MaskSpec spec)
    {
        var w = CodeWriter.File(spec.Namespace);
        w.Line($"partial struct {spec.StructName} : {Masks}IAttentionMask");
        using (w.Block())
        {
            w.Line("/// <summary>The mask's name.</summary>");
            w.Line($"public const string Name = {String(spec.Name)};");
            w.Line();
            w.Line("/// <summary>The mask expression, as declared.</summary>");
            w.Line($"public const string Expression = {String(spec.Expression)};");
            w.Line();
            w.Line($"/// <summary>The expression as an OR of ANDs: {Describe(spec)}.</summary>");
            w.Line($"public static {Masks}MaskTerms Terms => new(");
            for (int i = 0; i < spec.Terms.Count; i++)
                w.Line($"    {Term(spec.Terms[i])}{(i + 1 < spec.Terms.Count ? "," : ");")}");
            w.Line();
            w.Line("/// <summary>The runtime descriptor, as listed in the assembly's <c>MaskCatalog</c>.</summary>");
            w.Line($"public static {Masks}MaskDefinition Definition {{ get; }} = new {Masks}MaskDefinition<{spec.StructName}>(Name, Expression, analytic: {Bool(spec.Predicate is null)});");
            w.Line();
            w.Line("/// <inheritdoc/>");
            w.Line(DeclarationEmitter.GeneratedCode);
            w.Line($"public bool Allows<TDocs>(in TDocs docs, int q, int k, int docQ, int docK) {Docs} =>");
            w.Line(spec.Predicate is null
                ? "    Terms.Allows(in docs, q, k, docQ, docK);"
                : $"    Terms.Allows(in docs, q, k, docQ, docK) && {spec.Predicate}({Masks}MaskPoint.Of(in docs, q, k, docQ, docK));");
            w.Line();
            w.Line("/// <inheritdoc/>");
            w.Line(DeclarationEmitter.GeneratedCode);
            w.Line($"public {Masks}RowSpans Spans<TDocs>(in TDocs docs, int q, int docQ) {Docs} =>");
            w.Line(spec.Predicate is null ? "    Terms.Spans(in docs, q, docQ);" : $"    {Masks}RowSpans.Inexact;");
            w.Line();
            w.Line("/// <inheritdoc/>");
            w.Line(DeclarationEmitter.GeneratedCode);
            if (spec.Predicate is null)
            {
                w.Line($"public {Masks}TileKind Classify<TDocs>(in TDocs docs, int q0, int q1, int k0, int k1) {Docs} =>");
                w.Line("    Terms.Classify(in docs, q0, q1, k0, k1);");
            }
            else
            {
                w.Line($"public {Masks}TileKind Classify<TDocs>(in TDocs docs, int q0, int q1, int k0, int k1) {Docs} =>");
                w.Line($"    Terms.Classify(in docs, q0, q1, k0, k1) == {Masks}TileKind.Empty");
                w.Line($"        ? {Masks}TileKind.Empty");
                w.Line($"        : {Masks}ElementwiseClassifier.Classify(in this, in docs, q0, q1, k0, k1);");
            }
        }
        return w.ToString();
    }

    private static string Term(TermSpec term)
    {
        var flags = new List<string>();
        if ((term.Parts & TermSpec.Causal) != 0) flags.Add(Masks + "MaskParts.Causal");
        if ((term.Parts & TermSpec.Document) != 0) flags.Add(Masks + "MaskParts.Document");
        if ((term.Parts & TermSpec.Anchor) != 0) flags.Add(Masks + "MaskParts.Anchor");
        var args = new List<string> { flags.Count == 0 ? Masks + "MaskParts.None" : string.Join(" | ", flags) };
        if (term.Window != TermSpec.None) args.Add("window: " + Int(term.Window));
        if (term.Prefix != TermSpec.None) args.Add("prefix: " + Int(term.Prefix));
        if (term.Head != TermSpec.None) args.Add("head: " + Int(term.Head));
        return $"new {Masks}MaskTerm({string.Join(", ", args)})";
    }

    /// <summary>The terms in expression syntax, e.g. <c>causal &amp; document | causal &amp; anchor</c>.</summary>
    public static string Describe(MaskSpec spec) => string.Join(" | ", spec.Terms.Select(t =>
    {
        var parts = new List<string>();
        if ((t.Parts & TermSpec.Causal) != 0) parts.Add("causal");
        if ((t.Parts & TermSpec.Document) != 0) parts.Add("document");
        if ((t.Parts & TermSpec.Anchor) != 0) parts.Add("anchor");
        if (t.Window != TermSpec.None) parts.Add($"window({Int(t.Window)})");
        if (t.Prefix != TermSpec.None) parts.Add($"prefix({Int(t.Prefix)})");
        if (t.Head != TermSpec.None) parts.Add($"head({Int(t.Head)})");
        return parts.Count == 0 ? "all" : string.Join(" &amp; ", parts);
    })) + (spec.Predicate is null ? "" : $", and {spec.Predicate}");

    public static string EmitCatalog(MaskCatalogModel model)
    {
        var w = CodeWriter.File(model.Namespace);
        w.Line("/// <summary>The attention masks declared in this assembly, registered with <c>MaskRegistry</c> when it loads.</summary>");
        w.Line(DeclarationEmitter.GeneratedCode);
        w.Line("public static class MaskCatalog");
        using (w.Block())
        {
            w.Line("/// <summary>Every mask declaration of this assembly, sorted by name.</summary>");
            w.Line($"public static global::System.Collections.Generic.IReadOnlyList<{Masks}MaskDefinition> All {{ get; }} =");
            w.Line($"    new global::System.Collections.ObjectModel.ReadOnlyCollection<{Masks}MaskDefinition>(new {Masks}MaskDefinition[]");
            w.Line("    {");
            foreach (MaskSpec mask in model.Masks) w.Line($"        {mask.GlobalName}.Definition,");
            w.Line("    });");
            w.Line();
            w.Line("/// <summary>The mask named <paramref name=\"name\"/> (case-insensitive), or null.</summary>");
            w.Line($"public static {Masks}MaskDefinition? Find(string name)");
            using (w.Block())
            {
                w.Line($"foreach ({Masks}MaskDefinition mask in All)");
                w.Line("    if (string.Equals(mask.Name, name, global::System.StringComparison.OrdinalIgnoreCase)) return mask;");
                w.Line("return null;");
            }
            w.Line();
            w.Line("#pragma warning disable CA2255 // registering the masks is the point of this module initializer");
            w.Line("[global::System.Runtime.CompilerServices.ModuleInitializer]");
            w.Line($"internal static void Register() => {Masks}MaskRegistry.Register(All);");
            w.Line("#pragma warning restore CA2255");
        }
        return w.ToString();
    }
}
