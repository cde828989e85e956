using Microsoft.CodeAnalysis;

namespace ModelGen.Generators.Tests;

/// <summary>Each invalid declaration is a diagnostic at the argument or class name at fault, with a clear message.</summary>
public class DiagnosticTests
{
    private const string Sizes = "Layers = 2, Hidden = 128, Heads = 4, Intermediate = 256, Vocab = 100";

    /// <summary>Runs the generator and returns its only diagnostic, checking that an error suppresses the source.</summary>
    private static Diagnostic Single(string declaration)
    {
        GeneratorResult result = GeneratorHarness.Run(GeneratorHarness.Usings + declaration);
        Assert.Empty(result.CompilationDiagnostics); // the declaration itself is valid C#
        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("ModelGen", diagnostic.Descriptor.Category);
        if (diagnostic.Severity == DiagnosticSeverity.Error)
            Assert.Equal(["ModelCatalog.g.cs"], result.Sources.Keys);
        return diagnostic;
    }

    private static void AssertDiagnostic(string id, string locatedText, string message, Diagnostic diagnostic)
    {
        Assert.Equal(id, diagnostic.Id);
        Assert.Equal(locatedText, diagnostic.LocatedText());
        Assert.Equal(message, diagnostic.Message());
    }

    [Fact]
    public void MG0001_declaration_that_is_not_partial()
    {
        AssertDiagnostic("MG0001", "Llama", "Model declaration 'Llama' must be declared 'partial' so the generator can add its members",
            Single("""[CausalLM("llama")] public class Llama { }"""));
    }

    [Fact]
    public void MG0002_nested_declaration()
    {
        AssertDiagnostic("MG0002", "Llama",
            "Model declaration 'Llama' must be a top-level, non-generic, non-file-local class (it is nested in 'Outer')",
            Single("""public partial class Outer { [CausalLM("llama")] public partial class Llama { } }"""));
    }

    [Fact]
    public void MG0002_generic_declaration()
    {
        AssertDiagnostic("MG0002", "Llama", "Model declaration 'Llama' must be a top-level, non-generic, non-file-local class (it is generic)",
            Single("""[CausalLM("llama")] public partial class Llama<T> { }"""));
    }

    [Fact]
    public void MG0003_unknown_family_lists_the_known_ones()
    {
        AssertDiagnostic("MG0003", "\"gpt2\"", "Unknown family 'gpt2'; known families are llama, mistral, qwen2",
            Single("""[CausalLM("gpt2")] public partial class Gpt2 { }"""));
    }

    [Fact]
    public void MG0004_non_positive_decoder_size()
    {
        AssertDiagnostic("MG0004", "Layers = 0", "[Decoder] Layers must be positive, got 0",
            Single("""[CausalLM("llama")] [Decoder(Layers = 0, Hidden = 128, Heads = 4, Intermediate = 256, Vocab = 100)] public partial class M { }"""));
    }

    [Fact]
    public void MG0004_missing_decoder_size_points_at_the_attribute()
    {
        AssertDiagnostic("MG0004", "Decoder(Layers = 2, Hidden = 128, Heads = 4, Intermediate = 256)", "[Decoder] Vocab must be positive, got 0",
            Single("""[CausalLM("llama")] [Decoder(Layers = 2, Hidden = 128, Heads = 4, Intermediate = 256)] public partial class M { }"""));
    }

    [Fact]
    public void MG0004_negative_kv_heads_mentions_the_zero_default()
    {
        AssertDiagnostic("MG0004", "KvHeads = -2", "[Decoder] KvHeads must be positive, or 0 for the default, got -2",
            Single($$"""[CausalLM("llama")] [Decoder({{Sizes}}, KvHeads = -2)] public partial class M { }"""));
    }

    [Fact]
    public void MG0005_heads_not_divisible_by_kv_heads()
    {
        AssertDiagnostic("MG0005", "KvHeads = 3", "[Decoder] Heads = 4 is not divisible by KvHeads = 3",
            Single($$"""[CausalLM("llama")] [Decoder({{Sizes}}, KvHeads = 3)] public partial class M { }"""));
    }

    [Fact]
    public void MG0006_hidden_not_divisible_by_heads_asks_for_head_dim()
    {
        AssertDiagnostic("MG0006", "Hidden = 100", "[Decoder] Hidden = 100 is not divisible by Heads = 3; give HeadDim explicitly",
            Single("""[CausalLM("llama")] [Decoder(Layers = 2, Hidden = 100, Heads = 3, Intermediate = 256, Vocab = 100)] public partial class M { }"""));
    }

