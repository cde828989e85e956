using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ModelGen.Generators.CodeFixes;

/// <summary>
/// MG0016 when the mask struct is not partial: adds the <c>partial</c> modifier (the generator emits the other half).
/// A nested mask struct has no obvious fix (moving it changes its name), so that case gets none.
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(MakeMaskPartialCodeFix)), Shared]
public sealed class MakeMaskPartialCodeFix : CodeFixProvider
{
    /// <summary>The diagnostic this fixes.</summary>
    public const string DiagnosticId = "MG0016";

    /// <inheritdoc/>
    public override ImmutableArray<string> FixableDiagnosticIds => ImmutableArray.Create(DiagnosticId);

    /// <inheritdoc/>
    public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

    /// <inheritdoc/>
    public override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        if (root is null) return;
        foreach (var diagnostic in context.Diagnostics)
        {
            var node = root.FindNode(diagnostic.Location.SourceSpan);
            var declaration = node.FirstAncestorOrSelf<StructDeclarationSyntax>();
            if (declaration is null || declaration.Modifiers.Any(SyntaxKind.PartialKeyword)) continue;
            context.RegisterCodeFix(
                CodeAction.Create($"Make '{declaration.Identifier.Text}' partial",
                    ct => MakePartialAsync(context.Document, declaration, ct), equivalenceKey: DiagnosticId),
                diagnostic);
        }
    }

    /// <summary>The document with <paramref name="declaration"/> marked partial (the modifier goes last, before <c>struct</c>).</summary>
    public static async Task<Document> MakePartialAsync(Document document, StructDeclarationSyntax declaration, CancellationToken cancellationToken)
    {
        var root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
        var partial = SyntaxFactory.Token(SyntaxKind.PartialKeyword).WithTrailingTrivia(SyntaxFactory.Space);
        StructDeclarationSyntax updated;
        if (declaration.Modifiers.Count == 0)
        {
            // Keep the leading trivia (attributes' line breaks, comments) on the first token.
            var keyword = declaration.Keyword;
            updated = declaration
                .WithKeyword(keyword.WithLeadingTrivia(SyntaxFactory.TriviaList()))
                .WithModifiers(SyntaxFactory.TokenList(partial.WithLeadingTrivia(keyword.LeadingTrivia)));
        }
        else updated = declaration.WithModifiers(declaration.Modifiers.Add(partial));
        return document.WithSyntaxRoot(root!.ReplaceNode(declaration, updated));
    }
}
