using ModelGen.Backends.Ilgpu;
using ModelGen.Backends.Torch;
using ModelGen.Checkpoints;
using ModelGen.Masks;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Backends;

/// <summary>A packed batch on the host: token ids and position ids [rows × seq], one layout per row (null: causal).</summary>
/// <param name="Rows">Batch rows.</param>
/// <param name="Seq">Tokens per row.</param>
/// <param name="Ids">Token ids, row-major.</param>
/// <param name="Positions">RoPE position ids, row-major.</param>
/// <param name="Layouts">Document layout per row, or null for plain causal windows.</param>
/// <param name="Mask">The attention mask.</param>
public sealed record PackedBatch(int Rows, int Seq, int[] Ids, int[] Positions, IReadOnlyList<DocumentLayout>? Layouts, AttentionMask Mask)
{
    /// <summary>Rows packed from <paramref name="layouts"/> with their positions (continuous, or reset per document when the mask says so).</summary>
    public static PackedBatch Packed(int[] ids, IReadOnlyList<DocumentLayout> layouts, AttentionMask mask)
    {
        int seq = layouts[0].Length;
        var positions = layouts.SelectMany(l => l.PositionIds(mask.ResetsPositions).Select(p => (int)p)).ToArray();
        if (ids.Length != positions.Length) throw new ArgumentException($"{ids.Length} token ids for {layouts.Count} rows of {seq}", nameof(ids));
        return new PackedBatch(layouts.Count, seq, ids, positions, layouts, mask);
    }
}

/// <summary>
/// What every backend does with a loaded causal LM: logits for a packed batch. <see cref="TorchCausalLMBackend"/> runs
/// TorchSharp (CPU), <see cref="IlgpuCausalLMBackend"/> the ILGPU kernels (CUDA, or the CPU accelerator).
/// </summary>
public interface ICausalLMBackend : IDisposable
{
    /// <summary>Backend name for reports: torch-cpu, ilgpu-cpu, ilgpu-cuda.</summary>
    string Name { get; }
    /// <summary>The model's configuration.</summary>
    ModelConfig Config { get; }
    /// <summary>Logits [rows × seq × vocab], fp32, on the host.</summary>
    float[] Logits(PackedBatch batch);
}

/// <summary>The TorchSharp backend.</summary>
public sealed class TorchCausalLMBackend(ModelConfig config, CausalLMModule model) : ICausalLMBackend
{
    /// <summary>Loads a checkpoint folder.</summary>
    public static TorchCausalLMBackend Load(string directory, IEnumerable<ModelDeclaration> catalog)
    {
        var (config, model) = PretrainedModel.Load(directory, catalog);
        return new TorchCausalLMBackend(config, model);
    }

    /// <inheritdoc/>
    public string Name => "torch-cpu";
    /// <inheritdoc/>
    public ModelConfig Config { get; } = config;

    /// <inheritdoc/>
    public float[] Logits(PackedBatch batch)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(batch.Ids.Select(i => (long)i).ToArray(), [batch.Rows, batch.Seq]);
        var positions = tensor(batch.Positions.Select(i => (long)i).ToArray(), [batch.Rows, batch.Seq]);
        var attention = batch.Layouts is null
            ? AttentionInputs.Causal(positions, batch.Mask.SlidingWindow)
            : AttentionInputs.Packed(batch.Layouts, batch.Mask);
        return model.forward(ids, attention).to(ScalarType.Float32).data<float>().ToArray();
    }

    /// <inheritdoc/>
    public void Dispose() => model.Dispose();
}

/// <summary>The ILGPU backend: the model's weights and a reusable batch on one device.</summary>
public sealed class IlgpuCausalLMBackend : ICausalLMBackend
{
    private readonly IlgpuCausalLM _model;
    private GpuBatch? _batch;

    private IlgpuCausalLMBackend(IlgpuCausalLM model) => _model = model;

    /// <summary>Loads a checkpoint folder onto <paramref name="device"/> in <paramref name="dtype"/>.</summary>
    public static IlgpuCausalLMBackend Load(string directory, IEnumerable<ModelDeclaration> catalog, GpuDevice device, GpuDType dtype) =>
        Load(PretrainedModel.Config(directory, catalog), directory, device, dtype);

    /// <summary>Loads the weights of a checkpoint folder whose config is already bound.</summary>
    public static IlgpuCausalLMBackend Load(ModelConfig config, string directory, GpuDevice device, GpuDType dtype)
    {
        using var checkpoint = CheckpointReader.Open(directory);
        return new IlgpuCausalLMBackend(IlgpuCausalLM.Load(device, config, checkpoint, dtype));
    }

    /// <inheritdoc/>
    public string Name => _model.Ops.Device.Kind == GpuKind.Cuda ? "ilgpu-cuda" : "ilgpu-cpu";
    /// <inheritdoc/>
    public ModelConfig Config => _model.Config;

    /// <inheritdoc/>
    public float[] Logits(PackedBatch batch)
    {
        if (_batch is null || _batch.Rows != batch.Rows || _batch.Seq != batch.Seq)
        {
            _batch?.Dispose();
            _batch = new GpuBatch(_model.Ops.Device, batch.Rows, batch.Seq);
        }
        _batch.Upload(batch.Ids, batch.Positions, batch.Layouts, Config.Vocab);
        return _model.Logits(_batch, batch.Mask);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _batch?.Dispose();
        _model.Dispose();
    }
}
