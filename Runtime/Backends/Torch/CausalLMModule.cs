using ModelGen.Checkpoints;
using ModelGen.Rope;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelGen.Backends.Torch;

/// <summary>
/// The TorchSharp module tree of a decoder-only causal LM (Llama, Mistral, Qwen2), with HF parameter names
/// (<c>model.layers.0.self_attn.q_proj.weight</c>, …) so checkpoints load and save without a name map.
/// </summary>
public sealed class CausalLMModule : nn.Module<Tensor, AttentionInputs, Tensor>
{
    private readonly DecoderBody _model;
    private readonly Linear? _lmHead;
    private readonly Compute _compute = new();

    /// <summary>The configuration the tree was built for.</summary>
    public ModelConfig Config { get; }

    /// <summary>
    /// When set (to bf16), projections, the MLP and attention run in that dtype on casts of the fp32 weights, while
    /// norms, RoPE angles, residuals and logits stay fp32 — what <c>torch.autocast</c> does; gradients reach the fp32
    /// master weights through the casts. Null = everything in the parameters' dtype.
    /// </summary>
    public ScalarType? Autocast { get => _compute.Autocast; set => _compute.Autocast = value; }

    /// <summary>Precision of the RoPE rotation (starts as the configuration's <c>Rope.Precision</c>).</summary>
    public RopePrecision RotationPrecision { get => _compute.Rotation; set => _compute.Rotation = value; }

    /// <summary>
    /// Observes each layer's rotated queries and keys, (layer, q [B, Hq, S, D], k [B, Hkv, S, D]), as attention sees them:
    /// what the RoPE analysis measures. Null (the default) costs nothing.
    /// </summary>
    public Action<int, Tensor, Tensor>? AttentionProbe { get => _compute.Probe; set => _compute.Probe = value; }

    /// <summary>The final hidden states [B, S, H] without the LM head (cheaper when only attention is studied).</summary>
    public Tensor ForwardHidden(Tensor inputIds, AttentionInputs attention) => _model.forward(inputIds, attention);

