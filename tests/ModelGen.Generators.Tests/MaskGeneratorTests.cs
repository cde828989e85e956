using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace ModelGen.Generators.Tests;

/// <summary>[AttentionMask] structs: emitted sources (snapshots), the catalog, diagnostics and incremental caching.</summary>
public class MaskGeneratorTests
{
    private const string Usings = "using ModelGen;\nusing ModelGen.Masks;\n\nnamespace Demo.Models;\n\n";

    private const string AnchorWindow = """
        [AttentionMask("anchor-window", "causal & (document & window(64) | anchor)")]
        public partial struct AnchorWindow;

        """;

    private const string Strided = """
        [AttentionMask("strided", "causal")]
        public partial struct Strided
        {
            [MaskPredicate]
            private static bool EveryFourth(in MaskPoint p) => (p.Q - p.K) % 4 == 0;
        }

        """;

    private static string Snapshot(string name) =>
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Snapshots", name)).Replace("\r\n", "\n");

    private static readonly GeneratorResult Result = GeneratorHarness.Run(Usings + AnchorWindow + Strided);

    [Fact]
    public void Expression_mask_emits_the_snapshot()
    {
        Assert.Equal(Snapshot("AnchorWindow.Mask.g.cs.txt"), Result.Sources["Demo.Models.AnchorWindow.Mask.g.cs"]);
    }

    [Fact]
    public void Predicate_mask_emits_the_snapshot_with_the_elementwise_classifier()
    {
        string source = Result.Sources["Demo.Models.Strided.Mask.g.cs"];
        Assert.Equal(Snapshot("Strided.Mask.g.cs.txt"), source);
        Assert.Contains("ElementwiseClassifier.Classify", source);
    }

    [Fact]
    public void Mask_catalog_emits_the_snapshot()
    {
        Assert.Equal(Snapshot("MaskCatalog.g.cs.txt"), Result.Sources["MaskCatalog.g.cs"]);
    }

    [Fact]
    public void A_predicate_is_reported_as_classified_element_wise_and_nothing_else()
    {
        Diagnostic info = Assert.Single(Result.Diagnostics);
        Assert.Equal("MG0027", info.Id);
        Assert.Equal(DiagnosticSeverity.Info, info.Severity);
        Assert.Equal("EveryFourth", info.LocatedText());
        Assert.Equal("Mask 'strided': predicate 'EveryFourth' cannot be analyzed, so tiles its expression does not rule out are classified by evaluating it on every pair (once per tile map)", info.Message());
    }

    [Fact]
    public void Generated_masks_compile_load_and_register()
    {
        Assert.Empty(Result.CompilationDiagnostics);
        var assembly = Result.Load();
        var all = (IEnumerable<ModelGen.Masks.MaskDefinition>)assembly.GetType("Demo.Models.MaskCatalog")!.GetProperty("All")!.GetValue(null)!;
        Assert.Equal(["anchor-window", "strided"], all.Select(m => m.Name));
        Assert.Equal([true, false], all.Select(m => m.IsAnalytic));

        // The generated expression mask is the terms it was declared as, pair by pair and tile by tile.
        var layout = ModelGen.Masks.DocumentLayout.Anchored(300, 1, 90, 200);
        var declared = ModelGen.Masks.AttentionMask.Of(all.First());
        var map = ModelGen.Masks.TileMap.Build(layout, declared, 16, 16);
        Assert.Equal(ModelGen.Masks.TileKind.Empty, map[5, 7]);   // queries 80..95 never see later keys
        Assert.Equal(ModelGen.Masks.TileKind.Full, map[18, 15]);  // queries 288.. see keys 240..255 of their document
        Assert.True(declared.Allows(layout, 250, 0));             // the anchor
        Assert.False(declared.Allows(layout, 299, 200));          // outside the 64-token window
    }

    // Diagnostics.

    private static IReadOnlyList<Diagnostic> Diagnostics(string declaration)
    {
        GeneratorResult result = GeneratorHarness.Run(Usings + declaration);
        Assert.Empty(result.CompilationDiagnostics); // the declaration itself is valid C#
        return result.Diagnostics;
    }

