using ModelGen.Cli;

namespace ModelGen.Tests.Cli;

/// <summary>The <c>modelgen</c> verbs run in-process: output, last line and exit codes.</summary>
[Collection("Console")]
public class CliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static string LastLine(string text) => text.TrimEnd().Split('\n')[^1].Trim();

    [Fact]
    public void Parity_passes_and_prints_max_abs_err_last()
    {
        var (code, output, _) = Run("parity", Fixtures.Path_("hf/qwen2"));
        Assert.Equal(0, code);
        Assert.Matches(@"^max_abs_err=[0-9.eE+-]+$", LastLine(output));
        Assert.True(double.Parse(LastLine(output)["max_abs_err=".Length..], System.Globalization.CultureInfo.InvariantCulture) <= 1e-4);
    }

    [Fact]
    public void Parity_with_a_document_layout_passes()
    {
        var (code, output, _) = Run("parity", Fixtures.Path_("hf/llama_anchor_packed"), "--mask", "anchor", "--documents", "1,20,41");
        Assert.Equal(0, code);
        Assert.Contains("Anchor mask from layout", output);
    }

    [Fact]
    public void Parity_over_tolerance_exits_1()
    {
        var (code, output, _) = Run("parity", Fixtures.Path_("hf/llama"), "--tol", "0");
        Assert.Equal(1, code);
        Assert.StartsWith("max_abs_err=", LastLine(output));
    }

    [Fact]
    public void Inspect_prints_the_bound_config_and_parameter_count()
    {
        var (code, output, _) = Run("inspect", Fixtures.Path_("hf/qwen2"));
        Assert.Equal(0, code);
        Assert.Contains("qwen2", output);
        Assert.Contains("tie_word_embeddings", output);
        Assert.Equal("parameters=" + Models.Qwen2.FromHuggingFace(Path.Combine(Fixtures.Path_("hf/qwen2"), "config.json")).ParameterCount(), LastLine(output));
    }

    [Fact]
    public void A_missing_folder_exits_2_naming_it()
    {
        var (code, _, err) = Run("parity", "/nonexistent/checkpoint");
        Assert.Equal(2, code);
        Assert.Contains("/nonexistent/checkpoint", err);
    }

    [Fact]
    public void A_truncated_safetensors_exits_2_naming_the_file()
    {
        using var folder = Fixtures.Copy("hf/llama");
        string model = folder.File("model.safetensors");
        var bytes = File.ReadAllBytes(model);
        File.WriteAllBytes(model, bytes[..(bytes.Length / 2)]);
        var (code, _, err) = Run("parity", folder.Path);
        Assert.Equal(2, code);
        Assert.Contains("model.safetensors", err);
    }

    [Fact]
    public void A_header_that_lies_about_offsets_exits_2()
    {
        using var folder = Fixtures.Copy("hf/llama");
        string model = folder.File("model.safetensors");
        var bytes = File.ReadAllBytes(model);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        // Make the largest end offset claim all-nines (same number of digits, so the header keeps its length):
        // it then points past the end of the file.
        var ends = System.Text.RegularExpressions.Regex.Matches(header, @"""data_offsets"":\[(\d+),(\d+)\]");
        var last = ends.MaxBy(m => long.Parse(m.Groups[2].Value))!.Groups[2];
        string lie = header[..last.Index] + new string('9', last.Length) + header[(last.Index + last.Length)..];
        Assert.True(long.Parse(new string('9', last.Length)) > bytes.Length);
        System.Text.Encoding.UTF8.GetBytes(lie).CopyTo(bytes, 8);
        File.WriteAllBytes(model, bytes);
        var (code, _, err) = Run("parity", folder.Path);
        Assert.Equal(2, code);
        Assert.Contains("model.safetensors", err);
    }

    [Fact]
    public void Corrupt_bytes_in_the_header_exit_2()
    {
        using var folder = Fixtures.Copy("hf/llama");
        string model = folder.File("model.safetensors");
        var bytes = File.ReadAllBytes(model);
        for (int i = 8; i < 40; i++) bytes[i] = (byte)'#';
        File.WriteAllBytes(model, bytes);
        var (code, _, err) = Run("parity", folder.Path);
        Assert.Equal(2, code);
        Assert.Contains("model.safetensors", err);
    }

    [Theory]
    [InlineData("\"hidden_size\": 128,", "", "hidden_size")]
    [InlineData("\"num_attention_heads\": 4,", "\"num_attention_heads\": \"four\",", "num_attention_heads")]
    [InlineData("\"num_key_value_heads\": 2,", "\"num_key_value_heads\": 3,", "num_key_value_heads")]
    [InlineData("\"model_type\": \"llama\",", "\"model_type\": \"gpt5\",", "model_type")]
    [InlineData("\"rope_type\": \"default\"", "\"rope_type\": \"warp\"", "rope_type")]
    public void A_config_with_a_missing_or_wrong_field_exits_2_naming_file_and_field(string find, string replace, string field)
    {
        using var folder = Fixtures.Copy("hf/llama");
        string config = folder.File("config.json");
        string text = File.ReadAllText(config);
        Assert.Contains(find, text);
        File.WriteAllText(config, text.Replace(find, replace));
        var (code, _, err) = Run("parity", folder.Path);
        Assert.Equal(2, code);
        Assert.Contains("config.json", err);
        Assert.Contains(field, err);
    }

    [Fact]
    public void A_tensor_of_the_wrong_shape_exits_2_naming_the_tensor()
    {
        using var folder = Fixtures.Copy("hf/llama");
        string config = folder.File("config.json");
        // The checkpoint's tensors are for intermediate_size 256; a config saying 320 makes every MLP weight wrong.
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"intermediate_size\": 256", "\"intermediate_size\": 320"));
        var (code, _, err) = Run("parity", folder.Path);
        Assert.Equal(2, code);
        Assert.Contains("mlp", err);
        Assert.Contains("shape", err);
    }

    [Fact]
    public void Bad_options_exit_2()
    {
        Assert.Equal(2, Run("parity", Fixtures.Path_("hf/llama"), "--mask", "diagonal").Code);
        Assert.Equal(2, Run("parity", Fixtures.Path_("hf/llama"), "--backend", "tpu").Code);
        Assert.Equal(2, Run("parity", Fixtures.Path_("hf/llama_anchor_packed"), "--mask", "anchor", "--documents", "1,x").Code);
        Assert.Equal(2, Run("parity", Fixtures.Path_("hf/llama"), "--mask", "anchor").Code); // no document_ids in the file
    }

    [Theory]
    [InlineData("--masks causal,fancy", "fancy")]
    [InlineData("--masks causal:wx", "causal:wx")]
    [InlineData("--head-dim 96", "--head-dim 96")]
    [InlineData("--seqs 8192,abc", "'abc'")]
    [InlineData("--heads 32 --kv-heads 5", "--kv-heads 5")]
    [InlineData("--check-seqs 8192", "--check-seqs needs --peer")]
    [InlineData("--device tpu", "'tpu'")]
    public void Bench_attention_rejects_bad_options_naming_them(string options, string named)
    {
        var (code, _, err) = Run(["bench-attention", .. options.Split(' ')]);
        Assert.Equal(2, code);
        Assert.Contains(named, err);
    }

    [Fact]
    public void Ptx_writes_the_ptx_of_the_kernels_it_is_asked_for()
    {
        using var folder = new ScratchFolder();
        var (code, output, _) = Run("ptx", "--filter", "FlashKernels.RowLists", "--out", folder.Path);
        Assert.Equal(0, code);
        string file = Assert.Single(Directory.GetFiles(folder.Path));
        Assert.Contains(".entry", File.ReadAllText(file));
        Assert.Contains("FlashKernels.RowLists", output);
        Assert.Equal(2, Run("ptx", "--filter", "NoSuchKernel", "--out", folder.Path).Code);
    }
}
