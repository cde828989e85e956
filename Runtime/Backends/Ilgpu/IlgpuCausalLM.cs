using ILGPU;
using ILGPU.Runtime;
using ModelGen.Checkpoints;
using ModelGen.Masks;
using ModelGen.Rope;

namespace ModelGen.Backends.Ilgpu;

/// <summary>
/// A decoder-only causal LM (Llama, Mistral, Qwen2) on an ILGPU device: weights uploaded once in the chosen storage type
/// (q/k/v and gate/up fused into one matrix each, so a layer runs four GEMMs), a workspace sized for one batch shape and
/// reused, and a forward pass that is a fixed sequence of kernel launches and cuBLAS calls — no host↔device copies or
/// device allocations after warm-up except the batch upload and, when asked, the logits download.
/// </summary>
public sealed class IlgpuCausalLM : IDisposable
{
    private readonly List<GpuTensor> _owned = [];
    private readonly Layer[] _layers;
    private readonly GpuTensor _embed, _lmHead, _finalNorm;
    private readonly GpuRopeTable _rope;
    private Workspace? _workspace;

    private sealed record Layer(GpuTensor InputNorm, GpuTensor PostNorm, GpuTensor Qkv, GpuTensor? QkvBias, GpuTensor O, GpuTensor? OBias,
        GpuTensor GateUp, GpuTensor? GateUpBias, GpuTensor Down, GpuTensor? DownBias);

    private IlgpuCausalLM(GpuDevice device, ModelConfig config, GpuDType dtype, CheckpointReader checkpoint)
    {
        Config = config.Validate();
        Ops = new GpuOps(device, dtype);
        if (config.Mlp != MlpKind.SwiGlu) throw new NotSupportedException($"the ILGPU backend runs SwiGLU MLPs, not {config.Mlp}");
        device.EnsureFits(config.ParameterCount() * GpuTensor.SizeOf(dtype), $"{config.Family} weights ({config.ParameterCount():N0} parameters in {dtype})");

        int hq = config.Heads * config.HeadDim, hkv = config.KvHeads * config.HeadDim;
        _embed = Upload(checkpoint, "model.embed_tokens.weight", config.Vocab, config.Hidden);
        _lmHead = config.TiedEmbeddings ? _embed : Upload(checkpoint, "lm_head.weight", config.Vocab, config.Hidden);
        _finalNorm = Upload(checkpoint, "model.norm.weight", config.Hidden);
        _layers = new Layer[config.Layers];
        for (int i = 0; i < config.Layers; i++)
        {
            string p = $"model.layers.{i}.";
            string a = p + "self_attn.", m = p + "mlp.";
            _layers[i] = new Layer(
                Upload(checkpoint, p + "input_layernorm.weight", config.Hidden),
                Upload(checkpoint, p + "post_attention_layernorm.weight", config.Hidden),
                Fused(checkpoint, [(a + "q_proj.weight", hq), (a + "k_proj.weight", hkv), (a + "v_proj.weight", hkv)], config.Hidden),
                config.QkvBias ? Fused(checkpoint, [(a + "q_proj.bias", hq), (a + "k_proj.bias", hkv), (a + "v_proj.bias", hkv)], null) : null,
                Upload(checkpoint, a + "o_proj.weight", config.Hidden, hq),
                config.OutputBias ? Upload(checkpoint, a + "o_proj.bias", config.Hidden) : null,
                Fused(checkpoint, [(m + "gate_proj.weight", config.Intermediate), (m + "up_proj.weight", config.Intermediate)], config.Hidden),
                config.MlpBias ? Fused(checkpoint, [(m + "gate_proj.bias", config.Intermediate), (m + "up_proj.bias", config.Intermediate)], null) : null,
                Upload(checkpoint, m + "down_proj.weight", config.Hidden, config.Intermediate),
                config.MlpBias ? Upload(checkpoint, m + "down_proj.bias", config.Hidden) : null);
        }
        _rope = new GpuRopeTable(device, new RopeFrequencies(config.Rope, config.HeadDim, config.MaxPositions));
        RotationPrecision = config.Rope.Precision;
    }

    /// <summary>The configuration.</summary>
    public ModelConfig Config { get; }
    /// <summary>The ops (device and storage type).</summary>
    public GpuOps Ops { get; }
    /// <summary>Precision of the RoPE rotation (only differs from fp32 with bf16 storage).</summary>
    public RopePrecision RotationPrecision { get; set; }

