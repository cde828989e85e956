using System.IO.Compression;
using System.Text.Json;

namespace ModelGen.Data;

/// <summary>One document of a corpus: where it came from and its text.</summary>
public sealed record TextDocument(string Source, string Text);

/// <summary>
/// Plain-text corpora: the embedded default (the Python Language Reference topics, see Data/Corpus/NOTICE.md), or a
/// folder of <c>.txt</c> files (one document each) and <c>.jsonl</c> files (one <c>{"text": …}</c> object per line).
/// </summary>
public static class TextCorpus
{
    /// <summary>Name of the embedded default, for messages.</summary>
    public const string DefaultName = "embedded: Python Language Reference topics (79 documents)";

    /// <summary>The embedded default corpus.</summary>
    public static IReadOnlyList<TextDocument> LoadDefault()
    {
        using var resource = typeof(TextCorpus).Assembly.GetManifestResourceStream("ModelGen.DefaultCorpus.jsonl.gz")
            ?? throw new InvalidOperationException("the default corpus is missing from ModelGen.Runtime's resources");
        using var gzip = new GZipStream(resource, CompressionMode.Decompress);
        using var reader = new StreamReader(gzip);
        return ReadJsonLines(reader, "default corpus").ToList();
    }

    /// <summary>
    /// Every <c>.txt</c> and <c>.jsonl</c> file under <paramref name="folder"/> (recursively, in ordinal path order so
    /// runs are reproducible). Throws naming the file (and line) for unreadable input, and when nothing is found.
    /// </summary>
    public static IReadOnlyList<TextDocument> Load(string folder)
    {
        if (File.Exists(folder)) return LoadFile(folder).ToList();
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: no such corpus folder or file");
        var files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (files.Count == 0) throw new InvalidDataException($"{folder}: the corpus folder holds no .txt or .jsonl files");
        var docs = files.SelectMany(LoadFile).ToList();
        if (docs.Count == 0) throw new InvalidDataException($"{folder}: the corpus is empty (its {files.Count} file(s) hold no text)");
        return docs;
    }

    private static IEnumerable<TextDocument> LoadFile(string path)
    {
        if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
        {
            using var reader = new StreamReader(path);
            foreach (var d in ReadJsonLines(reader, path)) yield return d;
            yield break;
        }
        string text = File.ReadAllText(path);
        if (!string.IsNullOrWhiteSpace(text)) yield return new TextDocument(path, text);
    }

    private static IEnumerable<TextDocument> ReadJsonLines(TextReader reader, string source)
    {
        int lineNumber = 0;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string? text;
            try
            {
                using var doc = JsonDocument.Parse(line);
                text = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String
                    ? t.GetString() : throw new InvalidDataException($"{source}:{lineNumber}: expected an object with a string field 'text'");
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{source}:{lineNumber}: not valid JSON ({e.Message})");
            }
            if (!string.IsNullOrWhiteSpace(text)) yield return new TextDocument($"{source}:{lineNumber}", text!);
        }
    }
}
