using ModelGen.Generators.Models;
using static ModelGen.Generators.Emit.Literals;

namespace ModelGen.Generators.Emit;

/// <summary>
/// Emits the generated part of one declaration: family constants, the declared <c>ModelConfig</c>, the runtime
/// descriptor, the HF weight list and, for sized declarations, the ILGPU kernel specialization struct.
/// </summary>
internal static class DeclarationEmitter
{
    public const string GeneratedCode = "[global::System.CodeDom.Compiler.GeneratedCode(\"ModelGen.Generators\", \"1.0.0\")]";

    /// <summary>The hint name: the namespace-qualified class name, so equal class names in two namespaces do not clash.</summary>
    public static string HintName(ModelSpec spec) => spec.FullName + ".g.cs";

    public static string Emit(ModelSpec spec)
    {
        var w = CodeWriter.File(spec.Namespace);
        w.Line($"partial class {spec.ClassName}");
        using (w.Block())
        {
            w.Line("/// <summary>HF <c>model_type</c> of this declaration.</summary>");
            w.Line($"public const string Family = {String(spec.Family)};");
            w.Line();
            w.Line("/// <summary>True when the declaration has no <c>[Decoder]</c>: its sizes come from <c>config.json</c>.</summary>");
            w.Line($"public const bool IsFamily = {Bool(spec.IsFamily)};");
            w.Line();
            EmitDeclared(w, spec);
            w.Line();
            w.Line("/// <summary>The runtime descriptor of this declaration, as listed in the assembly's <c>ModelCatalog</c>.</summary>");
            w.Line("public static global::ModelGen.ModelDeclaration Declaration { get; } = new()");
            using (w.Block(";"))
            {
                w.Line($"Name = {String(spec.ClassName)},");
                w.Line($"DeclaringType = typeof({spec.GlobalName}),");
                w.Line("IsFamily = IsFamily,");
                w.Line("Declared = Declared,");
                w.Line("Weights = Weights,");
            }
            w.Line();
            w.Line("/// <summary>Binds an HF <c>config.json</c> to this declaration (see <see cref=\"global::ModelGen.ModelDeclaration.FromHuggingFace\"/>).</summary>");
            w.Line("/// <param name=\"configJsonPath\">Path of the <c>config.json</c> file.</param>");
            w.Line("public static global::ModelGen.ModelConfig FromHuggingFace(string configJsonPath) => Declaration.FromHuggingFace(configJsonPath);");
            w.Line();
            w.Line("/// <summary>The TorchSharp module tree, with HF parameter names, for a configuration of this declaration.</summary>");
            if (spec.IsFamily)
            {
                w.Line("/// <param name=\"config\">A configuration of this family, e.g. from <see cref=\"FromHuggingFace\"/>.</param>");
                w.Line("public static global::ModelGen.Backends.Torch.CausalLMModule CreateTorchModel(global::ModelGen.ModelConfig config) => Declaration.CreateTorchModel(config);");
            }
            else
            {
                w.Line("/// <param name=\"config\">A configuration of this declaration; null builds <see cref=\"Declared\"/>.</param>");
                w.Line("public static global::ModelGen.Backends.Torch.CausalLMModule CreateTorchModel(global::ModelGen.ModelConfig? config = null) => Declaration.CreateTorchModel(config ?? Declared);");
            }
            w.Line();
            EmitWeights(w);
            if (!spec.IsFamily)
            {
                w.Line();
                EmitKernel(w, spec);
            }
        }
        return w.ToString();
    }

    private static void EmitDeclared(CodeWriter w, ModelSpec spec)
    {
        SizeSpec s = spec.Sizes;
        RopeSpec r = spec.Rope;
        w.Line(spec.IsFamily
            ? "/// <summary>The configuration the attributes declare; sizes are 0 because a family takes them from <c>config.json</c>.</summary>"
            : "/// <summary>The configuration the attributes declare.</summary>");
        w.Line("public static global::ModelGen.ModelConfig Declared { get; } = new global::ModelGen.ModelConfig");
        using (w.Block(";"))
        {
            w.Line($"Family = {String(spec.Family)},");
            w.Line($"Layers = {Int(s.Layers)},");
            w.Line($"Hidden = {Int(s.Hidden)},");
            w.Line($"Heads = {Int(s.Heads)},");
            w.Line($"KvHeads = {Int(s.KvHeads)},");
            w.Line($"HeadDim = {Int(s.HeadDim)},");
            w.Line($"Intermediate = {Int(s.Intermediate)},");
            w.Line($"Vocab = {Int(s.Vocab)},");
            w.Line($"MaxPositions = {Int(s.MaxPositions)},");
            w.Line($"RmsNormEps = {Double(spec.RmsNormEps)},");
            w.Line($"TiedEmbeddings = {Bool(spec.TiedEmbeddings)},");
            w.Line($"QkvBias = {Bool(spec.QkvBias)},");
            w.Line($"OutputBias = {Bool(spec.OutputBias)},");
            w.Line($"MlpBias = {Bool(spec.MlpBias)},");
            w.Line($"Mlp = global::ModelGen.MlpKind.{spec.Mlp},");
            w.Line($"SlidingWindow = {NullableInt(spec.SlidingWindow > 0 ? spec.SlidingWindow : null)},");
            w.Line($"Mask = global::ModelGen.MaskKind.{spec.Mask},");
            w.Line("Rope = new global::ModelGen.RopeConfig");
            using (w.Block(","))
            {
                w.Line($"Scaling = global::ModelGen.RopeScaling.{r.Scaling},");
                w.Line($"Theta = {Double(r.Theta)},");
                w.Line($"Factor = {Double(r.Factor)},");
                w.Line($"OriginalContext = {Int(r.OriginalContext)},");
                w.Line($"LowFreqFactor = {Double(r.LowFreqFactor)},");
                w.Line($"HighFreqFactor = {Double(r.HighFreqFactor)},");
                w.Line($"BetaFast = {Double(r.BetaFast)},");
                w.Line($"BetaSlow = {Double(r.BetaSlow)},");
                w.Line($"AttentionFactor = {Double(r.AttentionFactor)},");
                w.Line("Mscale = 0d,");
                w.Line("MscaleAllDim = 0d,");
                w.Line("Truncate = true,");
                w.Line($"ShortFactor = {DoubleArray(r.ShortFactor)},");
                w.Line($"LongFactor = {DoubleArray(r.LongFactor)},");
                w.Line($"PartialRotaryFactor = {Double(r.PartialRotaryFactor)},");
                w.Line($"Precision = global::ModelGen.RopePrecision.{r.Precision},");
            }
            w.Line($"BosTokenId = {NullableInt(spec.BosTokenId)},");
            w.Line($"EosTokenId = {Int(spec.EosTokenId)},");
        }
    }

