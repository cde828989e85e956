using ModelGen.Backends.Torch;
using ModelGen.Data;
using ModelGen.Training;

namespace ModelGen.Cli;

/// <summary>A model loaded from a training run folder or an HF checkpoint folder, with the tokenizer that goes with it.</summary>
internal sealed record LoadedModel(string Folder, ModelConfig Config, CausalLMModule Model, TextTokenizer? Tokenizer)
{
    /// <summary>
    /// Loads <paramref name="path"/>: a run folder (its <c>checkpoint/</c>, and the tokenizer its trainer state names) or
    /// a checkpoint folder (its own <c>tokenizer.json</c> / <c>tokenizer.model</c>, if any).
    /// </summary>
    public static LoadedModel Open(string path)
    {
        string folder = TrainingCheckpoint.Locate(path) ?? path;
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{path}: no such folder");
        var (config, model) = PretrainedModel.Load(folder, Models.ModelCatalog.All);
        var tokenizer = File.Exists(Path.Combine(folder, TrainingCheckpoint.StateFileName))
            ? TokenizerOfRun(TrainingCheckpoint.ReadState(folder).Tokenizer, folder)
            : TextTokenizer.FromFolder(folder);
        return new LoadedModel(folder, config, model, tokenizer);
    }

    /// <summary>The tokenizer a training run recorded by name.</summary>
    private static TextTokenizer TokenizerOfRun(string name, string checkpoint) =>
        name.StartsWith("gpt2", StringComparison.Ordinal) ? TextTokenizer.Gpt2()
        : TextTokenizer.FromFolder(Path.GetDirectoryName(name) ?? checkpoint)
          ?? throw new FileNotFoundException($"{checkpoint}: the run used tokenizer '{name}', which is no longer there");
}
