using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.Text;
using ModelGen.Generators.CodeFixes;

namespace ModelGen.Generators.Tests;

/// <summary>The code fix for MG0016: the generator's diagnostic, fixed in a workspace document, gone after the fix.</summary>
public class CodeFixTests
{
    [Theory]
    [InlineData("""[AttentionMask("m", "causal & window(8)")] public struct M { }""", """[AttentionMask("m", "causal & window(8)")] public partial struct M { }""")]
    [InlineData("""[AttentionMask("m", "causal")] public readonly struct M { }""", """[AttentionMask("m", "causal")] public readonly partial struct M { }""")]
    [InlineData("[AttentionMask(\"m\", \"causal\")]\nstruct M { }", "[AttentionMask(\"m\", \"causal\")]\npartial struct M { }")]
    public async Task A_mask_struct_that_is_not_partial_is_made_partial(string before, string after)
    {
        string source = GeneratorHarness.Usings + before;
        var diagnostic = Assert.Single(GeneratorHarness.Run(source).Diagnostics, d => d.Id == "MG0016");

        using var workspace = new AdhocWorkspace();
        var document = workspace.AddProject("Demo.Models", LanguageNames.CSharp).AddDocument("Models.cs", SourceText.From(source));
        var actions = new List<CodeAction>();
        // The diagnostic's location is in the generator run's tree: map it onto the workspace document's tree.
        var tree = (await document.GetSyntaxTreeAsync())!;
        var located = Diagnostic.Create(diagnostic.Descriptor, Location.Create(tree, diagnostic.Location.SourceSpan));
        var context = new CodeFixContext(document, located, (a, _) => actions.Add(a), CancellationToken.None);
        await new MakeMaskPartialCodeFix().RegisterCodeFixesAsync(context);
        var action = Assert.Single(actions);
        Assert.Equal("Make 'M' partial", action.Title);

        var operation = (await action.GetOperationsAsync(CancellationToken.None)).OfType<ApplyChangesOperation>().Single();
        string fixedText = (await operation.ChangedSolution.GetDocument(document.Id)!.GetTextAsync()).ToString();
        Assert.Equal(GeneratorHarness.Usings + after, fixedText);
        Assert.DoesNotContain(GeneratorHarness.Run(fixedText).Diagnostics, d => d.Id == "MG0016");
    }

    [Fact]
    public async Task A_nested_mask_struct_gets_no_fix()
    {
        string source = GeneratorHarness.Usings + """public static class Outer { [AttentionMask("m", "causal")] public partial struct M { } }""";
        var diagnostic = Assert.Single(GeneratorHarness.Run(source).Diagnostics, d => d.Id == "MG0016");
        using var workspace = new AdhocWorkspace();
        var document = workspace.AddProject("Demo.Models", LanguageNames.CSharp).AddDocument("Models.cs", SourceText.From(source));
        var tree = (await document.GetSyntaxTreeAsync())!;
        var actions = new List<CodeAction>();
        var context = new CodeFixContext(document, Diagnostic.Create(diagnostic.Descriptor, Location.Create(tree, diagnostic.Location.SourceSpan)),
            (a, _) => actions.Add(a), CancellationToken.None);
        await new MakeMaskPartialCodeFix().RegisterCodeFixesAsync(context);
        Assert.Empty(actions);
    }
}
