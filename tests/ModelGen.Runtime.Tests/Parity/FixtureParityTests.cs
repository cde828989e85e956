using ModelGen.Masks;
using ModelGen.Parity;

namespace ModelGen.Tests.Parity;

/// <summary>Logits of every HF fixture reproduced on the TorchSharp backend within 1e-4.</summary>
public class FixtureParityTests
{
    public static IEnumerable<object[]> AllFixtures() => Fixtures.AllWithLogits().Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(AllFixtures))]
    public void Fixture_logits_match_transformers(string fixture)
    {
        var result = ParityCheck.Run(Fixtures.Path_(fixture), Models.ModelCatalog.All, new ParityOptions());
        Assert.True(result.Passed, $"{fixture}: max abs error {result.MaxAbsError} ({result.AttentionSource})");
    }

    [Theory]
    [InlineData("hf/llama_anchor_packed", MaskKind.Anchor, new[] { 1, 20, 41 })]
    [InlineData("hf/llama_intradoc_reset", MaskKind.IntraDocumentReset, new[] { 1, 20, 41 })]
    [InlineData("hf-more/mistral_anchor_packed", MaskKind.Anchor, new[] { 1, 20, 41 })]
    public void Packed_fixtures_match_with_the_mask_from_a_document_layout(string fixture, MaskKind mask, int[] starts)
    {
        var result = ParityCheck.Run(Fixtures.Path_(fixture), Models.ModelCatalog.All,
            new ParityOptions { Mask = mask, DocumentStarts = starts });
        Assert.StartsWith($"{mask} mask from layout", result.AttentionSource);
        Assert.True(result.Passed, $"{fixture}: max abs error {result.MaxAbsError}");
    }

    [Theory]
    [InlineData("hf-more/llama_anchor_many_docs", MaskKind.Anchor)]
    [InlineData("hf-more/qwen2_intradoc_reset", MaskKind.IntraDocumentReset)]
    [InlineData("hf-more/mistral_anchor_packed", MaskKind.Anchor)]
    public void Packed_fixtures_match_with_the_layout_read_from_document_ids(string fixture, MaskKind mask)
    {
        var result = ParityCheck.Run(Fixtures.Path_(fixture), Models.ModelCatalog.All, new ParityOptions { Mask = mask });
        Assert.True(result.Passed, $"{fixture}: max abs error {result.MaxAbsError}");
    }

    [Fact]
    public void A_mask_that_differs_from_the_reference_fails_the_check()
    {
        // The anchor fixture's logits under an intra-document mask must not match: the check has teeth.
        var result = ParityCheck.Run(Fixtures.Path_("hf/llama_anchor_packed"), Models.ModelCatalog.All,
            new ParityOptions { Mask = MaskKind.IntraDocument, DocumentStarts = [1, 20, 41] });
        Assert.False(result.Passed);
        Assert.True(result.MaxAbsError > 1e-2);
    }

    [Fact]
    public void An_older_style_config_binds_to_the_same_logits()
    {
        using var folder = Fixtures.Copy("hf-more/llama_linear");
        File.Copy(Path.Combine(Fixtures.Path_("hf-more/llama_linear_legacy_config"), "config.json"), folder.File("config.json"), overwrite: true);
        var result = ParityCheck.Run(folder.Path, Models.ModelCatalog.All, new ParityOptions());
        Assert.Equal(RopeScaling.Linear, result.Config.Rope.Scaling);
        Assert.True(result.Passed, $"max abs error {result.MaxAbsError}");
    }
}
