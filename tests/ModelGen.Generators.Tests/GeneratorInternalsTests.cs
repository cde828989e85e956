using ModelGen.Generators.Emit;
using ModelGen.Generators.Parsing;

namespace ModelGen.Generators.Tests;

/// <summary>Pieces of the generator that must agree with the runtime or with C#.</summary>
public class GeneratorInternalsTests
{
    [Fact]
    public void Enum_tables_mirror_the_runtime_enums()
    {
        Assert.Equal(Enum.GetNames<RopeScaling>(), KnownNames.RopeScaling);
        Assert.Equal(Enum.GetNames<MaskKind>(), KnownNames.MaskKind);
        Assert.Equal(Enum.GetNames<MlpKind>(), KnownNames.MlpKind);
        Assert.Equal(Enum.GetNames<RopePrecision>(), KnownNames.RopePrecision);
        Assert.Equal(Enumerable.Range(0, KnownNames.RopeScaling.Length), Enum.GetValues<RopeScaling>().Select(v => (int)v));
    }

    [Theory]
    [InlineData("ModelGen.Models", "ModelGen.Models")]
    [InlineData("My-Models.2024", "My_Models._2024")]
    [InlineData("class.Models", "@class.Models")]
    [InlineData("..Weird..", "Weird")]
    [InlineData("", "ModelGen.Generated")]
    [InlineData(null, "ModelGen.Generated")]
    public void Catalog_namespace_is_the_sanitized_assembly_name(string? assemblyName, string expected)
    {
        Assert.Equal(expected, CatalogEmitter.NamespaceFor(assemblyName));
    }

    [Theory]
    [InlineData(500000.0, "500000d")]
    [InlineData(1e-5, "1E-05d")]
    [InlineData(0.1, "0.1d")]
    [InlineData(-2.5, "-2.5d")]
    [InlineData(1e300, "1E+300d")]
    [InlineData(double.NaN, "double.NaN")]
    [InlineData(double.PositiveInfinity, "double.PositiveInfinity")]
    public void Doubles_print_as_round_trip_csharp_literals(double value, string literal)
    {
        Assert.Equal(literal, Literals.Double(value));
    }

    [Fact]
    public void Catalog_is_not_emitted_without_the_runtime_reference()
    {
        var compilation = Microsoft.CodeAnalysis.CSharp.CSharpCompilation.Create("NoRuntime",
            [Microsoft.CodeAnalysis.CSharp.CSharpSyntaxTree.ParseText("class C { }")], Basic.Reference.Assemblies.Net100.References.All,
            new Microsoft.CodeAnalysis.CSharp.CSharpCompilationOptions(Microsoft.CodeAnalysis.OutputKind.DynamicallyLinkedLibrary));
        GeneratorResult result = GeneratorHarness.Run(compilation);
        Assert.Empty(result.Sources);
        Assert.Empty(result.CompilationDiagnostics);
    }

    [Fact]
    public void Declaration_in_the_global_namespace_and_a_block_namespace_compile()
    {
        GeneratorResult result = GeneratorHarness.Run("""
            using ModelGen;
            [CausalLM("mistral")] public partial class GlobalMistral { }
            namespace A.B { [CausalLM("qwen2")] internal partial class Qwen { } }
            """);
        Assert.Empty(result.Diagnostics);
        Assert.Empty(result.CompilationDiagnostics);
        Assert.Equal(["A.B.Qwen.g.cs", "GlobalMistral.g.cs", "ModelCatalog.g.cs"], result.Sources.Keys.Order(StringComparer.Ordinal));
    }
}
