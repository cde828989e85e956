using System.Text.Json;
using ModelGen.Backends.Torch;
using ModelGen.Checkpoints;
using TorchSharp.Modules;

namespace ModelGen.Training;

/// <summary>Everything besides weights and optimizer moments that a resumed run needs.</summary>
public sealed record TrainerState(int Step, DataPosition Data, TrainingOptions Options, string Tokenizer, long TokensSeen);

/// <summary>
/// The checkpoint of a run: <c>OUT/checkpoint/</c> with <c>model.safetensors</c> and <c>config.json</c> (HF names, loadable
/// by transformers), <c>optimizer.bin</c> (TorchSharp's AdamW state) and <c>trainer_state.json</c>. A save writes a new
/// folder beside the old one and swaps them by renames, so a crash at any moment leaves a complete checkpoint:
/// either the previous one or the new one.
/// </summary>
public static class TrainingCheckpoint
{
    /// <summary>Folder name inside the run's output folder.</summary>
    public const string FolderName = "checkpoint";
    /// <summary>The trainer state's file name inside a checkpoint folder.</summary>
    public const string StateFileName = "trainer_state.json";
    private const string OptimizerFile = "optimizer.bin";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>
    /// Saves model, optimizer and state. Refuses (throws) when a parameter is not finite, so a diverged run can never
    /// replace a good checkpoint. <paramref name="beforeSwap"/> is a test hook run after the new folder is complete.
    /// </summary>
    public static void Save(string outDirectory, CausalLMModule model, OptimizerHelper optimizer, TrainerState state, Action? beforeSwap = null)
    {
        foreach (var (name, p) in model.named_parameters())
            if (!p.isfinite().all().item<bool>())
                throw new InvalidOperationException($"parameter '{name}' holds NaN or infinity at step {state.Step}; the checkpoint was not saved");

        Directory.CreateDirectory(outDirectory);
        string final = Path.Combine(outDirectory, FolderName);
        string fresh = Path.Combine(outDirectory, $".{FolderName}.new-{Guid.NewGuid():N}");
        Directory.CreateDirectory(fresh);
        try
        {
            SafeTensorsWriter.Write(Path.Combine(fresh, CheckpointReader.SingleFile), model.named_parameters().Select(p => (p.name, (TorchSharp.torch.Tensor)p.parameter)),
                new Dictionary<string, string> { ["format"] = "pt", ["step"] = state.Step.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            HfConfig.Write(model.Config, Path.Combine(fresh, "config.json"));
            AtomicFile.Write(Path.Combine(fresh, OptimizerFile), s =>
            {
                using var writer = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
                optimizer.save_state_dict(writer);
            });
            AtomicFile.WriteText(Path.Combine(fresh, StateFileName), JsonSerializer.Serialize(state, Json));
            beforeSwap?.Invoke();
            Swap(final, fresh, outDirectory);
        }
        catch
        {
            TryDelete(fresh);
            throw;
        }
    }

    private static void Swap(string final, string fresh, string outDirectory)
    {
        string? old = null;
        if (Directory.Exists(final))
        {
            old = Path.Combine(outDirectory, $".{FolderName}.old-{Guid.NewGuid():N}");
            Directory.Move(final, old);
        }
        Directory.Move(fresh, final);
        if (old is not null) TryDelete(old);
    }

    /// <summary>
    /// The checkpoint folder of a run, repairing an interrupted swap (the previous checkpoint moved aside but the new one
    /// not yet in place). Null when the run has none.
    /// </summary>
    public static string? Locate(string outDirectory)
    {
        string final = Path.Combine(outDirectory, FolderName);
        if (Directory.Exists(final)) return final;
        if (!Directory.Exists(outDirectory)) return null;
        var aside = Directory.GetDirectories(outDirectory, $".{FolderName}.old-*").Where(d => File.Exists(Path.Combine(d, StateFileName))).ToList();
        if (aside.Count == 0) return null;
        Directory.Move(aside.OrderByDescending(Directory.GetLastWriteTimeUtc).First(), final);
        return final;
    }

    /// <summary>Reads the trainer state of a checkpoint folder.</summary>
    public static TrainerState ReadState(string checkpoint)
    {
        string path = Path.Combine(checkpoint, StateFileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not a ModelGen training checkpoint (no {StateFileName})", path);
        return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path))
            ?? throw new InvalidDataException($"{path}: empty trainer state");
    }

    /// <summary>Loads weights and optimizer state into an already built model and optimizer.</summary>
    public static void Restore(string checkpoint, CausalLMModule model, OptimizerHelper optimizer)
    {
        using (var reader = CheckpointReader.Open(checkpoint)) model.LoadFrom(reader);
        using var stream = File.OpenRead(Path.Combine(checkpoint, OptimizerFile));
        using var binary = new BinaryReader(stream);
        optimizer.load_state_dict(binary);
    }

    private static void TryDelete(string directory)
    {
        try { if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true); }
        catch (IOException) { }
    }
}
