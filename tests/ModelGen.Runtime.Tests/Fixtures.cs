namespace ModelGen.Tests;

/// <summary>Locates the HF reference fixtures committed under tests/fixtures.</summary>
public static class Fixtures
{
    private static readonly Lazy<string> RootPath = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ModelGen.sln")))
                return Path.Combine(dir.FullName, "tests", "fixtures");
        throw new DirectoryNotFoundException($"no ModelGen.sln above {AppContext.BaseDirectory}");
    });

    /// <summary>tests/fixtures.</summary>
    public static string Root => RootPath.Value;

    /// <summary>A fixture folder: <c>hf/llama</c>, <c>hf-more/llama_yarn</c>, …</summary>
    public static string Path_(string name) => Path.Combine(Root, name);

    /// <summary>Every fixture folder that has reference logits.</summary>
    public static IEnumerable<string> AllWithLogits() =>
        new[] { "hf", "hf-more", "modelgen-written" }
            .SelectMany(set => Directory.GetDirectories(Path.Combine(Root, set)).Select(d => $"{set}/{Path.GetFileName(d)}"))
            .Where(n => File.Exists(Path.Combine(Root, n, "expected.safetensors")))
            .Order();

    /// <summary>A scratch copy of a fixture folder that a test may damage; deleted on dispose.</summary>
    public static ScratchFolder Copy(string name)
    {
        var scratch = new ScratchFolder();
        foreach (var file in Directory.GetFiles(Path_(name)))
            File.Copy(file, Path.Combine(scratch.Path, Path.GetFileName(file)));
        return scratch;
    }
}

/// <summary>A temporary folder removed on dispose.</summary>
public sealed class ScratchFolder : IDisposable
{
    /// <summary>Its path.</summary>
    public string Path { get; } = Directory.CreateTempSubdirectory("modelgen-test-").FullName;

    /// <summary>A path inside it.</summary>
    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <inheritdoc/>
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
