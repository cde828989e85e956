using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Torch;
using ModelGen.Checkpoints;
using ModelGen.Masks;
using static TorchSharp.torch;

namespace ModelGen.Parity;

/// <summary>How <see cref="ParityCheck"/> builds attention for the reference inputs.</summary>
public sealed record ParityOptions
{
    /// <summary>Largest max-abs logit error that passes; null: 1e-4 in fp32, <see cref="ParityCheck.Bf16Bound"/> for bf16 storage.</summary>
    public double? Tolerance { get; init; }
    /// <summary>
    /// When set, attention comes from a <see cref="DocumentLayout"/> and this mask instead of the file's 4D mask,
    /// and positions from the layout.
    /// </summary>
    public MaskKind? Mask { get; init; }
    /// <summary>Document start tokens for <see cref="Mask"/> (after an anchor at token 0 for the anchor mask,
    /// else after token 0 as its own document); null = read <c>document_ids</c> from the expected file.</summary>
    public IReadOnlyList<int>? DocumentStarts { get; init; }
}

/// <summary>Result of one parity run.</summary>
public sealed record ParityResult(ModelConfig Config, string AttentionSource, double MaxAbsError, double Tolerance, long[] LogitsShape)
{
    /// <summary>Whether the error is within tolerance.</summary>
    public bool Passed => MaxAbsError <= Tolerance;
}

/// <summary>
/// Runs a checkpoint folder's model on the reference inputs of its <c>expected.safetensors</c> and compares logits
/// (layout in tests/fixtures/hf/README.md: input_ids, optional position_ids and additive 4D attention_mask, logits,
/// optional document_ids).
/// </summary>
public static class ParityCheck
{
    /// <summary>Runs the check on the TorchSharp backend.</summary>
    public static ParityResult Run(string directory, IEnumerable<ModelDeclaration> catalog, ParityOptions options)
    {
        string expectedPath = Path.Combine(directory, "expected.safetensors");
        if (!File.Exists(expectedPath)) throw new FileNotFoundException($"{expectedPath}: no expected.safetensors in the folder", expectedPath);
        var (config, model) = PretrainedModel.Load(directory, catalog);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var expected = SafeTensorsFile.Open(expectedPath);

        var ids = Required(expected, expectedPath, "input_ids");
        if (ids.ndim != 2) throw new CheckpointException(expectedPath, "input_ids", $"must be [batch, seq], got [{string.Join(", ", ids.shape)}]");
        ids = ids.to(ScalarType.Int64);
        long batch = ids.shape[0], seq = ids.shape[1];
        var reference = Required(expected, expectedPath, "logits").to(ScalarType.Float32);
        long[] want = [batch, seq, config.Vocab];
        if (!reference.shape.SequenceEqual(want))
            throw new CheckpointException(expectedPath, "logits", $"has shape [{string.Join(", ", reference.shape)}] but input_ids and vocab_size give [{string.Join(", ", want)}]");
        long maxId = ids.max().item<long>(), minId = ids.min().item<long>();
        if (minId < 0 || maxId >= config.Vocab)
            throw new CheckpointException(expectedPath, "input_ids", $"holds token ids in [{minId}, {maxId}] outside the vocabulary of {config.Vocab}");

        var (attention, source) = BuildAttention(expected, expectedPath, options, config, batch, seq);
        var logits = model.forward(ids, attention);
        double err = (logits - reference).abs().max().item<float>();
        return new ParityResult(config, source, err, options.Tolerance ?? 1e-4, logits.shape);
    }

