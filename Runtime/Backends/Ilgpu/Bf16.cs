using ILGPU;
using ModelGen.Backends.Ilgpu.Kernels;

namespace ModelGen.Backends.Ilgpu;

/// <summary>
/// How a kernel reads and writes one storage element: fp32 math on every element type, bf16 stored as its 16 high
/// bits. Kernels are generic over <c>(T, TElement)</c>, so each storage type gets its own compiled code.
/// </summary>
public interface IElement<T> where T : unmanaged
{
    /// <summary>The stored value as fp32.</summary>
    float Load(T value);
    /// <summary>fp32 rounded to the storage type (round to nearest even for bf16).</summary>
    T Store(float value);
    /// <summary>fp32 rounded through the storage type and back: what an op that writes this type then reads it sees.</summary>
    float Round(float value);
}

/// <summary>fp32 storage.</summary>
public readonly struct F32 : IElement<float>
{
    /// <inheritdoc/>
    public float Load(float value) => value;
    /// <inheritdoc/>
    public float Store(float value) => value;
    /// <inheritdoc/>
    public float Round(float value) => value;
}

/// <summary>bf16 storage: the high 16 bits of an fp32, rounded to nearest even (NaN stays NaN).</summary>
public readonly struct BF16 : IElement<ushort>
{
    /// <inheritdoc/>
    public float Load(ushort value) => Interop.IntAsFloat((uint)value << 16);
    /// <inheritdoc/>
    public ushort Store(float value) => Bf16.FromFloat(value);
    /// <inheritdoc/>
    public float Round(float value) => Load(Store(value));
}

/// <summary>bf16 conversions usable on the host and in kernels.</summary>
public static class Bf16
{
    /// <summary>fp32 → bf16 bits, round to nearest even; NaN maps to a quiet NaN.</summary>
    public static ushort FromFloat(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((bits >> 16) | 0x40);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    /// <summary>bf16 bits → fp32 (exact).</summary>
    public static float ToFloat(ushort value) => Interop.IntAsFloat((uint)value << 16);

    /// <summary>The low bf16 of a packed pair (the first in memory) → fp32 (exact).</summary>
    public static float Lo(uint pair) => Interop.IntAsFloat(pair << 16);

    /// <summary>The high bf16 of a packed pair (the second in memory) → fp32 (exact).</summary>
    public static float Hi(uint pair) => Interop.IntAsFloat(pair & 0xFFFF0000u);

    /// <summary>Four bf16 packed in a 64-bit word (the first in the low bits, as one 8-byte load reads them) as floats X..W.</summary>
    public static F4 Unpack4(ulong four) => new()
    {
        X = ToFloat((ushort)four), Y = ToFloat((ushort)(four >> 16)), Z = ToFloat((ushort)(four >> 32)), W = ToFloat((ushort)(four >> 48)),
    };

    /// <summary>Converts an array on the host.</summary>
    public static ushort[] FromFloats(ReadOnlySpan<float> values)
    {
        var result = new ushort[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = FromFloat(values[i]);
        return result;
    }

    /// <summary>Converts an array on the host.</summary>
    public static float[] ToFloats(ReadOnlySpan<ushort> values)
    {
        var result = new float[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = ToFloat(values[i]);
        return result;
    }
}
