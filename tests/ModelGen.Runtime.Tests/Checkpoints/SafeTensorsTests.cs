using System.Text;
using ModelGen.Checkpoints;
using static TorchSharp.torch;

namespace ModelGen.Tests.Checkpoints;

public class SafeTensorsTests
{
    /// <summary>A safetensors file from a raw header and data (for files the writer would never produce).</summary>
    private static void WriteRawFile(string path, string header, byte[] data, long? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes(declaredLength ?? h.Length));
        f.Write(h);
        f.Write(data);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.Float64)]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Int64)]
    [InlineData(ScalarType.Int32)]
    [InlineData(ScalarType.Int16)]
    [InlineData(ScalarType.Int8)]
    [InlineData(ScalarType.Byte)]
    [InlineData(ScalarType.Bool)]
    public void Every_dtype_round_trips_through_writer_and_reader(ScalarType dtype)
    {
        using var folder = new ScratchFolder();
        string path = folder.File("t.safetensors");
        var original = (arange(24).reshape(2, 3, 4) - 7).to(dtype);
        SafeTensorsWriter.Write(path, [("b.weight", original), ("a", ones(0).to(dtype))], new Dictionary<string, string> { ["format"] = "pt" });
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(DTypes.FromScalarType(dtype), file.Info("b.weight").DType);
        using var back = file.ToTensor("b.weight");
        Assert.Equal(dtype, back.dtype);
        Assert.Equal(new long[] { 2, 3, 4 }, back.shape);
        Assert.True(back.equal(original).all().item<bool>());
        Assert.Equal(0, file.ToTensor("a").numel());
    }

    [Fact]
    public void The_header_is_padded_to_8_bytes_and_tensors_are_sorted_as_HF_writes_them()
    {
        using var folder = new ScratchFolder();
        string path = folder.File("t.safetensors");
        SafeTensorsWriter.Write(path, [("z", ones(3)), ("a", zeros(2))]);
        var bytes = File.ReadAllBytes(path);
        long n = BitConverter.ToInt64(bytes, 0);
        Assert.Equal(0, n % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.True(header.IndexOf("\"a\"", StringComparison.Ordinal) < header.IndexOf("\"z\"", StringComparison.Ordinal));
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal([0f, 0f], file.ReadFloat32("a"));
    }

    [Fact]
    public void Bf16_fixture_weights_read_as_their_exact_fp32_values()
    {
        using var file = SafeTensorsFile.Open(Path.Combine(Fixtures.Path_("hf-more/llama_bf16_weights"), "model.safetensors"));
        var info = file.Info("model.norm.weight");
        Assert.Equal(DType.BF16, info.DType);
        var raw = file.Bytes("model.norm.weight");
        var values = file.ReadFloat32("model.norm.weight");
        for (int i = 0; i < values.Length; i++)
            Assert.Equal(BitConverter.Int32BitsToSingle(BitConverter.ToUInt16(raw.Slice(2 * i, 2)) << 16), values[i]);
    }

    public static IEnumerable<object[]> CorruptFiles() =>
    [
        ["short", "too short"],
        ["header-past-end", "truncated"],
        ["not-json", "not valid JSON"],
        ["unknown-dtype", "unsupported dtype 'F7'"],
        ["offsets-past-end", "extend past the end of the data"],
        ["offsets-disagree", "needs 16"],
        ["overlap", "overlaps tensor"],
        ["negative-shape", "shape entry 0"],
    ];

    [Theory]
    [MemberData(nameof(CorruptFiles))]
    public void Corrupt_files_are_rejected_naming_file_and_problem(string kind, string message)
    {
        using var folder = new ScratchFolder();
        string path = folder.File($"{kind}.safetensors");
        byte[] data = new byte[16];
        switch (kind)
        {
            case "short": File.WriteAllBytes(path, [1, 2, 3]); break;
            case "header-past-end": WriteRawFile(path, "{}", [], declaredLength: 4096); break;
            case "not-json": WriteRawFile(path, "{\"a\": [1, 2", data); break;
            case "unknown-dtype": WriteRawFile(path, "{\"a\":{\"dtype\":\"F7\",\"shape\":[4],\"data_offsets\":[0,16]}}", data); break;
            case "offsets-past-end": WriteRawFile(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", data); break;
            case "offsets-disagree": WriteRawFile(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8]}}", data); break;
            case "overlap": WriteRawFile(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", data); break;
            case "negative-shape": WriteRawFile(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", data); break;
        }
        var e = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void A_failing_write_leaves_the_previous_file_intact()
    {
        using var folder = new ScratchFolder();
        string path = folder.File("m.safetensors");
        SafeTensorsWriter.Write(path, [("w", ones(4))]);
        byte[] before = File.ReadAllBytes(path);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.WriteRaw(path,
            [("w", DType.F32, [4], () => new byte[16]), ("x", DType.F32, [4], () => new byte[3])]));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(folder.Path));
    }

    [Fact]
    public void Sharded_checkpoints_read_through_their_index()
    {
        using var reader = CheckpointReader.Open(Fixtures.Path_("hf-more/llama_sharded"));
        Assert.EndsWith(CheckpointReader.IndexFile, reader.Source);
        Assert.Contains("lm_head.weight", reader.Names);
        Assert.Equal(new long[] { 512, 128 }, reader.Info("lm_head.weight").Shape);
    }

    [Fact]
    public void A_missing_shard_is_an_error_naming_the_index_and_the_shard()
    {
        using var folder = Fixtures.Copy("hf-more/llama_sharded");
        File.Delete(folder.File("model-00002-of-00003.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(folder.Path));
        Assert.Contains(CheckpointReader.IndexFile, e.Message);
        Assert.Contains("model-00002-of-00003.safetensors", e.Message);
    }
}