    /// <summary>Loads <paramref name="checkpoint"/> (HF names) onto <paramref name="device"/> in <paramref name="dtype"/>.</summary>
    public static IlgpuCausalLM Load(GpuDevice device, ModelConfig config, CheckpointReader checkpoint, GpuDType dtype)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return new IlgpuCausalLM(device, config, dtype, checkpoint);
    }

    /// <summary>
    /// Runs the batch already uploaded to <paramref name="batch"/> under <paramref name="mask"/> and returns the logits
    /// tensor [tokens, vocab] in the model's storage type (it stays on the device and is overwritten by the next call).
    /// </summary>
    public GpuTensor Forward(GpuBatch batch, AttentionMask mask)
    {
        var c = Config;
        var w = Prepare(batch);
        int tokens = batch.Tokens, hq = c.Heads * c.HeadDim, hkv = c.KvHeads * c.HeadDim, qkvWidth = hq + 2 * hkv;
        var qLayout = HeadLayout.Packed(batch.Seq, qkvWidth, 0, c.Heads, c.HeadDim);
        var kLayout = HeadLayout.Packed(batch.Seq, qkvWidth, hq, c.KvHeads, c.HeadDim);
        var vLayout = HeadLayout.Packed(batch.Seq, qkvWidth, hq + hkv, c.KvHeads, c.HeadDim);
        bool bf16Rotation = RotationPrecision == RopePrecision.Bf16;

        _rope.Prepare(batch.MaxPosition);
        batch.BuildTileMap(mask);
        Ops.Embed(batch.Ids.SubView(0, tokens), _embed, w.X);
        foreach (var layer in _layers)
        {
            Ops.RmsNorm(w.X, layer.InputNorm, w.H, (float)c.RmsNormEps);
            Ops.Linear(w.H, layer.Qkv, layer.QkvBias, w.Qkv);
            Ops.Rope(w.Qkv, qLayout, batch.Seq, batch.Positions.SubView(0, tokens), _rope, bf16Rotation, batch.MaxPosition);
            Ops.Rope(w.Qkv, kLayout, batch.Seq, batch.Positions.SubView(0, tokens), _rope, bf16Rotation, batch.MaxPosition);
            mask.Apply<bool, AttentionAction>(new AttentionAction(Ops, w, qLayout, kLayout, vLayout, c.HeadDim, batch));
            Ops.Linear(w.Attention, layer.O, layer.OBias, w.Out);
            Ops.Add(w.X, w.Out);
            Ops.RmsNorm(w.X, layer.PostNorm, w.H, (float)c.RmsNormEps);
            Ops.Linear(w.H, layer.GateUp, layer.GateUpBias, w.GateUp);
            Ops.SwiGlu(w.GateUp, w.Act);
            Ops.Linear(w.Act, layer.Down, layer.DownBias, w.Out);
            Ops.Add(w.X, w.Out);
        }
        Ops.RmsNorm(w.X, _finalNorm, w.H, (float)c.RmsNormEps);
        Ops.Linear(w.H, _lmHead, null, w.Logits);
        return w.Logits;
    }

    /// <summary>Forward, then the logits as fp32 on the host [tokens × vocab] (synchronizes).</summary>
    public float[] Logits(GpuBatch batch, AttentionMask mask)
    {
        var logits = Forward(batch, mask);
        var w = _workspace!;
        Ops.ToFloat(logits, w.LogitsF32.View);
        return w.LogitsF32.View.SubView(0, logits.Length).GetAsArray1D();
    }

    /// <summary>Mean cross-entropy of the batch's labels (negative labels ignored) after a forward pass.</summary>
    public float Loss(GpuBatch batch, AttentionMask mask)
    {
        var logits = Forward(batch, mask);
        var w = _workspace!;
        Ops.CrossEntropy(logits, batch.Labels, w.Loss.View);
        var losses = w.Loss.View.SubView(0, batch.Tokens).GetAsArray1D();
        int counted = 0;
        double sum = 0;
        var labels = batch.HostLabels;
        for (int i = 0; i < losses.Length; i++)
            if (labels[i] >= 0) { sum += losses[i]; counted++; }
        return counted == 0 ? 0f : (float)(sum / counted);
    }

    private readonly struct AttentionAction(GpuOps ops, Workspace w, HeadLayout q, HeadLayout k, HeadLayout v, int headDim, GpuBatch batch) : IMaskAction<bool>
    {
        public bool Run<TMask>(TMask mask) where TMask : struct, IAttentionMask
        {
            ops.Attention(w.Qkv, q, w.Qkv, k, w.Qkv, v, headDim, batch, mask, w.Attention);
            return true;
        }
    }

    private Workspace Prepare(GpuBatch batch)
    {
        if (_workspace is { } w && w.Tokens == batch.Tokens) return w;
        _workspace?.Dispose();
        var c = Config;
        long tokens = batch.Tokens;
        long bytes = tokens * (3L * c.Hidden + (c.Heads + 2L * c.KvHeads) * c.HeadDim + (long)c.Heads * c.HeadDim + 3L * c.Intermediate + c.Vocab)
            * GpuTensor.SizeOf(Ops.DType) + tokens * (c.Vocab + 1L) * 4;
        Ops.Device.EnsureFits(bytes, $"activations for {batch.Rows} × {batch.Seq} tokens");
        _workspace = new Workspace(Ops.Device, Ops.DType, c, batch.Tokens);
        return _workspace;
    }

    private sealed class Workspace : IDisposable
    {
        public Workspace(GpuDevice device, GpuDType dtype, ModelConfig c, int tokens)
        {
            Tokens = tokens;
            X = GpuTensor.Allocate(device, dtype, "hidden", tokens, c.Hidden);
            H = GpuTensor.Allocate(device, dtype, "normed", tokens, c.Hidden);
            Qkv = GpuTensor.Allocate(device, dtype, "qkv", tokens, (c.Heads + 2L * c.KvHeads) * c.HeadDim);
            Attention = GpuTensor.Allocate(device, dtype, "attention", tokens, (long)c.Heads * c.HeadDim);
            Out = GpuTensor.Allocate(device, dtype, "projection", tokens, c.Hidden);
            GateUp = GpuTensor.Allocate(device, dtype, "gate_up", tokens, 2L * c.Intermediate);
            Act = GpuTensor.Allocate(device, dtype, "swiglu", tokens, c.Intermediate);
            Logits = GpuTensor.Allocate(device, dtype, "logits", tokens, c.Vocab);
            LogitsF32 = device.Allocate<float>((long)tokens * c.Vocab, "fp32 logits");
            Loss = device.Allocate<float>(tokens, "loss");
        }

        public int Tokens { get; }
        public GpuTensor X { get; }
        public GpuTensor H { get; }
        public GpuTensor Qkv { get; }
        public GpuTensor Attention { get; }
        public GpuTensor Out { get; }
        public GpuTensor GateUp { get; }
        public GpuTensor Act { get; }
        public GpuTensor Logits { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> LogitsF32 { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Loss { get; }

        public void Dispose()
        {
            foreach (var t in new[] { X, H, Qkv, Attention, Out, GateUp, Act, Logits }) t.Dispose();
            LogitsF32.Dispose();
            Loss.Dispose();
        }
    }

    private GpuTensor Upload(CheckpointReader checkpoint, string name, params long[] shape)
    {
        var values = Read(checkpoint, name, shape);
        var t = GpuTensor.FromHost(Ops.Device, Ops.DType, name, values, shape);
        _owned.Add(t);
        return t;
    }

    /// <summary>Rows of several tensors stacked into one (q ‖ k ‖ v, gate ‖ up).</summary>
    private GpuTensor Fused(CheckpointReader checkpoint, (string Name, long Rows)[] parts, long? columns)
    {
        long rows = parts.Sum(p => p.Rows), width = columns ?? 1;
        var values = new float[rows * width];
        long at = 0;
        foreach (var (name, partRows) in parts)
        {
            var part = Read(checkpoint, name, columns is { } c ? [partRows, c] : [partRows]);
            part.CopyTo(values.AsSpan((int)at));
            at += part.Length;
        }
        string fusedName = string.Join("+", parts.Select(p => p.Name));
        var t = columns is { } cols
            ? GpuTensor.FromHost(Ops.Device, Ops.DType, fusedName, values, rows, cols)
            : GpuTensor.FromHost(Ops.Device, Ops.DType, fusedName, values, rows);
        _owned.Add(t);
        return t;
    }

    private static float[] Read(CheckpointReader checkpoint, string name, long[] shape)
    {
        if (!checkpoint.Names.Contains(name)) throw new CheckpointException(checkpoint.Source, name, "is missing (the configuration needs it)");
        var info = checkpoint.Info(name);
        if (!info.Shape.SequenceEqual(shape))
            throw new CheckpointException(checkpoint.Source, name, $"has shape [{string.Join(", ", info.Shape)}] but the configuration needs [{string.Join(", ", shape)}]");
        return checkpoint.ReadFloat32(name);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _workspace?.Dispose();
        _rope.Dispose();
        foreach (var t in _owned) t.Dispose();
        Ops.Dispose();
    }
}
