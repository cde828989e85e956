using ModelGen.Backends.Torch;
using ModelGen.Masks;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Tests.Backends;

/// <summary>The per-document attention paths against one dense attention under the element predicate.</summary>
public class PackedAttentionTests
{
    private static Tensor Dense(Tensor q, Tensor k, Tensor v, DocumentLayout layout, AttentionMask mask)
    {
        int s = layout.Length;
        var allowed = new bool[s * s];
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++)
                allowed[i * s + j] = mask.Allows(layout, i, j);
        long group = q.shape[1] / k.shape[1];
        k = k.repeat_interleave(group, dim: 1);
        v = v.repeat_interleave(group, dim: 1);
        var scores = matmul(q.to(ScalarType.Float64), k.to(ScalarType.Float64).transpose(-1, -2)) / Math.Sqrt(q.shape[3]);
        using var negativeInfinity = double.NegativeInfinity.ToScalar(); // kept alive across the native call
        using var disallowed = tensor(allowed, [s, s]).logical_not();
        scores = scores.masked_fill(disallowed, negativeInfinity);
        return matmul(scores.softmax(-1), v.to(ScalarType.Float64)).to(ScalarType.Float32);
    }

    public static IEnumerable<object[]> Cases()
    {
        foreach (MaskKind kind in Enum.GetValues<MaskKind>())
        {
            yield return [kind, 0, 70, new[] { 1, 20, 41 }];
            yield return [kind, 0, 33, new[] { 1, 2, 3, 30 }];
            yield return [kind, 7, 70, new[] { 1, 20, 41 }];
            yield return [kind, 300, 600, new[] { 1, 100, 450 }];
            yield return [kind, 5, 600, new[] { 1, 260, 520 }];
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Packed_attention_equals_dense_attention_under_the_predicate(MaskKind kind, int window, int length, int[] starts)
    {
        using var scope = NewDisposeScope();
        random.manual_seed(42);
        var layout = DocumentLayout.Anchored(length, starts);
        var mask = new AttentionMask(kind, window > 0 ? window : null);
        var q = randn(2, 4, length, 16);
        var k = randn(2, 2, length, 16);
        var v = randn(2, 2, length, 16);
        var inputs = kind == MaskKind.Causal
            ? AttentionInputs.Causal(2, length, mask.SlidingWindow)
            : AttentionInputs.Packed([layout, layout], mask);
        var got = PackedAttention.Forward(q, k, v, inputs);
        var want = Dense(q, k, v, layout, mask);
        Assert.True(allclose(got, want, rtol: 1e-4, atol: 1e-5), $"max diff {(got - want).abs().max().item<float>()}");
    }

    [Fact]
    public void Rows_with_different_layouts_each_get_their_own_mask()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(7);
        var layouts = new[] { DocumentLayout.Anchored(40, 1, 10, 30), DocumentLayout.Anchored(40, 1, 25) };
        var mask = new AttentionMask(MaskKind.Anchor);
        var q = randn(2, 2, 40, 8);
        var k = randn(2, 2, 40, 8);
        var v = randn(2, 2, 40, 8);
        var got = PackedAttention.Forward(q, k, v, AttentionInputs.Packed(layouts, mask));
        for (int b = 0; b < 2; b++)
        {
            var want = Dense(q[b].unsqueeze(0), k[b].unsqueeze(0), v[b].unsqueeze(0), layouts[b], mask);
            Assert.True(allclose(got[b].unsqueeze(0), want, rtol: 1e-4, atol: 1e-5));
        }
    }

    [Fact]
    public void Gradients_flow_through_the_per_document_path()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(3);
        var layout = DocumentLayout.Anchored(50, 1, 20, 35);
        var mask = new AttentionMask(MaskKind.Anchor);
        var q = randn(1, 2, 50, 8).requires_grad_();
        var k = randn(1, 2, 50, 8).requires_grad_();
        var v = randn(1, 2, 50, 8).requires_grad_();
        PackedAttention.Forward(q, k, v, AttentionInputs.Packed([layout], mask)).square().sum().backward();
        var qd = q.detach().clone().requires_grad_();
        var kd = k.detach().clone().requires_grad_();
        var vd = v.detach().clone().requires_grad_();
        Dense(qd, kd, vd, layout, mask).square().sum().backward();
        Assert.True(allclose(q.grad!, qd.grad!, rtol: 1e-3, atol: 1e-4));
        Assert.True(allclose(k.grad!, kd.grad!, rtol: 1e-3, atol: 1e-4));
        Assert.True(allclose(v.grad!, vd.grad!, rtol: 1e-3, atol: 1e-4));
    }
}
