using ModelGen.Data;

namespace ModelGen.Tests.Data;

/// <summary>A checkpoint folder's own byte-level BPE <c>tokenizer.json</c>.</summary>
public class TokenizerFolderTests
{
    // A tiny byte-level BPE in HF's tokenizer.json layout ('Ġ' is the byte-level space).
    private const string TokenizerJson = """
    {
      "version": "1.0",
      "added_tokens": [ { "id": 13, "content": "<|endoftext|>", "special": true } ],
      "pre_tokenizer": { "type": "ByteLevel", "add_prefix_space": false },
      "model": {
        "type": "BPE",
        "vocab": { "h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7, "he": 8, "ll": 9, "hell": 10, "hello": 11, "Ġw": 12 },
        "merges": [ "h e", "l l", "he ll", "hell o", "Ġ w" ]
      }
    }
    """;

    [Fact]
    public void A_BPE_tokenizer_json_loads_encodes_with_its_merges_and_finds_its_EOS()
    {
        using var folder = new ScratchFolder();
        File.WriteAllText(folder.File("tokenizer.json"), TokenizerJson);
        var tokenizer = TextTokenizer.FromFolder(folder.Path)!;
        Assert.Equal(13, tokenizer.MaxTokenId);
        Assert.Equal(13, tokenizer.EosTokenId);
        var ids = tokenizer.Encode("hello world");
        Assert.Equal(11, ids[0]);               // "hello" is one merged token
        Assert.Equal("hello world", tokenizer.Decode(ids));
        var small = ModelGen.Models.MicroLlama.Declared with { Vocab = 13 };
        Assert.Throws<ModelConfigException>(() => tokenizer.RequireFits(small, "test"));
    }

    [Fact]
    public void A_folder_without_a_tokenizer_gives_null_and_a_non_BPE_file_an_error_naming_it()
    {
        using var folder = new ScratchFolder();
        Assert.Null(TextTokenizer.FromFolder(folder.Path));
        File.WriteAllText(folder.File("tokenizer.json"), """{ "model": { "type": "WordPiece" } }""");
        var e = Assert.Throws<InvalidDataException>(() => TextTokenizer.FromFolder(folder.Path));
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Contains("WordPiece", e.Message);
    }
}

/// <summary>Real tokenizers made by the Python sentencepiece and tokenizers packages (tests/fixtures/tokenizers).</summary>
public class RealTokenizerTests
{
    private static readonly System.Text.Json.JsonElement Expected =
        System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "tokenizers", "expected.json"))).RootElement;

    private static int[] Ids(string name) => Expected.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [Fact]
    public void A_SentencePiece_model_encodes_like_the_sentencepiece_library()
    {
        var t = TextTokenizer.FromFolder(Path.Combine(Fixtures.Root, "tokenizers", "spm"))!;
        string text = Expected.GetProperty("text").GetString()!;
        Assert.Equal(Ids("spm_ids"), t.Encode(text));
        Assert.Equal(text, t.Decode(t.Encode(text)));
        Assert.Equal((1, 2, 399), (t.BosTokenId, t.EosTokenId, t.MaxTokenId));
    }

    [Fact]
    public void An_HF_byte_level_tokenizer_json_encodes_like_the_tokenizers_library()
    {
        var t = TextTokenizer.FromFolder(Path.Combine(Fixtures.Root, "tokenizers", "bpe"))!;
        string text = Expected.GetProperty("text").GetString()!;
        Assert.Equal(Ids("bpe_ids"), t.Encode(text));
        Assert.Equal(text, t.Decode(t.Encode(text)));
        Assert.Equal(0, t.EosTokenId);
    }
}
