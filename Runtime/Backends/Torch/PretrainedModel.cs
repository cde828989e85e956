using System.Text.Json;
using ModelGen.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Backends.Torch;

/// <summary>Finds the declaration for an HF checkpoint folder and loads it into a <see cref="CausalLMModule"/>.</summary>
public static class PretrainedModel
{
    /// <summary>
    /// Reads <c>model_type</c> from <paramref name="directory"/>/config.json and returns the family declaration
    /// of <paramref name="catalog"/> for it. Throws <see cref="ModelConfigException"/> naming the file and field.
    /// </summary>
    public static ModelDeclaration Resolve(string directory, IEnumerable<ModelDeclaration> catalog)
    {
        string path = Path.Combine(directory, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no config.json in the checkpoint folder", path);
        string? modelType;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            modelType = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("model_type", out var mt) && mt.ValueKind == JsonValueKind.String
                ? mt.GetString() : null;
        }
        catch (JsonException e)
        {
            throw new ModelConfigException(path, "(file)", $"is not valid JSON: {e.Message}");
        }
        if (modelType is null) throw new ModelConfigException(path, "model_type", "is missing or not a string");
        var families = catalog.Where(d => d.IsFamily).ToList();
        return families.FirstOrDefault(d => d.Family == modelType)
            ?? throw new ModelConfigException(path, "model_type",
                $"'{modelType}' has no declared family (known: {string.Join(", ", families.Select(f => f.Family).Order())})");
    }

    /// <summary>The folder's config.json bound by its family's declaration (see <see cref="Resolve"/>).</summary>
    public static ModelConfig Config(string directory, IEnumerable<ModelDeclaration> catalog) =>
        Resolve(directory, catalog).FromHuggingFace(Path.Combine(directory, "config.json"));

    /// <summary>Binds the folder's config.json, builds the module tree and loads the weights.</summary>
    public static (ModelConfig Config, CausalLMModule Model) Load(string directory, IEnumerable<ModelDeclaration> catalog, ScalarType dtype = ScalarType.Float32)
    {
        var declaration = Resolve(directory, catalog);
        var config = declaration.FromHuggingFace(Path.Combine(directory, "config.json"));
        using var checkpoint = CheckpointReader.Open(directory);
        var model = declaration.CreateTorchModel(config);
        if (dtype != ScalarType.Float32) model.to(dtype);
        model.LoadFrom(checkpoint);
        model.eval();
        return (config, model);
    }
}
