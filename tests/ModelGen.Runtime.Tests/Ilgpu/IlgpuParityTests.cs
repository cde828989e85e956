using ModelGen.Backends.Ilgpu;
using ModelGen.Masks;
using ModelGen.Parity;

namespace ModelGen.Tests.Ilgpu;

/// <summary>One CPU accelerator for every ILGPU test class (opening a context costs a second).</summary>
public sealed class CpuAcceleratorFixture : IDisposable
{
    /// <summary>
    /// ILGPU's CPU accelerator with 4-lane warps: every emulated lane is an OS thread, so 32-lane warps make whole-model
    /// runs minutes long on two cores. The kernel tests also run on 32-lane warps (<see cref="Nvidia"/>) on small sizes.
    /// </summary>
    public GpuDevice Device { get; } = GpuDevice.Open(GpuKind.Cpu, cpuWarpSize: 4);

    /// <summary>The CPU accelerator with NVIDIA's 32-lane warps.</summary>
    public GpuDevice Nvidia => _nvidia.Value;
    private readonly Lazy<GpuDevice> _nvidia = new(() => GpuDevice.Open(GpuKind.Cpu, cpuWarpSize: 32));

    /// <inheritdoc/>
    public void Dispose()
    {
        Device.Dispose();
        if (_nvidia.IsValueCreated) _nvidia.Value.Dispose();
    }
}

/// <summary>Every HF fixture through the ILGPU backend on the CPU accelerator: fp32 logits within 1e-4 of transformers.</summary>
public class IlgpuParityTests(CpuAcceleratorFixture cpu) : IClassFixture<CpuAcceleratorFixture>
{
    public static IEnumerable<object[]> AllFixtures() => Fixtures.AllWithLogits().Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(AllFixtures))]
    public void Fixture_logits_match_transformers_in_fp32(string fixture)
    {
        var result = ParityCheck.RunIlgpu(Fixtures.Path_(fixture), Models.ModelCatalog.All, new ParityOptions(), cpu.Device, GpuDType.F32);
        Assert.True(result.Passed, $"{fixture}: max abs error {result.MaxAbsError} ({result.AttentionSource})");
    }

    [Theory]
    [InlineData("hf-more/llama_anchor_many_docs", MaskKind.Anchor)]
    [InlineData("hf-more/qwen2_intradoc_reset", MaskKind.IntraDocumentReset)]
    public void Packed_fixtures_match_from_document_ids(string fixture, MaskKind mask)
    {
        var result = ParityCheck.RunIlgpu(Fixtures.Path_(fixture), Models.ModelCatalog.All, new ParityOptions { Mask = mask }, cpu.Device, GpuDType.F32);
        Assert.True(result.Passed, $"{fixture}: max abs error {result.MaxAbsError}");
    }

    [Theory]
    [InlineData("hf/llama_anchor_packed", MaskKind.Anchor)]
    [InlineData("hf/llama_intradoc_reset", MaskKind.IntraDocument)]
    public void A_4d_mask_is_read_back_as_the_document_mask_it_encodes(string fixture, MaskKind kind)
    {
        var result = ParityCheck.RunIlgpu(Fixtures.Path_(fixture), Models.ModelCatalog.All, new ParityOptions(), cpu.Device, GpuDType.F32);
        Assert.Contains($"read back as {kind}", result.AttentionSource);
    }
}
