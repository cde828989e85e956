using System.Globalization;

namespace ModelGen.Generators.Tests;

/// <summary>Numbers in generated code and messages do not depend on the culture of the machine that builds.</summary>
public class InvariantCultureTests
{
    private const string Declaration = """
        [CausalLM("llama")]
        [Decoder(Layers = 2, Hidden = 128, Heads = 4, Intermediate = 256, Vocab = 100)]
        [Rope(Theta = 500000, Scaling = RopeScaling.Linear, Factor = 2.5, PartialRotaryFactor = 0.5)]
        [RmsNorm(Eps = 1e-5)]
        public partial class M { }
        """;

    public static TheoryData<string> Cultures => ["fr-FR", "de-DE", "hostile"];

    /// <summary>A culture, or one with every number symbol changed (comma decimals, spaces and dots in groups).</summary>
    private static CultureInfo Culture(string name)
    {
        if (name != "hostile") return new CultureInfo(name);
        var culture = (CultureInfo)CultureInfo.InvariantCulture.Clone();
        culture.NumberFormat.NumberDecimalSeparator = ",";
        culture.NumberFormat.NumberGroupSeparator = "\u202F";
        culture.NumberFormat.NegativeSign = "\u2212";
        culture.NumberFormat.PositiveSign = "\u207A";
        return culture;
    }

    private static T InCulture<T>(string name, Func<T> action)
    {
        CultureInfo saved = CultureInfo.CurrentCulture, savedUi = CultureInfo.CurrentUICulture;
        CultureInfo.CurrentCulture = CultureInfo.CurrentUICulture = Culture(name);
        try { return action(); }
        finally { CultureInfo.CurrentCulture = saved; CultureInfo.CurrentUICulture = savedUi; }
    }

    [Theory]
    [MemberData(nameof(Cultures))]
    public void Rope_theta_and_eps_print_as_invariant_csharp_literals(string culture)
    {
        GeneratorResult result = InCulture(culture, () => GeneratorHarness.Run(GeneratorHarness.Usings + Declaration));
        string source = result.Sources["Demo.Models.M.g.cs"];
        Assert.Contains("Theta = 500000d,", source);
        Assert.Contains("RmsNormEps = 1E-05d,", source);
        Assert.Contains("Factor = 2.5d,", source);
        Assert.Contains("PartialRotaryFactor = 0.5d,", source);
        Assert.Empty(result.CompilationDiagnostics);
    }

    [Theory]
    [MemberData(nameof(Cultures))]
    public void Diagnostic_messages_print_numbers_in_invariant_culture(string culture)
    {
        GeneratorResult result = InCulture(culture, () => GeneratorHarness.Run(GeneratorHarness.Usings +
            """[CausalLM("llama")] [Rope(Theta = -1.5, PartialRotaryFactor = 1.5)] public partial class M { }"""));
        Assert.Equal(
            ["[Rope] Theta must be positive, got -1.5", "[Rope] PartialRotaryFactor must be in (0, 1], got 1.5"],
            result.Diagnostics.Select(d => d.Message()));
    }
}
