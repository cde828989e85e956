using static TorchSharp.torch;

namespace ModelGen.Checkpoints;

/// <summary>Element types of safetensors files.</summary>
public enum DType
{
    /// <summary>64-bit float.</summary>
    F64,
    /// <summary>32-bit float.</summary>
    F32,
    /// <summary>IEEE half.</summary>
    F16,
    /// <summary>bfloat16.</summary>
    BF16,
    /// <summary>64-bit integer.</summary>
    I64,
    /// <summary>32-bit integer.</summary>
    I32,
    /// <summary>16-bit integer.</summary>
    I16,
    /// <summary>8-bit integer.</summary>
    I8,
    /// <summary>8-bit unsigned integer.</summary>
    U8,
    /// <summary>boolean, one byte.</summary>
    Bool,
}

/// <summary>Names, sizes and TorchSharp equivalents of <see cref="DType"/>.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int Size(this DType d) => d switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 or DType.I16 => 2,
        _ => 1,
    };

    /// <summary>The safetensors spelling.</summary>
    public static string Name(this DType d) => d == DType.Bool ? "BOOL" : d.ToString();

    /// <summary>Parses a safetensors dtype string.</summary>
    public static bool TryParse(string? name, out DType dtype)
    {
        dtype = DType.F32;
        if (name == "BOOL") { dtype = DType.Bool; return true; }
        return name is not null && name != nameof(DType.Bool) && Enum.TryParse(name, ignoreCase: false, out dtype) && Enum.IsDefined(dtype);
    }

    /// <summary>The TorchSharp scalar type.</summary>
    public static ScalarType ToScalarType(this DType d) => d switch
    {
        DType.F64 => ScalarType.Float64,
        DType.F32 => ScalarType.Float32,
        DType.F16 => ScalarType.Float16,
        DType.BF16 => ScalarType.BFloat16,
        DType.I64 => ScalarType.Int64,
        DType.I32 => ScalarType.Int32,
        DType.I16 => ScalarType.Int16,
        DType.I8 => ScalarType.Int8,
        DType.U8 => ScalarType.Byte,
        DType.Bool => ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(d)),
    };

    /// <summary>The <see cref="DType"/> of a TorchSharp scalar type.</summary>
    public static DType FromScalarType(ScalarType t) => t switch
    {
        ScalarType.Float64 => DType.F64,
        ScalarType.Float32 => DType.F32,
        ScalarType.Float16 => DType.F16,
        ScalarType.BFloat16 => DType.BF16,
        ScalarType.Int64 => DType.I64,
        ScalarType.Int32 => DType.I32,
        ScalarType.Int16 => DType.I16,
        ScalarType.Int8 => DType.I8,
        ScalarType.Byte => DType.U8,
        ScalarType.Bool => DType.Bool,
        _ => throw new ArgumentException($"safetensors has no dtype for {t}"),
    };
}
