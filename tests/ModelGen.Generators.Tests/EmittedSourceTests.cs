namespace ModelGen.Generators.Tests;

/// <summary>The generated sources, compared with reviewed snapshots in <c>Snapshots/</c>.</summary>
public class EmittedSourceTests
{
    private static string Snapshot(string name) =>
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Snapshots", name)).Replace("\r\n", "\n");

    private static readonly GeneratorResult Result =
        GeneratorHarness.Run(GeneratorHarness.Usings + Declarations.TinyLlama3 + Declarations.LlamaFamily);

    [Fact]
    public void Sized_llama_with_gqa_and_llama3_rope_emits_the_snapshot()
    {
        Assert.Equal(Snapshot("TinyLlama3.g.cs.txt"), Result.Sources["Demo.Models.TinyLlama3.g.cs"]);
    }

    [Fact]
    public void Family_declaration_emits_the_snapshot_without_kernel_struct()
    {
        string source = Result.Sources["Demo.Models.Llama.g.cs"];
        Assert.Equal(Snapshot("Llama.g.cs.txt"), source);
        Assert.DoesNotContain("struct Kernel", source);
    }

    [Fact]
    public void Catalog_emits_the_snapshot_in_the_assembly_namespace()
    {
        Assert.Equal(Snapshot("ModelCatalog.g.cs.txt"), Result.Sources["ModelCatalog.g.cs"]);
    }

    [Fact]
    public void Only_declarations_and_catalog_are_emitted()
    {
        Assert.Equal(
            ["Demo.Models.Llama.g.cs", "Demo.Models.TinyLlama3.g.cs", "ModelCatalog.g.cs"],
            Result.Sources.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Generated_code_compiles_without_diagnostics()
    {
        Assert.Empty(Result.Diagnostics);
        Assert.Empty(Result.CompilationDiagnostics);
    }
}