    private static void EmitWeights(CodeWriter w)
    {
        w.Line("/// <summary>");
        w.Line("/// The HF tensors (names and shapes) of a model of this declaration with <paramref name=\"config\"/>, in checkpoint order:");
        w.Line("/// embeddings, per layer its norms, attention and MLP projections (biases as the configuration asks), the final norm,");
        w.Line("/// and the LM head unless the embeddings are tied.");
        w.Line("/// </summary>");
        w.Line("/// <param name=\"config\">The configuration whose sizes and bias flags shape the tensors.</param>");
        w.Line("public static global::System.Collections.Generic.IReadOnlyList<global::ModelGen.WeightSpec> Weights(global::ModelGen.ModelConfig config)");
        using (w.Block())
        {
            w.Line("if (config is null) throw new global::System.ArgumentNullException(nameof(config));");
            w.Line("long v = config.Vocab, h = config.Hidden, f = config.Intermediate;");
            w.Line("long q = (long)config.Heads * config.HeadDim, kv = (long)config.KvHeads * config.HeadDim;");
            w.Line("var weights = new global::System.Collections.Generic.List<global::ModelGen.WeightSpec>(3 + config.Layers * 18);");
            w.Line("void Add(string name, params long[] shape) => weights.Add(new global::ModelGen.WeightSpec(name, shape));");
            w.Line("Add(\"model.embed_tokens.weight\", v, h);");
            w.Line("for (int i = 0; i < config.Layers; i++)");
            using (w.Block())
            {
                w.Line("string p = \"model.layers.\" + i.ToString(global::System.Globalization.CultureInfo.InvariantCulture) + \".\";");
                w.Line("Add(p + \"input_layernorm.weight\", h);");
                w.Line("Add(p + \"self_attn.q_proj.weight\", q, h);");
                w.Line("if (config.QkvBias) Add(p + \"self_attn.q_proj.bias\", q);");
                w.Line("Add(p + \"self_attn.k_proj.weight\", kv, h);");
                w.Line("if (config.QkvBias) Add(p + \"self_attn.k_proj.bias\", kv);");
                w.Line("Add(p + \"self_attn.v_proj.weight\", kv, h);");
                w.Line("if (config.QkvBias) Add(p + \"self_attn.v_proj.bias\", kv);");
                w.Line("Add(p + \"self_attn.o_proj.weight\", h, q);");
                w.Line("if (config.OutputBias) Add(p + \"self_attn.o_proj.bias\", h);");
                w.Line("Add(p + \"post_attention_layernorm.weight\", h);");
                w.Line("Add(p + \"mlp.gate_proj.weight\", f, h);");
                w.Line("if (config.MlpBias) Add(p + \"mlp.gate_proj.bias\", f);");
                w.Line("Add(p + \"mlp.up_proj.weight\", f, h);");
                w.Line("if (config.MlpBias) Add(p + \"mlp.up_proj.bias\", f);");
                w.Line("Add(p + \"mlp.down_proj.weight\", h, f);");
                w.Line("if (config.MlpBias) Add(p + \"mlp.down_proj.bias\", h);");
            }
            w.Line("Add(\"model.norm.weight\", h);");
            w.Line("if (!config.TiedEmbeddings) Add(\"lm_head.weight\", v, h);");
            w.Line("return weights;");
        }
    }

    private static void EmitKernel(CodeWriter w, ModelSpec spec)
    {
        SizeSpec s = spec.Sizes;
        w.Line("/// <summary>Kernel specialization consumed by the ILGPU backend: ILGPU folds these constants per struct type.</summary>");
        w.Line(GeneratedCode);
        w.Line("public readonly struct Kernel : global::ModelGen.IKernelSpecialization");
        using (w.Block())
        {
            w.Line($"/// <inheritdoc/>");
            w.Line($"public int HeadDim => {Int(s.HeadDim)};");
            w.Line($"/// <inheritdoc/>");
            w.Line($"public int Heads => {Int(s.Heads)};");
            w.Line($"/// <inheritdoc/>");
            w.Line($"public int KvHeads => {Int(s.KvHeads)};");
            w.Line($"/// <inheritdoc/>");
            w.Line($"public int GqaGroup => {Int(s.Heads / s.KvHeads)};");
            w.Line($"/// <inheritdoc/>");
            w.Line($"public int RotaryDim => {Int(spec.RotaryDim)};");
            w.Line($"/// <inheritdoc/>");
            w.Line($"public int SlidingWindow => {Int(spec.SlidingWindow)};");
            w.Line($"/// <inheritdoc/>");
            w.Line($"public global::ModelGen.MaskKind Mask => global::ModelGen.MaskKind.{spec.Mask};");
        }
    }
}