    /// <summary>
    /// Builds the tree for <paramref name="config"/>, initialized as HF initializes these models from scratch
    /// (<c>initializer_range</c> 0.02): matrices and embeddings N(0, <paramref name="initStd"/>²), biases 0, norm weights 1.
    /// Seed TorchSharp (<c>torch.random.manual_seed</c>) first for a reproducible initialization.
    /// </summary>
    public CausalLMModule(ModelConfig config, double initStd = 0.02) : base("CausalLM")
    {
        Config = config.Validate();
        _compute.Rotation = config.Rope.Precision;
        _model = new DecoderBody(config, _compute);
        register_module("model", _model);
        if (!config.TiedEmbeddings)
        {
            _lmHead = nn.Linear(config.Hidden, config.Vocab, hasBias: false);
            register_module("lm_head", _lmHead);
        }
        using var _ = no_grad();
        using var one = 1.0.ToScalar(); // explicit and alive across the native calls (see RopeStudy.Scores)
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.fill_(one);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else p.normal_(0.0, initStd);
        }
    }

    /// <summary>Logits [B, S, V] (fp32) for token ids [B, S].</summary>
    public override Tensor forward(Tensor inputIds, AttentionInputs attention)
    {
        using var scope = NewDisposeScope();
        var hidden = _model.forward(inputIds, attention);
        var weight = _lmHead?.weight ?? _model.EmbedTokens.weight!;
        var logits = _compute.Linear(hidden, weight, null).to(ScalarType.Float32);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Copies every parameter from <paramref name="checkpoint"/>, which must hold each HF tensor this
    /// configuration has with the exact shape; values are converted to each parameter's dtype.
    /// </summary>
    public void LoadFrom(CheckpointReader checkpoint)
    {
        using var _ = no_grad();
        var missing = new List<string>();
        foreach (var (name, parameter) in named_parameters())
        {
            if (!checkpoint.Names.Contains(name)) { missing.Add(name); continue; }
            var info = checkpoint.Info(name);
            if (!info.Shape.SequenceEqual(parameter.shape))
                throw new CheckpointException(checkpoint.Source, name,
                    $"has shape [{string.Join(", ", info.Shape)}] but the configuration needs [{string.Join(", ", parameter.shape)}]");
            using var value = checkpoint.ToTensor(name, parameter.dtype);
            parameter.copy_(value);
        }
        if (missing.Count > 0)
            throw new CheckpointException(checkpoint.Source, missing[0],
                $"is missing ({missing.Count} tensor(s) the configuration needs are absent: {string.Join(", ", missing.Take(5))}{(missing.Count > 5 ? ", …" : "")})");
    }

    /// <summary>HF names and shapes of this module's parameters, in registration order.</summary>
    public IReadOnlyList<WeightSpec> ParameterSpecs() =>
        named_parameters().Select(p => new WeightSpec(p.name, p.parameter.shape)).ToList();

    /// <summary>The decoder stack: <c>model.embed_tokens</c>, <c>model.layers</c>, <c>model.norm</c>.</summary>
    private sealed class DecoderBody : nn.Module<Tensor, AttentionInputs, Tensor>
    {
        private readonly ModuleList<DecoderLayer> _layers;
        private readonly RmsNorm _norm;
        private readonly RopeTable _rope;
        private readonly Compute _compute;

        public Embedding EmbedTokens { get; }

        public DecoderBody(ModelConfig config, Compute compute) : base("model")
        {
            EmbedTokens = nn.Embedding(config.Vocab, config.Hidden);
            _layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, config.Layers).Select(i => new DecoderLayer(config, compute, i)).ToArray());
            _norm = new RmsNorm(config.Hidden, config.RmsNormEps);
            _rope = new RopeTable(config.Rope, config.HeadDim, config.MaxPositions);
            _compute = compute;
            register_module("embed_tokens", EmbedTokens);
            register_module("layers", _layers);
            register_module("norm", _norm);
        }

        public override Tensor forward(Tensor inputIds, AttentionInputs attention)
        {
            var x = EmbedTokens.forward(inputIds);
            var (cos, sin) = _rope.CosSin(attention.PositionIds);
            var rotary = new RotaryInputs(cos, sin, _compute.Rotation);
            foreach (var layer in _layers) x = layer.forward(x, rotary, attention);
            return _norm.forward(x);
        }
    }

    private readonly record struct RotaryInputs(Tensor Cos, Tensor Sin, RopePrecision Precision);

    /// <summary>The autocast setting shared by every block of one model.</summary>
    private sealed class Compute
    {
        public ScalarType? Autocast { get; set; }

        public RopePrecision Rotation { get; set; }

        public Action<int, Tensor, Tensor>? Probe { get; set; }

        public Tensor Project(Linear layer, Tensor x) => Linear(x, layer.weight!, layer.bias);

        public Tensor Linear(Tensor x, Tensor weight, Tensor? bias) => Autocast is { } dt
            ? nn.functional.linear(x.to(dt), weight.to(dt), bias?.to(dt))
            : nn.functional.linear(x, weight, bias);
    }

    /// <summary><c>model.layers.i</c>: pre-norm attention and MLP blocks with residuals.</summary>
    private sealed class DecoderLayer : nn.Module
    {
        private readonly RmsNorm _inputNorm, _postAttentionNorm;
        private readonly SelfAttention _attention;
        private readonly SwiGluMlp _mlp;

        public DecoderLayer(ModelConfig config, Compute compute, int index) : base("layer")
        {
            _inputNorm = new RmsNorm(config.Hidden, config.RmsNormEps);
            _attention = new SelfAttention(config, compute, index);
            _postAttentionNorm = new RmsNorm(config.Hidden, config.RmsNormEps);
            _mlp = new SwiGluMlp(config, compute);
            register_module("input_layernorm", _inputNorm);
            register_module("self_attn", _attention);
            register_module("post_attention_layernorm", _postAttentionNorm);
            register_module("mlp", _mlp);
        }

        public Tensor forward(Tensor x, RotaryInputs rotary, AttentionInputs attention)
        {
            var h = x + _attention.forward(_inputNorm.forward(x), rotary, attention);
            return h + _mlp.forward(_postAttentionNorm.forward(h));
        }
    }

    /// <summary><c>self_attn</c>: q/k/v/o projections, RoPE, GQA attention under the packed mask.</summary>
    private sealed class SelfAttention : nn.Module
    {
        private readonly Linear _q, _k, _v, _o;
        private readonly int _heads, _kvHeads, _headDim, _layer;
        private readonly Compute _compute;

        public SelfAttention(ModelConfig c, Compute compute, int layer) : base("self_attn")
        {
            _compute = compute;
            _layer = layer;
            (_heads, _kvHeads, _headDim) = (c.Heads, c.KvHeads, c.HeadDim);
            _q = nn.Linear(c.Hidden, c.Heads * c.HeadDim, hasBias: c.QkvBias);
            _k = nn.Linear(c.Hidden, c.KvHeads * c.HeadDim, hasBias: c.QkvBias);
            _v = nn.Linear(c.Hidden, c.KvHeads * c.HeadDim, hasBias: c.QkvBias);
            _o = nn.Linear(c.Heads * c.HeadDim, c.Hidden, hasBias: c.OutputBias);
            register_module("q_proj", _q);
            register_module("k_proj", _k);
            register_module("v_proj", _v);
            register_module("o_proj", _o);
        }

        public Tensor forward(Tensor x, RotaryInputs rotary, AttentionInputs attention)
        {
            long b = x.shape[0], s = x.shape[1];
            var q = _compute.Project(_q, x).view(b, s, _heads, _headDim).transpose(1, 2);
            var k = _compute.Project(_k, x).view(b, s, _kvHeads, _headDim).transpose(1, 2);
            var v = _compute.Project(_v, x).view(b, s, _kvHeads, _headDim).transpose(1, 2);
            (q, k) = RotaryEmbedding.Apply(q, k, rotary.Cos, rotary.Sin, rotary.Precision);
            _compute.Probe?.Invoke(_layer, q, k);
            var o = PackedAttention.Forward(q, k, v, attention);
            return _compute.Project(_o, o.transpose(1, 2).reshape(b, s, _heads * _headDim));
        }
    }

    /// <summary><c>mlp</c>: down(silu(gate(x)) · up(x)).</summary>
    private sealed class SwiGluMlp : nn.Module
    {
        private readonly Linear _gate, _up, _down;
        private readonly Compute _compute;

        public SwiGluMlp(ModelConfig c, Compute compute) : base("mlp")
        {
            _compute = compute;
            _gate = nn.Linear(c.Hidden, c.Intermediate, hasBias: c.MlpBias);
            _up = nn.Linear(c.Hidden, c.Intermediate, hasBias: c.MlpBias);
            _down = nn.Linear(c.Intermediate, c.Hidden, hasBias: c.MlpBias);
            register_module("gate_proj", _gate);
            register_module("up_proj", _up);
            register_module("down_proj", _down);
        }

        public Tensor forward(Tensor x) =>
            _compute.Project(_down, nn.functional.silu(_compute.Project(_gate, x)) * _compute.Project(_up, x));
    }
}

/// <summary>RMSNorm as HF computes it: in fp32, then scaled by <c>weight</c> in the input dtype.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    // TorchSharp's Module.to() swaps parameters and finds the fields to update by their registered name, so this
    // field must be called exactly "weight".
#pragma warning disable IDE1006
    private Parameter weight;
#pragma warning restore IDE1006
    private readonly double _eps;

    /// <summary>A norm over the last dimension of width <paramref name="dim"/>, weight initialized to 1.</summary>
    public RmsNorm(long dim, double eps) : base("RmsNorm")
    {
        _eps = eps;
        weight = new Parameter(ones(dim));
        register_parameter(nameof(weight), weight);
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        var dtype = x.dtype;
        var h = x.to(ScalarType.Float32);
        var variance = h.pow(2).mean([-1L], keepdim: true);
        h = h * rsqrt(variance + _eps);
        return weight * h.to(dtype);
    }
}
