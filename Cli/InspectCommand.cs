using System.ComponentModel;
using System.Globalization;
using ModelGen.Backends.Torch;
using ModelGen.Checkpoints;
using Spectre.Console;
using Spectre.Console.Cli;

namespace ModelGen.Cli;

/// <summary><c>modelgen inspect DIR</c>: the bound configuration and the parameter count.</summary>
public sealed class InspectCommand : Command<InspectCommand.Settings>
{
    /// <summary>Arguments of <c>inspect</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Checkpoint folder.</summary>
        [CommandArgument(0, "<DIR>")]
        [Description("Folder with config.json and model.safetensors (or a sharded index).")]
        public string Directory { get; init; } = "";
    }

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        if (!System.IO.Directory.Exists(settings.Directory))
            throw new DirectoryNotFoundException($"{settings.Directory}: no such checkpoint folder");
        var declaration = PretrainedModel.Resolve(settings.Directory, Models.ModelCatalog.All);
        var config = declaration.FromHuggingFace(Path.Combine(settings.Directory, "config.json"));
        var table = new Table().AddColumn("field").AddColumn("value");
        foreach (var (field, value) in Describe(config)) table.AddRow(Markup.Escape(field), Markup.Escape(value));
        // A console bound to the current stdout (AnsiConsole's default one keeps the writer it first saw).
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) }).Write(table);

        long declared = config.ParameterCount();
        using var checkpoint = CheckpointReader.Open(settings.Directory);
        long stored = checkpoint.Names.Sum(n => checkpoint.Info(n).Shape.Aggregate(1L, (a, b) => a * b));
        Console.WriteLine($"declaration: {declaration.Name} ({declaration.DeclaringType.FullName})");
        Console.WriteLine($"tensors: {checkpoint.Names.Count}, stored parameters: {stored.ToString("N0", CultureInfo.InvariantCulture)}");
        Console.WriteLine($"parameters={declared}");
        return 0;
    }

    private static IEnumerable<(string, string)> Describe(ModelConfig c)
    {
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        yield return ("model_type", c.Family);
        yield return ("num_hidden_layers", c.Layers.ToString(CultureInfo.InvariantCulture));
        yield return ("hidden_size", c.Hidden.ToString(CultureInfo.InvariantCulture));
        yield return ("num_attention_heads / num_key_value_heads", $"{c.Heads} / {c.KvHeads} (GQA group {c.GqaGroup})");
        yield return ("head_dim", c.HeadDim.ToString(CultureInfo.InvariantCulture));
        yield return ("intermediate_size", c.Intermediate.ToString(CultureInfo.InvariantCulture));
        yield return ("vocab_size", c.Vocab.ToString(CultureInfo.InvariantCulture));
        yield return ("max_position_embeddings", c.MaxPositions.ToString(CultureInfo.InvariantCulture));
        yield return ("rms_norm_eps", F(c.RmsNormEps));
        yield return ("tie_word_embeddings", c.TiedEmbeddings ? "true" : "false");
        yield return ("biases (qkv / o / mlp)", $"{c.QkvBias} / {c.OutputBias} / {c.MlpBias}".ToLowerInvariant());
        yield return ("sliding_window", c.SlidingWindow?.ToString(CultureInfo.InvariantCulture) ?? "none");
        var r = c.Rope;
        string scaling = r.Scaling switch
        {
            RopeScaling.Default => "",
            RopeScaling.Llama3 => $", factor {F(r.Factor)}, low {F(r.LowFreqFactor)}, high {F(r.HighFreqFactor)}, original {r.OriginalContext}",
            _ => $", factor {F(r.Factor)}" + (r.OriginalContext > 0 ? $", original {r.OriginalContext}" : ""),
        };
        yield return ("rope", $"{RopeNames.ToHf(r.Scaling)}, theta {F(r.Theta)}{scaling}, rotary dim {r.RotaryDim(c.HeadDim)}, rotation in {r.Precision.ToString().ToLowerInvariant()}");
        yield return ("training mask (declaration)", c.Mask.ToString());
        yield return ("bos / eos", $"{c.BosTokenId?.ToString(CultureInfo.InvariantCulture) ?? "none"} / {c.EosTokenId?.ToString(CultureInfo.InvariantCulture) ?? "none"}");
    }
}