    [Fact]
    public void Hidden_not_divisible_by_heads_is_fine_with_an_explicit_head_dim()
    {
        GeneratorResult result = GeneratorHarness.Run(GeneratorHarness.Usings +
            """[CausalLM("llama")] [Decoder(Layers = 2, Hidden = 100, Heads = 3, HeadDim = 32, Intermediate = 256, Vocab = 100)] public partial class M { }""");
        Assert.Empty(result.Diagnostics);
        Assert.Contains("Demo.Models.M.g.cs", result.Sources.Keys);
    }

    [Fact]
    public void MG0007_unknown_rope_scaling()
    {
        AssertDiagnostic("MG0007", "Scaling = (RopeScaling)42",
            "unknown RoPE scaling 42; known values are Default, Linear, Dynamic, Yarn, Llama3, LongRope",
            Single("""[CausalLM("llama")] [Rope(Scaling = (RopeScaling)42)] public partial class M { }"""));
    }

    [Fact]
    public void MG0007_unknown_mask_kind()
    {
        AssertDiagnostic("MG0007", "Mask = (MaskKind)7", "unknown mask kind 7; known values are Causal, IntraDocument, IntraDocumentReset, Anchor",
            Single("""[CausalLM("llama")] [Attention(Mask = (MaskKind)7)] public partial class M { }"""));
    }

    [Theory]
    [InlineData("Scaling = RopeScaling.Linear", "Scaling = RopeScaling.Linear", "RoPE scaling Linear requires Factor > 0, got 0")]
    [InlineData("Scaling = RopeScaling.Dynamic, Factor = -1", "Factor = -1", "RoPE scaling Dynamic requires Factor > 0, got -1")]
    [InlineData("Scaling = RopeScaling.Yarn, Factor = 4", "Scaling = RopeScaling.Yarn", "RoPE scaling Yarn requires OriginalContext > 0, got 0")]
    [InlineData("Scaling = RopeScaling.Llama3, Factor = 8, OriginalContext = 8192, HighFreqFactor = 4", "Scaling = RopeScaling.Llama3",
        "RoPE scaling Llama3 requires LowFreqFactor > 0, got 0")]
    [InlineData("Scaling = RopeScaling.Llama3, Factor = 8, OriginalContext = 8192, LowFreqFactor = 4, HighFreqFactor = 2", "HighFreqFactor = 2",
        "RoPE scaling Llama3 requires HighFreqFactor > LowFreqFactor (4), got 2")]
    [InlineData("Scaling = RopeScaling.LongRope, LongFactor = new[] { 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0 }", "Scaling = RopeScaling.LongRope",
        "RoPE scaling LongRope requires ShortFactor with 16 values (rotary dim / 2)")]
    [InlineData("Scaling = RopeScaling.LongRope, ShortFactor = new[] { 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0 }, LongFactor = new[] { 1.0, 2.0 }", "LongFactor = new[] { 1.0, 2.0 }",
        "RoPE scaling LongRope requires LongFactor with 16 values (rotary dim / 2), got 2")]
    public void MG0008_missing_or_invalid_rope_scaling_parameter(string rope, string locatedText, string message)
    {
        AssertDiagnostic("MG0008", locatedText, message,
            Single($$"""[CausalLM("llama")] [Decoder({{Sizes}})] [Rope({{rope}})] public partial class M { }"""));
    }

    [Fact]
    public void MG0008_longrope_family_needs_both_factor_lists_even_without_a_known_head_dim()
    {
        AssertDiagnostic("MG0008", "Scaling = RopeScaling.LongRope", "RoPE scaling LongRope requires LongFactor (rotary dim / 2 values)",
            Single("""[CausalLM("llama")] [Rope(Scaling = RopeScaling.LongRope, ShortFactor = new[] { 1.0 })] public partial class M { }"""));
    }

    [Fact]
    public void MG0009_non_positive_theta()
    {
        AssertDiagnostic("MG0009", "Theta = -1", "[Rope] Theta must be positive, got -1",
            Single("""[CausalLM("llama")] [Rope(Theta = -1)] public partial class M { }"""));
    }

    [Fact]
    public void MG0010_partial_rotary_factor_out_of_range()
    {
        AssertDiagnostic("MG0010", "PartialRotaryFactor = 1.5", "[Rope] PartialRotaryFactor must be in (0, 1], got 1.5",
            Single("""[CausalLM("llama")] [Rope(PartialRotaryFactor = 1.5)] public partial class M { }"""));
    }

