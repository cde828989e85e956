using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis.CSharp;
using ModelGen.Generators.Models;
using static ModelGen.Generators.Emit.Literals;

namespace ModelGen.Generators.Emit;

/// <summary>Emits the per-assembly <c>ModelCatalog</c>: every valid declaration and a lookup of family declarations.</summary>
internal static class CatalogEmitter
{
    public const string HintName = "ModelCatalog.g.cs";

    /// <summary>Fallback namespace for a compilation without an assembly name.</summary>
    public const string DefaultNamespace = "ModelGen.Generated";

    public static string Emit(CatalogModel model)
    {
        var w = CodeWriter.File(model.Target.Namespace);
        w.Line("/// <summary>The model declarations of this assembly, as the CLI and the trainer look them up.</summary>");
        w.Line(DeclarationEmitter.GeneratedCode);
        w.Line("public static class ModelCatalog");
        using (w.Block())
        {
            w.Line("/// <summary>Every model declaration of this assembly, sorted by full name.</summary>");
            w.Line("public static global::System.Collections.Generic.IReadOnlyList<global::ModelGen.ModelDeclaration> All { get; } =");
            w.Line("    new global::System.Collections.ObjectModel.ReadOnlyCollection<global::ModelGen.ModelDeclaration>(new global::ModelGen.ModelDeclaration[]");
            w.Line("    {");
            foreach (CatalogEntry entry in model.Entries) w.Line($"        {entry.GlobalName}.Declaration,");
            w.Line("    });");
            w.Line();
            w.Line("/// <summary>The family declaration (no <c>[Decoder]</c>) for an HF <c>model_type</c>, or null when there is none.</summary>");
            w.Line("/// <param name=\"modelType\">The <c>model_type</c> of a <c>config.json</c>, e.g. <c>llama</c>.</param>");
            w.Line("public static global::ModelGen.ModelDeclaration? ForFamily(string modelType) => modelType switch");
            using (w.Block(";"))
            {
                foreach (CatalogEntry entry in model.Entries.Where(e => e.IsFamily))
                    w.Line($"{String(entry.Family)} => {entry.GlobalName}.Declaration,");
                w.Line("_ => null,");
            }
        }
        return w.ToString();
    }

    /// <summary>The assembly name as a valid namespace: each dotted part an identifier (ModelGen.Models stays as is).</summary>
    public static string NamespaceFor(string? assemblyName)
    {
        var parts = (assemblyName ?? "").Split('.')
            .Select(Identifier)
            .Where(p => p.Length > 0)
            .ToArray();
        return parts.Length == 0 ? DefaultNamespace : string.Join(".", parts);
    }

    private static string Identifier(string part)
    {
        var text = new StringBuilder(part.Length);
        foreach (char c in part)
            text.Append(SyntaxFacts.IsIdentifierPartCharacter(c) ? c : '_');
        if (text.Length == 0) return "";
        if (!SyntaxFacts.IsIdentifierStartCharacter(text[0])) text.Insert(0, '_');
        string identifier = text.ToString();
        return SyntaxFacts.GetKeywordKind(identifier) != SyntaxKind.None || SyntaxFacts.GetContextualKeywordKind(identifier) != SyntaxKind.None
            ? "@" + identifier : identifier;
    }
}
