using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using ModelGen.Generators.Kernels;

namespace ModelGen.Generators.Tests;

/// <summary>The flash-attention kernel generator: what it emits for a declaration in any assembly, and its errors.</summary>
public class FlashKernelGeneratorTests
{
    private static (Compilation Output, IReadOnlyList<Diagnostic> Generator, IReadOnlyDictionary<string, string> Sources) Run(string source)
    {
        var compilation = CSharpCompilation.Create("Demo.Kernels",
            [CSharpSyntaxTree.ParseText(source, GeneratorHarness.ParseOptions, "Kernels.cs")],
            [.. Basic.Reference.Assemblies.Net100.References.All, MetadataReference.CreateFromFile(typeof(ModelConfig).Assembly.Location),
             MetadataReference.CreateFromFile(typeof(ILGPU.Context).Assembly.Location)],
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var driver = CSharpGeneratorDriver.Create([new FlashKernelGenerator().AsSourceGenerator()], parseOptions: GeneratorHarness.ParseOptions)
            .RunGeneratorsAndUpdateCompilation(compilation, out var output, out var diagnostics);
        var sources = driver.GetRunResult().Results.Single().GeneratedSources.ToDictionary(s => s.HintName, s => s.SourceText.ToString());
        return (output, diagnostics, sources);
    }

    [Fact]
    public void Emits_compiling_unrolled_kernels_for_a_declaration_outside_the_runtime()
    {
        var (output, diagnostics, sources) = Run("""
            using ModelGen.Backends.Ilgpu.Kernels;
            namespace Demo;
            [GenerateFlashAttention(64)]
            public static partial class DemoKernels { }
            """);
        Assert.Empty(diagnostics);
        Assert.Empty(output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error));
        string text = Assert.Single(sources).Value;
        // D = 64, forward: per 64-key tile 4·(64/16)·2 mma for S and (64/8)·4 for P·V, each written out.
        int forward = text.IndexOf("public static void ForwardD64", StringComparison.Ordinal), backward = text.IndexOf("public static void BackwardD64", StringComparison.Ordinal);
        Assert.True(forward >= 0 && backward > forward);
        int mmaForward = CountOf(text[forward..backward], "TC.Mma(");
        Assert.Equal(4 * 4 * 2 + 8 * 4, mmaForward);
        // Backward per 64-query step, each warp: S and dP 2·(2·4)·(64/16) (32×32 blocks), dV and dK 2·(2·4)·(64/16) (32 keys
        // × 32 dims over 64 queries), dQ (2·2)·(128/16) (32 queries × 16 dims over the group's 128 keys).
        Assert.Equal(2 * 8 * 4 + 2 * 8 * 4 + 4 * 8, CountOf(text[backward..], "TC.Mma("));
        Assert.DoesNotContain("for (int s", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Unsupported_head_dims_and_non_partial_hosts_are_errors()
    {
        var (_, dims, dimSources) = Run("""
            using ModelGen.Backends.Ilgpu.Kernels;
            [GenerateFlashAttention(64, 96)]
            public static partial class A { }
            """);
        var error = Assert.Single(dims);
        Assert.Equal("MG0030", error.Id);
        Assert.Contains("96", error.GetMessage(), StringComparison.Ordinal);
        Assert.Empty(dimSources);

        var (_, partial, partialSources) = Run("""
            using ModelGen.Backends.Ilgpu.Kernels;
            [GenerateFlashAttention(128)]
            public static class B { }
            """);
        Assert.Equal("MG0029", Assert.Single(partial).Id);
        Assert.Empty(partialSources);
    }

    private static int CountOf(string text, string what)
    {
        int count = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + 1, StringComparison.Ordinal)) count++;
        return count;
    }
}