    private static (AttentionInputs, string) BuildAttention(SafeTensorsFile expected, string path, ParityOptions options, ModelConfig config, long batch, long seq)
    {
        if (options.Mask is { } kind)
        {
            DocumentLayout layout;
            if (options.DocumentStarts is { } starts)
            {
                // Tokens before the first start form document 0: the shared anchor under the anchor mask, an
                // ordinary document under the intra-document masks (as in the llama_intradoc_reset fixture).
                if (starts.Count == 0) throw new ArgumentException("--documents needs at least one document start");
                layout = DocumentLayout.FromStarts((int)seq, starts[0], starts);
            }
            else
            {
                if (!expected.Tensors.ContainsKey("document_ids"))
                    throw new CheckpointException(path, "document_ids", "is needed for --mask without --documents, but the file has none");
                layout = DocumentLayout.FromDocumentIds(expected.ReadInt64("document_ids"));
                if (layout.Length != seq) throw new CheckpointException(path, "document_ids", $"covers {layout.Length} tokens but input_ids has {seq}");
            }
            var mask = new AttentionMask(kind, config.SlidingWindow);
            return (AttentionInputs.Packed(Enumerable.Repeat(layout, (int)batch).ToArray(), mask), $"{kind} mask from layout {layout}");
        }
        Tensor positions = expected.Tensors.ContainsKey("position_ids")
            ? expected.ToTensor("position_ids").to(ScalarType.Int64)
            : arange(seq, dtype: ScalarType.Int64).unsqueeze(0).expand(batch, seq).contiguous();
        if (!positions.shape.SequenceEqual(new[] { batch, seq }))
            throw new CheckpointException(path, "position_ids", $"has shape [{string.Join(", ", positions.shape)}] but input_ids is [{batch}, {seq}]");
        if (expected.Tensors.ContainsKey("attention_mask"))
        {
            var m = expected.ToTensor("attention_mask").to(ScalarType.Float32);
            if (!m.shape.SequenceEqual(new[] { batch, 1, seq, seq }))
                throw new CheckpointException(path, "attention_mask", $"must be additive [{batch}, 1, {seq}, {seq}], got [{string.Join(", ", m.shape)}]");
            return (AttentionInputs.FromAdditiveMask(m, positions), "4D attention_mask from the file");
        }
        return (AttentionInputs.Causal(positions, config.SlidingWindow),
            config.SlidingWindow is { } w ? $"causal, sliding window {w}" : "causal");
    }

    /// <summary>
    /// The logit error bound for bf16 storage with fp32 math: every stored tensor carries a relative rounding error of at
    /// most u = 2⁻⁸ (round to nearest, 8 significant bits). A decoder layer stores six of them on the path to the
    /// residual stream (normed input, q/k/v, attention output, its projection, the MLP's SwiGLU and down projection
    /// outputs, counted as six after the residual add), the embedding, the final norm and the LM head's inputs and
    /// output four more. To first order these relative errors add along the path, and RMSNorm keeps the scale from
    /// growing between layers, so |Δlogit| ≤ (6L + 4)·u·max|logit|. It is a first-order estimate (products of two
    /// rounding errors and attention's softmax sensitivity are neglected), checked on every fixture on the H200.
    /// </summary>
    public static double Bf16Bound(int layers, ReadOnlySpan<float> referenceLogits)
    {
        double max = 0;
        foreach (var v in referenceLogits) max = Math.Max(max, Math.Abs(v));
        return (6.0 * layers + 4) * Math.Pow(2, -8) * max;
    }