    [Fact]
    public void MG0011_partial_rotary_factor_giving_an_odd_rotary_dim()
    {
        AssertDiagnostic("MG0011", "PartialRotaryFactor = 0.3",
            "[Rope] PartialRotaryFactor = 0.3 gives rotary dimension 9 for HeadDim = 32, which must be even and at least 2",
            Single($$"""[CausalLM("llama")] [Decoder({{Sizes}})] [Rope(PartialRotaryFactor = 0.3)] public partial class M { }"""));
    }

    [Fact]
    public void MG0012_explicit_non_positive_sliding_window()
    {
        AssertDiagnostic("MG0012", "SlidingWindow = 0", "[Attention] SlidingWindow must be positive when given, got 0; omit it for no window",
            Single("""[CausalLM("mistral")] [Attention(SlidingWindow = 0)] public partial class M { }"""));
    }

    [Fact]
    public void MG0013_non_positive_rms_norm_eps()
    {
        AssertDiagnostic("MG0013", "Eps = 0", "[RmsNorm] Eps must be a positive number, got 0",
            Single("""[CausalLM("llama")] [RmsNorm(Eps = 0)] public partial class M { }"""));
    }

    [Fact]
    public void MG0014_rope_parameter_the_scaling_ignores_is_a_warning_and_source_is_still_emitted()
    {
        GeneratorResult result = GeneratorHarness.Run(GeneratorHarness.Usings +
            """[CausalLM("llama")] [Rope(Factor = 8)] public partial class M { }""");
        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Warning, diagnostic.Severity);
        AssertDiagnostic("MG0014", "Factor = 8", "[Rope] Factor is ignored by RoPE scaling Default", diagnostic);
        Assert.Contains("Demo.Models.M.g.cs", result.Sources.Keys);
    }

    [Fact]
    public void MG0015_second_family_declaration_of_a_model_type_is_an_error_and_not_cataloged()
    {
        GeneratorResult result = GeneratorHarness.Run(GeneratorHarness.Usings + """
            [CausalLM("llama")] public partial class Llama { }
            [CausalLM("llama")] public partial class AnotherLlama { }
            [CausalLM("llama")] [Decoder(Layers = 2, Hidden = 128, Heads = 4, Intermediate = 256, Vocab = 100)] public partial class SizedLlama { }
            """);
        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        AssertDiagnostic("MG0015", "AnotherLlama",
            "Family 'llama' is already declared by 'Demo.Models.Llama'; a compilation may have one family declaration (without [Decoder]) per model_type",
            diagnostic);
        Assert.Equal(["Demo.Models.Llama.g.cs", "Demo.Models.SizedLlama.g.cs", "ModelCatalog.g.cs"], result.Sources.Keys.Order(StringComparer.Ordinal));
        Assert.DoesNotContain("AnotherLlama", result.Sources["ModelCatalog.g.cs"]);
    }

    [Fact]
    public void Invalid_declaration_does_not_stop_valid_ones()
    {
        GeneratorResult result = GeneratorHarness.Run(GeneratorHarness.Usings + """
            [CausalLM("gpt2")] public partial class Bad { }
            [CausalLM("llama")] public partial class Good { }
            """);
        Assert.Equal("MG0003", Assert.Single(result.Diagnostics).Id);
        Assert.Contains("Demo.Models.Good.g.cs", result.Sources.Keys);
        Assert.DoesNotContain("Demo.Models.Bad.g.cs", result.Sources.Keys);
    }

    [Fact]
    public void Diagnostics_are_located_in_the_compilation_tree_so_pragmas_apply()
    {
        string source = GeneratorHarness.Usings + """[CausalLM("llama")] [Rope(Factor = 8)] public partial class M { }""";
        GeneratorResult result = GeneratorHarness.Run(GeneratorHarness.Compilation("Demo.Models", ("Models.cs", source)));
        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        Assert.Contains(diagnostic.Location.SourceTree, result.Output.SyntaxTrees);
        Assert.Equal("Models.cs", diagnostic.Location.GetLineSpan().Path);
    }

    [Fact]
    public void Every_descriptor_is_in_the_unshipped_release_file()
    {
        string[] ids = typeof(ModelGenerator).Assembly.GetType("ModelGen.Generators.Diagnostics.DiagnosticDescriptors")!
            .GetFields(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public)
            .Select(f => ((DiagnosticDescriptor)f.GetValue(null)!).Id).ToArray();
        Assert.Equal(Enumerable.Range(1, ids.Length).Select(i => $"MG{i:0000}"), ids);
    }
}
