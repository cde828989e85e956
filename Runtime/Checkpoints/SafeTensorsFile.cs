using System.Runtime.InteropServices;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using static TorchSharp.torch;

namespace ModelGen.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record TensorInfo(string Name, DType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements.</summary>
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A memory-mapped, validated safetensors file: an 8-byte little-endian header length, a JSON header
/// (name → dtype, shape, data_offsets; optional <c>__metadata__</c>), then the data. Every header claim is
/// checked before any tensor is read, and each error names the file and tensor.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the reference implementation's limit is 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long _dataStart;

    private SafeTensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr, long dataStart,
        Dictionary<string, TensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>Tensors by name.</summary>
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }

    /// <summary>The <c>__metadata__</c> strings.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        long length = new FileInfo(path).Length;
        if (length < 8) throw new CheckpointException(path, null, $"is {length} bytes, too short for a safetensors header");
        long headerLength;
        byte[] header;
        using (var stream = File.OpenRead(path))
        {
            Span<byte> prefix = stackalloc byte[8];
            stream.ReadExactly(prefix);
            headerLength = BitConverter.ToInt64(prefix);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes)
                throw new CheckpointException(path, null, $"declares a header of {headerLength} bytes (must be 1…{MaxHeaderBytes})");
            if (8 + headerLength > length)
                throw new CheckpointException(path, null, $"declares a header of {headerLength} bytes but the file has only {length - 8} after the length prefix (truncated?)");
            header = new byte[headerLength];
            stream.ReadExactly(header);
        }
        long dataStart = 8 + headerLength;
        long dataLength = length - dataStart;
        var (tensors, metadata) = ParseHeader(path, header, dataLength);

        if (dataLength == 0)
            return new SafeTensorsFile(path, null, null, null, dataStart, tensors, metadata);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        byte* ptr = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
        return new SafeTensorsFile(path, map, view, ptr + view.PointerOffset, dataStart, tensors, metadata);
    }

    private static (Dictionary<string, TensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new CheckpointException(path, null, $"header is not valid JSON ({e.Message})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new CheckpointException(path, null, "header is not a JSON object");

        var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in doc.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                if (entry.Value.ValueKind != JsonValueKind.Object) throw new CheckpointException(path, "__metadata__", "is not an object of strings");
                foreach (var m in entry.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String) throw new CheckpointException(path, "__metadata__", $"value of '{m.Name}' is not a string");
                    metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            tensors.Add(entry.Name, ParseEntry(path, entry.Name, entry.Value, dataLength));
        }

        // No two tensors may share bytes.
        var ordered = tensors.Values.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ToList();
        for (int i = 1; i < ordered.Count; i++)
            if (ordered[i].Begin < ordered[i - 1].End)
                throw new CheckpointException(path, ordered[i].Name, $"data [{ordered[i].Begin}, {ordered[i].End}) overlaps tensor '{ordered[i - 1].Name}' [{ordered[i - 1].Begin}, {ordered[i - 1].End})");
        return (tensors, metadata);
    }

    private static TensorInfo ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new CheckpointException(path, name, "entry is not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new CheckpointException(path, name, "has no dtype string");
        if (!DTypes.TryParse(dt.GetString(), out var dtype))
            throw new CheckpointException(path, name, $"has unsupported dtype '{dt.GetString()}' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new CheckpointException(path, name, "has no shape array");
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out shape[i]) || shape[i] < 0)
                throw new CheckpointException(path, name, $"shape entry {i} is not a non-negative integer");
            i++;
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new CheckpointException(path, name, "has no [begin, end] data_offsets");
        if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new CheckpointException(path, name, "data_offsets are not two increasing non-negative integers");
        if (end > dataLength)
            throw new CheckpointException(path, name, $"data_offsets [{begin}, {end}] extend past the end of the data ({dataLength} bytes)");
        long elements = 1;
        foreach (long d in shape) elements = checked(elements * d);
        if (end - begin != elements * dtype.Size())
            throw new CheckpointException(path, name, $"data_offsets [{begin}, {end}] hold {end - begin} bytes but shape [{string.Join(", ", shape)}] of {dtype.Name()} needs {elements * dtype.Size()}");
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    /// <summary>The entry for <paramref name="name"/>, or an error naming the file.</summary>
    public TensorInfo Info(string name) =>
        Tensors.TryGetValue(name, out var info) ? info : throw new CheckpointException(Path, name, "is not in the file");

    /// <summary>The raw little-endian bytes of a tensor (valid while the file is open).</summary>
    public ReadOnlySpan<byte> Bytes(string name)
    {
        var info = Info(name);
        long n = info.End - info.Begin;
        if (n == 0) return [];
        ObjectDisposedException.ThrowIf(_view is null && _base is null && n > 0, this);
        return new ReadOnlySpan<byte>(_base + _dataStart + info.Begin, checked((int)n));
    }

    /// <summary>A TorchSharp tensor with a copy of the data, in its stored dtype or converted to <paramref name="dtype"/>.</summary>
    public Tensor ToTensor(string name, ScalarType? dtype = null)
    {
        var info = Info(name);
        var stored = info.DType.ToScalarType();
        var result = empty(info.Shape, stored);
        if (info.End > info.Begin)
        {
            // A fresh contiguous CPU tensor: its byte view is the destination of one copy.
            Bytes(name).CopyTo(result.bytes);
        }
        return dtype is { } t && t != stored ? result.to(t) : result;
    }

    /// <summary>The values of a tensor as fp32 (converted from any stored type, without TorchSharp).</summary>
    public float[] ReadFloat32(string name)
    {
        var info = Info(name);
        var bytes = Bytes(name);
        var result = new float[info.Elements];
        switch (info.DType)
        {
            case DType.F32: MemoryMarshal.Cast<byte, float>(bytes).CopyTo(result); break;
            case DType.BF16:
                var bf = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < result.Length; i++) result[i] = BitConverter.Int32BitsToSingle(bf[i] << 16);
                break;
            case DType.F16:
                var h = MemoryMarshal.Cast<byte, Half>(bytes);
                for (int i = 0; i < result.Length; i++) result[i] = (float)h[i];
                break;
            case DType.F64:
                var d = MemoryMarshal.Cast<byte, double>(bytes);
                for (int i = 0; i < result.Length; i++) result[i] = (float)d[i];
                break;
            default:
                var ints = ReadIntegers(info, bytes);
                for (int i = 0; i < result.Length; i++) result[i] = ints[i];
                break;
        }
        return result;
    }

    /// <summary>The values of an integer tensor as int64 (without TorchSharp).</summary>
    public long[] ReadInt64(string name)
    {
        var info = Info(name);
        if (info.DType is DType.F64 or DType.F32 or DType.F16 or DType.BF16)
            throw new CheckpointException(Path, name, $"is {info.DType.Name()}, not an integer tensor");
        return ReadIntegers(info, Bytes(name));
    }

    private static long[] ReadIntegers(TensorInfo info, ReadOnlySpan<byte> bytes)
    {
        var result = new long[info.Elements];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = info.DType switch
            {
                DType.I64 => MemoryMarshal.Cast<byte, long>(bytes)[i],
                DType.I32 => MemoryMarshal.Cast<byte, int>(bytes)[i],
                DType.I16 => MemoryMarshal.Cast<byte, short>(bytes)[i],
                DType.I8 => (sbyte)bytes[i],
                _ => bytes[i],
            };
        }
        return result;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