    /// <summary>
    /// Runs the check on the ILGPU backend (<paramref name="device"/>, weights and activations in
    /// <paramref name="dtype"/>), without TorchSharp. A 4D attention mask in the file is read back into document layouts
    /// (<see cref="MaskRecovery"/>), since the kernels take layouts, never an L×L mask.
    /// </summary>
    public static ParityResult RunIlgpu(string directory, IEnumerable<ModelDeclaration> catalog, ParityOptions options, GpuDevice device, GpuDType dtype)
    {
        string expectedPath = Path.Combine(directory, "expected.safetensors");
        if (!File.Exists(expectedPath)) throw new FileNotFoundException($"{expectedPath}: no expected.safetensors in the folder", expectedPath);
        var config = PretrainedModel.Config(directory, catalog);
        using var expected = SafeTensorsFile.Open(expectedPath);
        var idsInfo = RequiredInfo(expected, expectedPath, "input_ids");
        if (idsInfo.Shape.Length != 2) throw new CheckpointException(expectedPath, "input_ids", $"must be [batch, seq], got [{string.Join(", ", idsInfo.Shape)}]");
        int batch = (int)idsInfo.Shape[0], seq = (int)idsInfo.Shape[1];
        var ids = expected.ReadInt64("input_ids").Select(v => v is < 0 or > int.MaxValue ? -1 : (int)v).ToArray();
        var refInfo = RequiredInfo(expected, expectedPath, "logits");
        long[] want = [batch, seq, config.Vocab];
        if (!refInfo.Shape.SequenceEqual(want))
            throw new CheckpointException(expectedPath, "logits", $"has shape [{string.Join(", ", refInfo.Shape)}] but input_ids and vocab_size give [{string.Join(", ", want)}]");
        var reference = expected.ReadFloat32("logits");

        int[] positions;
        AttentionMask mask;
        DocumentLayout[]? layouts;
        string source;
        if (options.Mask is { } kind)
        {
            var layout = LayoutFromOptions(expected, expectedPath, options, seq);
            layouts = Enumerable.Repeat(layout, batch).ToArray();
            mask = new AttentionMask(kind, config.SlidingWindow);
            positions = Enumerable.Range(0, batch).SelectMany(_ => layout.PositionIds(mask.ResetsPositions).Select(p => (int)p)).ToArray();
            source = $"{kind} mask from layout {layout}";
        }
        else
        {
            positions = expected.Tensors.ContainsKey("position_ids")
                ? CheckedPositions(expected, expectedPath, batch, seq)
                : Enumerable.Range(0, batch).SelectMany(_ => Enumerable.Range(0, seq)).ToArray();
            if (expected.Tensors.ContainsKey("attention_mask"))
            {
                var info = expected.Info("attention_mask");
                if (!info.Shape.SequenceEqual(new long[] { batch, 1, seq, seq }))
                    throw new CheckpointException(expectedPath, "attention_mask", $"must be additive [{batch}, 1, {seq}, {seq}], got [{string.Join(", ", info.Shape)}]");
                var additive = expected.ReadFloat32("attention_mask");
                var recovered = MaskRecovery.Recover(batch, seq, (r, q, k) => additive[((long)r * seq + q) * seq + k] > -1e30f, config.SlidingWindow)
                    ?? throw new CheckpointException(expectedPath, "attention_mask",
                        "is not a causal, intra-document or anchor mask over contiguous documents, which is what the ILGPU backend runs");
                (mask, layouts) = recovered;
                source = $"4D attention_mask read back as {mask.Kind} over {layouts[0]}";
            }
            else
            {
                mask = new AttentionMask(MaskKind.Causal, config.SlidingWindow);
                layouts = null;
                source = config.SlidingWindow is { } w ? $"causal, sliding window {w}" : "causal";
            }
        }

        using var backend = Backends.IlgpuCausalLMBackend.Load(config, directory, device, dtype);
        var logits = backend.Logits(new Backends.PackedBatch(batch, seq, ids, positions, layouts, mask));
        double err = 0;
        for (int i = 0; i < logits.Length; i++) err = Math.Max(err, Math.Abs(logits[i] - reference[i]));
        if (double.IsNaN(logits.Sum())) err = double.NaN;
        double tolerance = options.Tolerance ?? (dtype == GpuDType.BF16 ? Bf16Bound(config.Layers, reference) : 1e-4);
        return new ParityResult(config, source, err, tolerance, want);
    }

    private static DocumentLayout LayoutFromOptions(SafeTensorsFile expected, string path, ParityOptions options, int seq)
    {
        if (options.DocumentStarts is { } starts)
        {
            if (starts.Count == 0) throw new ArgumentException("--documents needs at least one document start");
            return DocumentLayout.FromStarts(seq, starts[0], starts);
        }
        if (!expected.Tensors.ContainsKey("document_ids"))
            throw new CheckpointException(path, "document_ids", "is needed for --mask without --documents, but the file has none");
        var layout = DocumentLayout.FromDocumentIds(expected.ReadInt64("document_ids"));
        if (layout.Length != seq) throw new CheckpointException(path, "document_ids", $"covers {layout.Length} tokens but input_ids has {seq}");
        return layout;
    }

    private static int[] CheckedPositions(SafeTensorsFile expected, string path, int batch, int seq)
    {
        var info = expected.Info("position_ids");
        if (!info.Shape.SequenceEqual(new long[] { batch, seq }))
            throw new CheckpointException(path, "position_ids", $"has shape [{string.Join(", ", info.Shape)}] but input_ids is [{batch}, {seq}]");
        return expected.ReadInt64("position_ids").Select(p => p is < 0 or > int.MaxValue
            ? throw new CheckpointException(path, "position_ids", $"holds {p}, outside [0, {int.MaxValue}]") : (int)p).ToArray();
    }

    private static TensorInfo RequiredInfo(SafeTensorsFile file, string path, string name) =>
        file.Tensors.TryGetValue(name, out var info) ? info : throw new CheckpointException(path, name, "is required but missing");

    private static Tensor Required(SafeTensorsFile file, string path, string name) =>
        file.Tensors.ContainsKey(name) ? file.ToTensor(name) : throw new CheckpointException(path, name, "is required but missing");
}
