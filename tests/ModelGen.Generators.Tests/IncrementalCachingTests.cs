using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace ModelGen.Generators.Tests;

/// <summary>Edits that do not touch a declaration leave every tracked step cached and the sources unchanged.</summary>
public class IncrementalCachingTests
{
    /// <summary>Every tracked step but the one that maps diagnostics onto the new compilation's trees.</summary>
    private static readonly string[] ModelSteps =
    [
        ModelGenerator.Steps.Declarations, ModelGenerator.Steps.Specs, ModelGenerator.Steps.CollectedSpecs,
        ModelGenerator.Steps.DeclarationSet, ModelGenerator.Steps.Emitted, ModelGenerator.Steps.CatalogTarget,
        ModelGenerator.Steps.Catalog, ModelGenerator.Steps.DeclarationDiagnostics, ModelGenerator.Steps.Diagnostics,
    ];

    private static readonly string Models = GeneratorHarness.Usings + Declarations.TinyLlama3 + Declarations.LlamaFamily
        + """[CausalLM("llama")] [Rope(Factor = 8)] public partial class WithWarning { }""";

    private static SyntaxTree Tree(string text, string path) => CSharpSyntaxTree.ParseText(text, GeneratorHarness.ParseOptions, path);

    private static (GeneratorRunResult First, GeneratorRunResult Second) RunTwice(CSharpCompilation first, Func<CSharpCompilation, CSharpCompilation> edit)
    {
        GeneratorDriver driver = GeneratorHarness.Driver().RunGenerators(first);
        GeneratorRunResult firstRun = driver.GetRunResult().Results.Single();
        driver = driver.RunGenerators(edit(first));
        return (firstRun, driver.GetRunResult().Results.Single());
    }

    private static void AssertAllCached(GeneratorRunResult run)
    {
        foreach (string step in ModelSteps)
        {
            Assert.True(run.TrackedSteps.ContainsKey(step), $"step {step} was not tracked");
            foreach (IncrementalGeneratorRunStep runStep in run.TrackedSteps[step])
            {
                foreach (var (_, reason) in runStep.Outputs)
                    Assert.True(reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"step {step} was {reason}");
            }
        }
    }

    private static void AssertSameSources(GeneratorRunResult first, GeneratorRunResult second)
    {
        Assert.Equal(
            first.GeneratedSources.Select(s => (s.HintName, s.SourceText.ToString())),
            second.GeneratedSources.Select(s => (s.HintName, s.SourceText.ToString())));
        Assert.Equal(first.Diagnostics.Select(d => d.ToString()), second.Diagnostics.Select(d => d.ToString()));
    }

    [Fact]
    public void Adding_an_unrelated_file_keeps_every_step_cached()
    {
        var (first, second) = RunTwice(
            GeneratorHarness.Compilation("Demo.Models", ("Models.cs", Models)),
            c => c.AddSyntaxTrees(Tree("namespace Other; public class Unrelated { }", "Unrelated.cs")));
        AssertAllCached(second);
        AssertSameSources(first, second);
    }

    [Fact]
    public void Editing_an_unrelated_file_keeps_every_step_cached()
    {
        var (first, second) = RunTwice(
            GeneratorHarness.Compilation("Demo.Models", ("Models.cs", Models), ("Unrelated.cs", "namespace Other; public class Unrelated { }")),
            c => c.ReplaceSyntaxTree(
                c.SyntaxTrees.Single(t => t.FilePath == "Unrelated.cs"),
                Tree("namespace Other; public class Unrelated { public int X => 1; }", "Unrelated.cs")));
        AssertAllCached(second);
        AssertSameSources(first, second);
    }

    [Fact]
    public void Editing_one_declaration_file_leaves_the_other_declaration_cached()
    {
        const string tiny = GeneratorHarness.Usings + Declarations.TinyLlama3;
        var (_, second) = RunTwice(
            GeneratorHarness.Compilation("Demo.Models", ("Tiny.cs", tiny), ("Llama.cs", GeneratorHarness.Usings + Declarations.LlamaFamily)),
            c => c.ReplaceSyntaxTree(
                c.SyntaxTrees.Single(t => t.FilePath == "Llama.cs"),
                Tree(GeneratorHarness.Usings + Declarations.LlamaFamily.Replace("Eps = 1e-5", "Eps = 1e-6"), "Llama.cs")));
        var emitted = second.TrackedSteps[ModelGenerator.Steps.Emitted].SelectMany(s => s.Outputs).ToList();
        Assert.Contains(emitted, o => o.Reason == IncrementalStepRunReason.Modified);
        Assert.Contains(emitted, o => o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged);
        Assert.Contains("RmsNormEps = 1E-06d,", second.GeneratedSources.Single(s => s.HintName == "Demo.Models.Llama.g.cs").SourceText.ToString());
    }
}