    private static void AssertSingle(string id, string locatedText, string message, string declaration)
    {
        var diagnostics = Diagnostics(declaration);
        Diagnostic diagnostic = Assert.Single(diagnostics);
        Assert.Equal(id, diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Equal(locatedText, diagnostic.LocatedText());
        Assert.Equal(message, diagnostic.Message());
        Assert.DoesNotContain(GeneratorHarness.Run(Usings + declaration).Sources.Keys, k => k.EndsWith(".Mask.g.cs", StringComparison.Ordinal));
    }

    [Fact]
    public void MG0016_mask_that_is_not_a_partial_struct()
    {
        AssertSingle("MG0016", "M", "Mask declaration 'M' must be a top-level, non-generic 'partial struct' (it is not partial)",
            """[AttentionMask("m", "causal")] public struct M { }""");
    }

    [Fact]
    public void MG0017_unbalanced_parenthesis()
    {
        AssertSingle("MG0017", "\"causal & (document\"", "Mask expression 'causal & (document' is invalid at position 18: expected ')' but the expression ends",
            """[AttentionMask("m", "causal & (document")] public partial struct M;""");
    }

    [Fact]
    public void MG0018_unknown_part()
    {
        AssertSingle("MG0018", "sliding", "Unknown mask part 'sliding'; known parts are all, causal, document, anchor, window(W), prefix(P), head(K)",
            """[AttentionMask("m", "causal & sliding(4)")] public partial struct M;""");
    }

    [Theory]
    [InlineData("causal & window", "window", "'window' needs a positive integer argument, e.g. window(64)")]
    [InlineData("causal & window(0)", "window(0)", "'window' needs a positive integer, got '0'")]
    [InlineData("causal(3)", "causal(3)", "'causal' takes no argument")]
    public void MG0019_bad_part_argument(string expression, string located, string message)
    {
        AssertSingle("MG0019", located, "Invalid mask part argument: " + message,
            $$"""[AttentionMask("m", "{{expression}}")] public partial struct M;""");
    }

    [Fact]
    public void MG0020_too_many_alternatives()
    {
        const string expression = "(causal | document) & (anchor | window(4)) & (prefix(8) | head(2) | all)";
        AssertSingle("MG0020", $"\"{expression}\"", $"Mask expression '{expression}' expands to 12 alternatives (ORs of ANDs); at most 4 are supported",
            $$"""[AttentionMask("m", "{{expression}}")] public partial struct M;""");
    }

    private static string Predicate(string body, string members = "") => $$"""
        [AttentionMask("m", "causal")]
        public partial struct M
        {
            {{members}}
            [MaskPredicate]
            private static bool P(in MaskPoint p) {{body}}
        }
        """;

    [Fact]
    public void MG0021_predicate_with_the_wrong_signature()
    {
        AssertSingle("MG0021", "P", "[MaskPredicate] method 'P' is invalid: it must be 'static bool P(in MaskPoint p)'",
            """
            [AttentionMask("m")]
            public partial struct M
            {
                [MaskPredicate] private static bool P(int q, int k) => q >= k;
            }
            """);
    }

    [Fact]
    public void MG0022_predicate_that_allocates()
    {
        AssertSingle("MG0022", "new object()", "Mask predicate 'P' cannot run in a kernel: 'new object' allocates on the managed heap",
            Predicate("{ object o = new object(); return p.Q > p.K; }"));
    }

    [Fact]
    public void MG0023_predicate_that_calls_through_a_reference()
    {
        AssertSingle("MG0023", "\"abc\".Contains('a')",
            "Mask predicate 'P' cannot run in a kernel: the call to 'string.Contains(char)' is a virtual, interface or instance call on a reference type",
            Predicate("=> p.Q > p.K && \"abc\".Contains('a');"));
    }

    [Fact]
    public void MG0024_predicate_that_reads_mutable_static_state()
    {
        AssertSingle("MG0024", "Counter",
            "Mask 'P' cannot run in a kernel: it uses mutable static field 'Counter'; a mask may use only its arguments, constants and readonly static values",
            Predicate("=> p.Q - p.K < Counter;", "private static int Counter = 3;"));
    }

    [Fact]
    public void MG0024_mask_with_instance_state()
    {
        AssertSingle("MG0024", "Width",
            "Mask 'M' cannot run in a kernel: it uses instance field 'Width' (the generated struct is used as default(T)); a mask may use only its arguments, constants and readonly static values",
            """[AttentionMask("m", "causal")] public partial struct M { public int Width; }""");
    }

    [Fact]
    public void MG0024_instance_predicate()
    {
        AssertSingle("MG0024", "P",
            "Mask 'P' cannot run in a kernel: it uses the instance (the predicate must be static); a mask may use only its arguments, constants and readonly static values",
            """[AttentionMask("m")] public partial struct M { [MaskPredicate] private bool P(in MaskPoint p) => p.Q >= p.K; }""");
    }

    [Fact]
    public void MG0025_recursive_predicate()
    {
        AssertSingle("MG0025", "P(p)", "Mask predicate 'P' cannot run in a kernel: it calls itself",
            Predicate("=> p.Q == 0 || P(p);"));
    }

    [Fact]
    public void MG0025_recursion_through_a_helper()
    {
        AssertSingle("MG0025", "P(p)", "Mask predicate 'P' cannot run in a kernel: it calls itself through 'Helper'",
            Predicate("=> Helper(p);", "private static bool Helper(in MaskPoint p) => p.Q == 0 || P(p);"));
    }

    [Fact]
    public void MG0026_predicate_with_a_try_block()
    {
        AssertSingle("MG0026", "try { return p.Q > p.K; } finally { }",
            "Mask predicate 'P' cannot run in a kernel: it has a try block, and kernels have no exceptions",
            Predicate("{ try { return p.Q > p.K; } finally { } }"));
    }

    [Fact]
    public void MG0026_predicate_that_throws_also_reports_the_allocation()
    {
        var ids = Diagnostics(Predicate("=> p.Q >= p.K ? true : throw new System.InvalidOperationException();")).Select(d => d.Id).Order();
        Assert.Equal(["MG0022", "MG0026"], ids);
    }

    [Fact]
    public void Kernel_safe_helpers_and_math_are_accepted()
    {
        var diagnostics = Diagnostics(Predicate("=> Near(p.Q, p.K) && System.Math.Abs(p.Q - p.K) % Stride == 0;",
            "private const int Stride = 3; private static readonly int Limit = 8; private static bool Near(int q, int k) => q - k < Limit;"));
        Assert.Equal(["MG0027"], diagnostics.Select(d => d.Id));
    }

    [Fact]
    public void MG0028_mask_name_declared_twice()
    {
        var diagnostics = Diagnostics("""
            [AttentionMask("same", "causal")] public partial struct First;
            [AttentionMask("Same", "causal & document")] public partial struct Second;
            """);
        Diagnostic diagnostic = Assert.Single(diagnostics);
        Assert.Equal("MG0028", diagnostic.Id);
        Assert.Equal("Second", diagnostic.LocatedText());
        Assert.Equal("Mask name 'Same' is already declared by 'Demo.Models.First'", diagnostic.Message());
    }

    // Incremental caching.

    private static readonly string[] MaskSteps =
    [
        Masks.MaskPipeline.Steps.MaskDeclarations, Masks.MaskPipeline.Steps.MaskSet, Masks.MaskPipeline.Steps.MaskEmitted,
        Masks.MaskPipeline.Steps.MaskCatalog, Masks.MaskPipeline.Steps.MaskDiagnostics,
    ];

    private static SyntaxTree Tree(string text, string path) => CSharpSyntaxTree.ParseText(text, GeneratorHarness.ParseOptions, path);

    [Fact]
    public void An_unrelated_edit_keeps_every_mask_step_cached()
    {
        var first = GeneratorHarness.Compilation("Demo.Models", ("Masks.cs", Usings + AnchorWindow + Strided), ("Other.cs", "namespace Other; class A { }"));
        GeneratorDriver driver = GeneratorHarness.Driver().RunGenerators(first);
        var before = driver.GetRunResult().Results.Single();
        driver = driver.RunGenerators(first.ReplaceSyntaxTree(first.SyntaxTrees.Single(t => t.FilePath == "Other.cs"), Tree("namespace Other; class A { int X => 1; }", "Other.cs")));
        var after = driver.GetRunResult().Results.Single();
        foreach (string step in MaskSteps)
        {
            Assert.True(after.TrackedSteps.ContainsKey(step), $"step {step} was not tracked");
            foreach (var (_, reason) in after.TrackedSteps[step].SelectMany(s => s.Outputs))
                Assert.True(reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"step {step} was {reason}");
        }
        Assert.Equal(before.GeneratedSources.Select(s => s.SourceText.ToString()), after.GeneratedSources.Select(s => s.SourceText.ToString()));
    }

    [Fact]
    public void Editing_one_mask_re_emits_only_that_mask()
    {
        var first = GeneratorHarness.Compilation("Demo.Models", ("Window.cs", Usings + AnchorWindow), ("Strided.cs", Usings + Strided));
        GeneratorDriver driver = GeneratorHarness.Driver().RunGenerators(first);
        driver = driver.RunGenerators(first.ReplaceSyntaxTree(
            first.SyntaxTrees.Single(t => t.FilePath == "Window.cs"), Tree(Usings + AnchorWindow.Replace("window(64)", "window(32)"), "Window.cs")));
        var after = driver.GetRunResult().Results.Single();
        var emitted = after.TrackedSteps[Masks.MaskPipeline.Steps.MaskEmitted].SelectMany(s => s.Outputs).ToList();
        Assert.Single(emitted, o => o.Reason == IncrementalStepRunReason.Modified);
        Assert.Single(emitted, o => o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged);
        Assert.Contains("window: 32", after.GeneratedSources.Single(s => s.HintName == "Demo.Models.AnchorWindow.Mask.g.cs").SourceText.ToString());
    }
}
