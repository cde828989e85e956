using System.ComponentModel;
using ModelGen.Backends.Torch;
using ModelGen.Data;
using ModelGen.Training;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace ModelGen.Cli;

/// <summary><c>modelgen generate DIR</c>: sample a continuation from a trained checkpoint.</summary>
public sealed class GenerateCommand : Command<GenerateCommand.Settings>
{
    /// <summary>Arguments of <c>generate</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Run folder or checkpoint folder.</summary>
        [CommandArgument(0, "<DIR>")]
        [Description("A training run folder (its checkpoint/ is used) or an HF checkpoint folder.")]
        public string Directory { get; init; } = "";
        /// <summary>Prompt.</summary>
        [CommandOption("--prompt <TEXT>")] [Description("Text to continue (default \"The\").")] public string Prompt { get; init; } = "The";
        /// <summary>Tokens to sample.</summary>
        [CommandOption("--tokens <N>")] [Description("Tokens to generate (default 60).")] public int Tokens { get; init; } = 60;
        /// <summary>Temperature.</summary>
        [CommandOption("--temperature <T>")] [Description("Sampling temperature; 0 = greedy (default 0.8).")] public double Temperature { get; init; } = 0.8;
        /// <summary>Top-k.</summary>
        [CommandOption("--top-k <K>")] [Description("Sample among the K most likely tokens (default 40).")] public int TopK { get; init; } = 40;
        /// <summary>Seed.</summary>
        [CommandOption("--seed <N>")] [Description("Sampling seed (default 0).")] public int Seed { get; init; }

        /// <inheritdoc/>
        public override Spectre.Console.ValidationResult Validate() =>
            Tokens <= 0 ? Spectre.Console.ValidationResult.Error($"--tokens must be positive, got {Tokens}")
            : Temperature < 0 ? Spectre.Console.ValidationResult.Error($"--temperature must be ≥ 0, got {Temperature}")
            : TopK <= 0 ? Spectre.Console.ValidationResult.Error($"--top-k must be positive, got {TopK}")
            : Spectre.Console.ValidationResult.Success();
    }

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        var (folder, config, model, saved) = LoadedModel.Open(s.Directory);
        var tokenizer = saved ?? TextTokenizer.Gpt2();
        tokenizer.RequireFits(config, Path.Combine(folder, "config.json"));

        var ids = new List<long> { config.AnchorTokenId };
        ids.AddRange(tokenizer.Encode(s.Prompt).Select(i => (long)i));
        var generator = new Generator().manual_seed(s.Seed);
        using var _ = no_grad();
        Console.Write(s.Prompt);
        for (int t = 0; t < s.Tokens && ids.Count < config.MaxPositions; t++)
        {
            using var scope = NewDisposeScope();
            var input = tensor(ids.ToArray(), [1, ids.Count]);
            var logits = model.forward(input, AttentionInputs.Causal(1, ids.Count, config.SlidingWindow))[0, -1];
            long next;
            if (s.Temperature == 0) next = logits.argmax().item<long>();
            else
            {
                var (values, indices) = (logits / s.Temperature).topk(Math.Min(s.TopK, config.Vocab));
                var choice = multinomial(values.softmax(0), 1, generator: generator).item<long>();
                next = indices[choice].item<long>();
            }
            if (next == config.EosTokenId) break;
            ids.Add(next);
            Console.Write(tokenizer.Decode([(int)next]));
        }
        Console.WriteLine();
        return 0;
    }
}
