using ModelGen.Data;
using ModelGen.Masks;

namespace ModelGen.Tests.Data;

public class DocumentPackerTests
{
    private const int Anchor = 1, Eos = 2;

    private static List<PackedWindow> Pack(int length, bool maskBoundary, params int[][] docs) =>
        new DocumentPacker(length, Anchor, Eos, maskBoundary).Pack(docs).ToList();

    [Fact]
    public void Every_window_starts_with_the_anchor_as_document_0()
    {
        var windows = Pack(8, false, [10, 11, 12], [20, 21], [30, 31, 32, 33, 34, 35, 36, 37]);
        Assert.All(windows, w => Assert.Equal(Anchor, w.Tokens[0]));
        Assert.All(windows, w => Assert.Equal(new DocumentSpan(0, 0, 1), w.Layout.Documents[0]));
    }

    [Fact]
    public void Documents_are_concatenated_with_EOS_and_numbered_from_1()
    {
        var w = Pack(8, false, [10, 11, 12], [20, 21], [30, 31, 32])[0];
        Assert.Equal([1, 10, 11, 12, 2, 20, 21, 2], w.Tokens);
        Assert.Equal([0, 1, 1, 1, 1, 2, 2, 2], w.Layout.DocumentIds());
    }

    [Fact]
    public void A_document_cut_at_the_window_end_continues_as_document_1_of_the_next_window()
    {
        var windows = Pack(6, false, [10, 11, 12, 13, 14, 15, 16], [20, 21, 22]);
        Assert.Equal([1, 10, 11, 12, 13, 14], windows[0].Tokens);
        Assert.Equal([1, 15, 16, 2, 20, 21], windows[1].Tokens);
        Assert.Equal(1, windows[1].Layout.DocumentOf(1).Id);
    }

    [Fact]
    public void Labels_are_the_next_tokens_and_the_last_position_takes_no_loss()
    {
        var w = Pack(6, false, [10, 11, 12, 13, 14, 15])[0];
        Assert.Equal([10, 11, 12, 13, 14, PackedWindow.IgnoreIndex], w.Labels);
    }

    [Fact]
    public void Boundary_loss_masking_drops_only_the_cross_document_prediction()
    {
        var w = Pack(8, true, [10, 11], [20, 21, 22, 23])[0];
        // tokens: anchor 10 11 EOS 20 21 22 23; EOS (position 3) would predict 20, the next document's first token.
        Assert.Equal([10, 11, 2, PackedWindow.IgnoreIndex, 21, 22, 23, PackedWindow.IgnoreIndex], w.Labels);
    }

    [Fact]
    public void Packing_is_deterministic_and_drops_the_partial_tail()
    {
        int[][] docs = [[5, 6, 7], [8, 9], [10, 11, 12, 13]];
        var a = Pack(4, false, docs);
        var b = Pack(4, false, docs);
        Assert.Equal(a.Select(w => w.Tokens), b.Select(w => w.Tokens));
        Assert.All(a, w => Assert.Equal(4, w.Length));
    }
}

public class TextCorpusTests
{
    [Fact]
    public void The_embedded_default_corpus_has_its_79_documents_of_real_text()
    {
        var docs = TextCorpus.LoadDefault();
        Assert.Equal(79, docs.Count);
        Assert.Contains(docs, d => d.Text.Contains("The \"if\" statement", StringComparison.Ordinal));
    }

    [Fact]
    public void A_folder_of_txt_and_jsonl_files_loads_in_path_order()
    {
        using var folder = new ScratchFolder();
        File.WriteAllText(folder.File("b.txt"), "second file");
        File.WriteAllText(folder.File("a.jsonl"), "{\"text\": \"one\"}\n\n{\"text\": \"two\"}\n");
        var docs = TextCorpus.Load(folder.Path);
        Assert.Equal(["one", "two", "second file"], docs.Select(d => d.Text));
    }

    [Fact]
    public void A_bad_jsonl_line_is_reported_with_file_and_line()
    {
        using var folder = new ScratchFolder();
        File.WriteAllText(folder.File("x.jsonl"), "{\"text\": \"fine\"}\n{\"txt\": 3}\n");
        var e = Assert.Throws<InvalidDataException>(() => TextCorpus.Load(folder.Path));
        Assert.Contains("x.jsonl:2", e.Message);
    }

    [Fact]
    public void An_empty_corpus_is_an_error_naming_the_folder()
    {
        using var folder = new ScratchFolder();
        Assert.Contains(folder.Path, Assert.Throws<InvalidDataException>(() => TextCorpus.Load(folder.Path)).Message);
        File.WriteAllText(folder.File("blank.txt"), "   \n");
        Assert.Contains("empty", Assert.Throws<InvalidDataException>(() => TextCorpus.Load(folder.Path)).Message);
    }

    [Fact]
    public void GPT2_tokenizer_round_trips_and_rejects_a_smaller_vocabulary()
    {
        var t = TextTokenizer.Gpt2();
        var ids = t.Encode("Hello world, this is ModelGen.");
        Assert.Equal("Hello world, this is ModelGen.", t.Decode(ids));
        var small = Models.MicroLlama.Declared;
        var e = Assert.Throws<ModelConfigException>(() => t.RequireFits(small, "preset MicroLlama"));
        Assert.Contains("vocab_size", e.Message);
        t.RequireFits(Models.TinyLlama.Declared, "preset TinyLlama");
    }
}
