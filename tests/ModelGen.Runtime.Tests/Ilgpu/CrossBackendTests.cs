using ModelGen.Backends;
using ModelGen.Backends.Ilgpu;
using ModelGen.Masks;
using ModelGen.Models;

namespace ModelGen.Tests.Ilgpu;

/// <summary>
/// The two backends behind <see cref="ICausalLMBackend"/> give the same logits for the same packed batch, for the
/// standard masks and for declared ones (whose generated structs are the ILGPU kernels' generic arguments).
/// </summary>
public class CrossBackendTests(CpuAcceleratorFixture cpu) : IClassFixture<CpuAcceleratorFixture>
{
    [Theory]
    [InlineData("causal")]
    [InlineData("intradoc-reset")]
    [InlineData("anchor")]
    [InlineData("anchor-sliding-window")]
    [InlineData("prefix-lm-anchor")]
    [InlineData("anchor-document-head")]
    public void Torch_and_ilgpu_agree_on_a_packed_batch(string maskName)
    {
        string dir = Fixtures.Path_("hf/llama");
        var mask = maskName switch
        {
            "causal" => new AttentionMask(MaskKind.Causal),
            "intradoc-reset" => new AttentionMask(MaskKind.IntraDocumentReset),
            "anchor" => new AttentionMask(MaskKind.Anchor),
            _ => AttentionMask.Of(MaskCatalog.Find(maskName)!),
        };
        using ICausalLMBackend torch = TorchCausalLMBackend.Load(dir, ModelCatalog.All);
        using ICausalLMBackend ilgpu = IlgpuCausalLMBackend.Load(dir, ModelCatalog.All, cpu.Device, GpuDType.F32);
        var layouts = new[] { DocumentLayout.Anchored(48, 1, 9, 30), DocumentLayout.Anchored(48, 1, 20) };
        var random = new Random(7);
        var ids = Enumerable.Range(0, 96).Select(_ => random.Next(torch.Config.Vocab)).ToArray();
        var batch = PackedBatch.Packed(ids, layouts, mask);
        var a = torch.Logits(batch);
        var b = ilgpu.Logits(batch);
        Assert.Equal(a.Length, b.Length);
        double err = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        Assert.True(err <= 1e-4, $"{maskName}: torch vs {ilgpu.Name} max abs error {err}");
    }
}
