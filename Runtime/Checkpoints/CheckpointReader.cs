using System.Text.Json;
using static TorchSharp.torch;

namespace ModelGen.Checkpoints;

/// <summary>
/// The tensors of an HF checkpoint folder: <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c> (<c>weight_map</c>: tensor name → shard file).
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    /// <summary>Single-file checkpoint name.</summary>
    public const string SingleFile = "model.safetensors";
    /// <summary>Sharded checkpoint index name.</summary>
    public const string IndexFile = "model.safetensors.index.json";

    private readonly Dictionary<string, SafeTensorsFile> _byTensor;
    private readonly List<SafeTensorsFile> _files;

    private CheckpointReader(string source, Dictionary<string, SafeTensorsFile> byTensor, List<SafeTensorsFile> files)
    {
        Source = source;
        _byTensor = byTensor;
        _files = files;
    }

    /// <summary>The file that describes the checkpoint (the single file or the index).</summary>
    public string Source { get; }

    /// <summary>All tensor names.</summary>
    public IReadOnlyCollection<string> Names => _byTensor.Keys;

    /// <summary>Opens a checkpoint folder.</summary>
    public static CheckpointReader Open(string directory)
    {
        string single = Path.Combine(directory, SingleFile);
        string index = Path.Combine(directory, IndexFile);
        if (File.Exists(single))
        {
            var file = SafeTensorsFile.Open(single);
            return new CheckpointReader(single, file.Tensors.Keys.ToDictionary(n => n, _ => file), [file]);
        }
        if (!File.Exists(index))
            throw new FileNotFoundException($"{directory}: neither {SingleFile} nor {IndexFile} is there", single);
        return OpenSharded(directory, index);
    }

    private static CheckpointReader OpenSharded(string directory, string index)
    {
        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointException(index, "weight_map", "is missing or not an object");
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String) throw new CheckpointException(index, p.Name, "maps to something other than a file name");
                string shard = p.Value.GetString()!;
                if (shard.Contains('/') || shard.Contains('\\') || shard == "..")
                    throw new CheckpointException(index, p.Name, $"maps to '{shard}', which is not a file in the checkpoint folder");
                weightMap[p.Name] = shard;
            }
        }
        catch (JsonException e)
        {
            throw new CheckpointException(index, null, $"is not valid JSON ({e.Message})");
        }

        var files = new List<SafeTensorsFile>();
        var opened = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        var byTensor = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var (tensor, shard) in weightMap)
            {
                if (!opened.TryGetValue(shard, out var file))
                {
                    string shardPath = Path.Combine(directory, shard);
                    if (!File.Exists(shardPath)) throw new CheckpointException(index, tensor, $"is in shard '{shard}', which does not exist");
                    file = SafeTensorsFile.Open(shardPath);
                    opened[shard] = file;
                    files.Add(file);
                }
                if (!file.Tensors.ContainsKey(tensor)) throw new CheckpointException(file.Path, tensor, $"is listed in {IndexFile} but not in the shard");
                byTensor[tensor] = file;
            }
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
        return new CheckpointReader(index, byTensor, files);
    }

    private SafeTensorsFile FileOf(string name) =>
        _byTensor.TryGetValue(name, out var f) ? f : throw new CheckpointException(Source, name, "is not in the checkpoint");

    /// <summary>A tensor's header entry.</summary>
    public TensorInfo Info(string name) => FileOf(name).Info(name);

    /// <summary>A tensor, converted to <paramref name="dtype"/> when given.</summary>
    public Tensor ToTensor(string name, ScalarType? dtype = null) => FileOf(name).ToTensor(name, dtype);

    /// <summary>A tensor's values as fp32.</summary>
    public float[] ReadFloat32(string name) => FileOf(name).ReadFloat32(name);

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
