using System.Text.Json;
using System.Text.Json.Nodes;

namespace ModelGen.Checkpoints;

/// <summary>
/// Binds HF <c>config.json</c> files: transformers ≥ 5 (<c>rope_parameters</c>) and older ones
/// (<c>rope_theta</c> plus <c>rope_scaling</c>, whose type key may be <c>type</c>).
/// </summary>
public static class HfConfig
{
    /// <summary>
    /// Reads <paramref name="configJsonPath"/>; fields it lacks keep the values of <paramref name="declared"/>.
    /// With <paramref name="requireDeclaredSizes"/>, every size in the file must equal the declared one.
    /// Throws <see cref="ModelConfigException"/> naming the file and field on bad input.
    /// </summary>
    public static ModelConfig Load(string configJsonPath, ModelConfig declared, bool requireDeclaredSizes)
    {
        if (!File.Exists(configJsonPath)) throw new FileNotFoundException($"{configJsonPath}: file not found", configJsonPath);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(configJsonPath)) as JsonObject
                ?? throw new ModelConfigException(configJsonPath, "(file)", "is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelConfigException(configJsonPath, "(file)", $"is not valid JSON: {e.Message}");
        }
        return Bind(new Reader(configJsonPath, root), declared, requireDeclaredSizes);
    }

    /// <summary>
    /// Writes a transformers-loadable <c>config.json</c> for <paramref name="config"/> (transformers ≥ 5 style,
    /// with a top-level <c>rope_theta</c> too for older readers), atomically.
    /// </summary>
    public static void Write(ModelConfig config, string path)
    {
        var rope = new JsonObject { ["rope_type"] = RopeNames.ToHf(config.Rope.Scaling), ["rope_theta"] = config.Rope.Theta };
        var r = config.Rope;
        if (r.Factor > 0) rope["factor"] = r.Factor;
        if (r.Scaling is RopeScaling.Llama3 or RopeScaling.Yarn or RopeScaling.LongRope && r.OriginalContext > 0)
            rope["original_max_position_embeddings"] = r.OriginalContext;
        if (r.Scaling == RopeScaling.Llama3) { rope["low_freq_factor"] = r.LowFreqFactor; rope["high_freq_factor"] = r.HighFreqFactor; }
        if (r.Scaling == RopeScaling.Yarn)
        {
            if (r.BetaFast > 0) rope["beta_fast"] = r.BetaFast;
            if (r.BetaSlow > 0) rope["beta_slow"] = r.BetaSlow;
            if (!r.Truncate) rope["truncate"] = false;
            if (r.Mscale > 0) rope["mscale"] = r.Mscale;
            if (r.MscaleAllDim > 0) rope["mscale_all_dim"] = r.MscaleAllDim;
        }
        if (r.AttentionFactor > 0) rope["attention_factor"] = r.AttentionFactor;
        if (r.ShortFactor is not null) rope["short_factor"] = new JsonArray(r.ShortFactor.Select(v => (JsonNode)v).ToArray());
        if (r.LongFactor is not null) rope["long_factor"] = new JsonArray(r.LongFactor.Select(v => (JsonNode)v).ToArray());
        if (r.PartialRotaryFactor != 1.0) rope["partial_rotary_factor"] = r.PartialRotaryFactor;

        string architecture = config.Family switch
        {
            "llama" => "LlamaForCausalLM",
            "mistral" => "MistralForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            _ => throw new ArgumentException($"no HF architecture known for model_type '{config.Family}'"),
        };
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(architecture),
            ["model_type"] = config.Family,
            ["vocab_size"] = config.Vocab,
            ["hidden_size"] = config.Hidden,
            ["intermediate_size"] = config.Intermediate,
            ["num_hidden_layers"] = config.Layers,
            ["num_attention_heads"] = config.Heads,
            ["num_key_value_heads"] = config.KvHeads,
            ["head_dim"] = config.HeadDim,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = config.MaxPositions,
            ["rms_norm_eps"] = config.RmsNormEps,
            ["tie_word_embeddings"] = config.TiedEmbeddings,
            ["rope_theta"] = config.Rope.Theta,
            ["rope_parameters"] = rope,
            ["bos_token_id"] = config.BosTokenId,
            ["eos_token_id"] = config.EosTokenId,
            ["torch_dtype"] = "float32",
        };
        switch (config.Family)
        {
            case "llama":
                if (config.QkvBias != config.OutputBias)
                    throw new ArgumentException("llama's attention_bias covers q, k, v and o together; QkvBias and OutputBias must agree");
                json["attention_bias"] = config.QkvBias;
                json["mlp_bias"] = config.MlpBias;
                break;
            case "mistral":
                json["sliding_window"] = config.SlidingWindow;
                break;
            case "qwen2":
                json["use_sliding_window"] = false;
                json["sliding_window"] = null;
                break;
        }
        AtomicFile.WriteText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private static ModelConfig Bind(Reader r, ModelConfig declared, bool requireSizes)
    {
        string modelType = r.RequiredString("model_type");
        if (modelType != declared.Family)
            throw new ModelConfigException(r.Path, "model_type", $"is '{modelType}' but the declaration is for '{declared.Family}'");

        int hidden = r.RequiredInt("hidden_size");
        int heads = r.RequiredInt("num_attention_heads");
        int kvHeads = r.OptionalInt("num_key_value_heads") ?? heads;
        int? headDim = r.OptionalInt("head_dim");
        if (headDim is null && heads > 0 && hidden % heads != 0)
            throw new ModelConfigException(r.Path, "head_dim", $"is missing and hidden_size {hidden} is not divisible by num_attention_heads {heads}");

        bool? attentionBias = r.OptionalBool("attention_bias");
        int? window = ReadSlidingWindow(r, modelType);
        var config = declared with
        {
            Family = modelType,
            Layers = r.RequiredInt("num_hidden_layers"),
            Hidden = hidden,
            Heads = heads,
            KvHeads = kvHeads,
            HeadDim = headDim ?? (heads > 0 ? hidden / heads : 0),
            Intermediate = r.RequiredInt("intermediate_size"),
            Vocab = r.RequiredInt("vocab_size"),
            MaxPositions = r.OptionalInt("max_position_embeddings") ?? declared.MaxPositions,
            RmsNormEps = r.OptionalDouble("rms_norm_eps") ?? declared.RmsNormEps,
            TiedEmbeddings = r.OptionalBool("tie_word_embeddings") ?? declared.TiedEmbeddings,
            // Llama's attention_bias covers q, k, v and o; Qwen2 has no such key (q/k/v biases, no o bias).
            QkvBias = attentionBias ?? declared.QkvBias,
            OutputBias = attentionBias ?? declared.OutputBias,
            MlpBias = r.OptionalBool("mlp_bias") ?? declared.MlpBias,
            SlidingWindow = window,
            BosTokenId = r.TokenId("bos_token_id", declared.BosTokenId),
            EosTokenId = r.TokenId("eos_token_id", declared.EosTokenId),
        };
        string activation = r.OptionalString("hidden_act") ?? "silu";
        if (activation != "silu")
            throw new ModelConfigException(r.Path, "hidden_act", $"is '{activation}'; the SwiGLU MLP of {modelType} needs 'silu'");
        config = config with { Rope = ReadRope(r, declared.Rope, config.MaxPositions) };

        if (requireSizes)
        {
            void Same(string field, long file, long decl)
            {
                if (file != decl) throw new ModelConfigException(r.Path, field, $"is {file} but the declaration fixes it at {decl}");
            }
            Same("num_hidden_layers", config.Layers, declared.Layers);
            Same("hidden_size", config.Hidden, declared.Hidden);
            Same("num_attention_heads", config.Heads, declared.Heads);
            Same("num_key_value_heads", config.KvHeads, declared.KvHeads);
            Same("head_dim", config.HeadDim, declared.HeadDim);
            Same("intermediate_size", config.Intermediate, declared.Intermediate);
            Same("vocab_size", config.Vocab, declared.Vocab);
        }
        try
        {
            return config.Validate(r.Path);
        }
        catch (ModelConfigException e) when (e.Field.StartsWith("rope_scaling.", StringComparison.Ordinal) && r.HasObject("rope_parameters"))
        {
            // RopeConfig names its fields in the older style; name them as this file spells them.
            string field = "rope_parameters." + e.Field["rope_scaling.".Length..];
            throw new ModelConfigException(r.Path, field, e.Problem);
        }
    }

    private static int? ReadSlidingWindow(Reader r, string modelType)
    {
        int? window = r.OptionalInt("sliding_window");
        if (modelType != "qwen2") return window;
        // Qwen2 only applies its window when use_sliding_window is set, and then only from layer max_window_layers on.
        if (r.OptionalBool("use_sliding_window") != true) return null;
        int layers = r.RequiredInt("num_hidden_layers");
        int from = r.OptionalInt("max_window_layers") ?? 0;
        if (window is not null && from < layers)
            throw new ModelConfigException(r.Path, "use_sliding_window", $"is true with max_window_layers {from} < {layers} layers: per-layer windows are not supported");
        return null;
    }

    private static RopeConfig ReadRope(Reader r, RopeConfig declared, int maxPositions)
    {
        // transformers >= 5: rope_parameters holds everything. Older: rope_theta + rope_scaling (+ top-level extras).
        JsonObject? p = r.OptionalObject("rope_parameters");
        string prefix = "rope_parameters";
        if (p is null)
        {
            p = r.OptionalObject("rope_scaling") ?? new JsonObject();
            prefix = "rope_scaling";
        }
        var sub = new Reader(r.Path, p, prefix + ".");
        double theta = sub.OptionalDouble("rope_theta") ?? r.OptionalDouble("rope_theta") ?? declared.Theta;
        string? typeName = sub.OptionalString("rope_type") ?? sub.OptionalString("type");
        if (!RopeNames.TryParse(typeName, out var scaling))
            throw new ModelConfigException(r.Path, prefix + ".rope_type", $"'{typeName}' is not a supported RoPE type (default, linear, dynamic, yarn, llama3, longrope)");
        if (p.ContainsKey("mrope_section"))
            throw new ModelConfigException(r.Path, prefix + ".mrope_section", "multimodal RoPE is not supported");

        int original = sub.OptionalInt("original_max_position_embeddings")
            ?? r.OptionalInt("original_max_position_embeddings")
            ?? (scaling is RopeScaling.Llama3 or RopeScaling.Yarn or RopeScaling.LongRope ? maxPositions : 0);
        return declared with
        {
            Scaling = scaling,
            Theta = theta,
            Factor = sub.OptionalDouble("factor") ?? 0,
            OriginalContext = original,
            LowFreqFactor = sub.OptionalDouble("low_freq_factor") ?? 0,
            HighFreqFactor = sub.OptionalDouble("high_freq_factor") ?? 0,
            BetaFast = sub.OptionalDouble("beta_fast") ?? 0,
            BetaSlow = sub.OptionalDouble("beta_slow") ?? 0,
            AttentionFactor = sub.OptionalDouble("attention_factor") ?? 0,
            Mscale = sub.OptionalDouble("mscale") ?? 0,
            MscaleAllDim = sub.OptionalDouble("mscale_all_dim") ?? 0,
            Truncate = sub.OptionalBool("truncate") ?? true,
            ShortFactor = sub.OptionalDoubles("short_factor"),
            LongFactor = sub.OptionalDoubles("long_factor"),
            PartialRotaryFactor = sub.OptionalDouble("partial_rotary_factor") ?? r.OptionalDouble("partial_rotary_factor") ?? declared.PartialRotaryFactor,
        };
    }

    /// <summary>Typed access to one JSON object, with errors that name the file and the field.</summary>
    private sealed class Reader(string path, JsonObject obj, string prefix = "")
    {
        public string Path { get; } = path;

        private JsonNode? Node(string field) => obj.TryGetPropertyValue(field, out var n) ? n : null;

        public bool HasObject(string field) => Node(field) is JsonObject;

        private ModelConfigException Wrong(string field, string want, JsonNode? got) =>
            new(Path, prefix + field, $"must be {want}, got {(got is null ? "null" : got.ToJsonString())}");

        public string RequiredString(string field) =>
            OptionalString(field) ?? throw new ModelConfigException(Path, prefix + field, "is required but missing");

        public string? OptionalString(string field)
        {
            var n = Node(field);
            if (n is null) return null;
            return n is JsonValue v && v.TryGetValue(out string? s) ? s : throw Wrong(field, "a string", n);
        }

        public int RequiredInt(string field) =>
            OptionalInt(field) ?? throw new ModelConfigException(Path, prefix + field, "is required but missing");

        public int? OptionalInt(string field)
        {
            var n = Node(field);
            if (n is null) return null;
            if (n is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
            {
                double d = v.GetValue<double>();
                if (d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue) return (int)d;
            }
            throw Wrong(field, "an integer", n);
        }

        public double? OptionalDouble(string field)
        {
            var n = Node(field);
            if (n is null) return null;
            return n is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : throw Wrong(field, "a number", n);
        }

        public bool? OptionalBool(string field)
        {
            var n = Node(field);
            if (n is null) return null;
            return n is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>() : throw Wrong(field, "true or false", n);
        }

        public JsonObject? OptionalObject(string field)
        {
            var n = Node(field);
            if (n is null) return null;
            return n as JsonObject ?? throw Wrong(field, "an object", n);
        }

        public IReadOnlyList<double>? OptionalDoubles(string field)
        {
            var n = Node(field);
            if (n is null) return null;
            if (n is not JsonArray a) throw Wrong(field, "a list of numbers", n);
            var list = new double[a.Count];
            for (int i = 0; i < a.Count; i++)
                list[i] = a[i] is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : throw Wrong($"{field}[{i}]", "a number", a[i]);
            return list;
        }

        /// <summary>A token id: an integer, a list (its first entry), or null; absent keeps the fallback.</summary>
        public int? TokenId(string field, int? fallback)
        {
            if (!obj.TryGetPropertyValue(field, out var n)) return fallback;
            if (n is null) return null;
            if (n is JsonArray a) return a.Count == 0 ? null : a[0] is JsonValue v0 && v0.GetValueKind() == JsonValueKind.Number ? v0.GetValue<int>() : throw Wrong(field, "an integer or a list of integers", n);
            return OptionalInt(field);
        }
    }
}
