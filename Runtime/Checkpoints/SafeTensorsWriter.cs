using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace ModelGen.Checkpoints;

/// <summary>
/// Writes safetensors files the way HF does (JSON header padded with spaces to 8 bytes, tensors sorted by name,
/// little-endian row-major data), atomically: the bytes go to a temporary file in the same folder, which is
/// flushed to disk and then renamed over the target, so a crash leaves either the old file or the new one.
/// </summary>
public static class SafeTensorsWriter
{
    /// <summary>Writes TorchSharp tensors (any device, any layout; copied to contiguous CPU memory).</summary>
    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        WriteRaw(path, tensors.Select(t => (t.Name, DTypes.FromScalarType(t.Tensor.dtype), t.Tensor.shape, (Func<byte[]>)(() => Bytes(t.Tensor)))), metadata);

    /// <summary>Writes raw tensors: name, dtype, shape and a producer of the little-endian bytes.</summary>
    public static void WriteRaw(string path, IEnumerable<(string Name, DType DType, long[] Shape, Func<byte[]> Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in list)
            if (!names.Add(t.Name)) throw new ArgumentException($"{path}: tensor '{t.Name}' is given twice");
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));

        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var t in list)
        {
            long bytes = t.Shape.Aggregate(1L, (a, b) => a * b) * t.DType.Size();
            header[t.Name] = new Dictionary<string, object> { ["dtype"] = t.DType.Name(), ["shape"] = t.Shape, ["data_offsets"] = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padded = (json.Length + 7) / 8 * 8;

        AtomicFile.Write(path, stream =>
        {
            stream.Write(BitConverter.GetBytes((long)padded));
            stream.Write(json);
            for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
            foreach (var t in list)
            {
                byte[] data = t.Data();
                long want = t.Shape.Aggregate(1L, (a, b) => a * b) * t.DType.Size();
                if (data.LongLength != want) throw new ArgumentException($"{path}: tensor '{t.Name}' has {data.LongLength} bytes, its shape and dtype need {want}");
                stream.Write(data);
            }
        });
    }

    private static byte[] Bytes(Tensor t)
    {
        using var cpu = t.detach().cpu().contiguous();
        return cpu.bytes.ToArray();
    }
}

/// <summary>Write-then-rename file replacement.</summary>
public static class AtomicFile
{
    /// <summary>
    /// Runs <paramref name="write"/> on a temporary file beside <paramref name="path"/>, flushes it to disk and
    /// renames it over <paramref name="path"/>. If <paramref name="write"/> throws, the temporary file is removed and
    /// <paramref name="path"/> is untouched.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Atomically replaces a text file.</summary>
    public static void WriteText(string path, string text) =>
        Write(path, s => s.Write(Encoding.UTF8.GetBytes(text)));
}
