using ILGPU;
using ILGPU.Runtime;
using ModelGen.Rope;

namespace ModelGen.Backends.Ilgpu;

/// <summary>
/// cos and sin of the rotary angles on the device, fp32 [positions, rotary dim / 2], computed as HF does: the angle is
/// the fp32 product inv_freq[i] · position, its cos/sin taken in fp32 and multiplied by the attention scaling. Built
/// on the host once per model (and again only when a dynamic/longrope model sees a new sequence length), uploaded once.
/// </summary>
public sealed class GpuRopeTable : IDisposable
{
    private readonly GpuDevice _device;
    private readonly RopeFrequencies _frequencies;
    private MemoryBuffer1D<float, Stride1D.Dense>? _cos, _sin;
    private long _builtFor = -1;

    /// <summary>A table for <paramref name="frequencies"/>; call <see cref="Prepare"/> before use.</summary>
    public GpuRopeTable(GpuDevice device, RopeFrequencies frequencies)
    {
        (_device, _frequencies) = (device, frequencies);
        Half = frequencies.RotaryDim / 2;
    }

    /// <summary>Rotary dim / 2.</summary>
    public int Half { get; }
    /// <summary>Positions the table covers.</summary>
    public int Positions { get; private set; }
    /// <summary>cos [Positions, Half].</summary>
    public ArrayView<float> Cos => _cos?.View ?? throw new InvalidOperationException("GpuRopeTable.Prepare was not called");
    /// <summary>sin [Positions, Half].</summary>
    public ArrayView<float> Sin => _sin?.View ?? throw new InvalidOperationException("GpuRopeTable.Prepare was not called");

    /// <summary>
    /// Makes the table cover positions 0…<paramref name="maxPosition"/>. Frequencies that depend on the sequence length
    /// (dynamic NTK, longrope) are chosen from max(position) + 1, as HF does, and the table is rebuilt when that changes.
    /// </summary>
    public void Prepare(int maxPosition)
    {
        long seqLen = maxPosition + 1L;
        bool fits = _cos is not null && maxPosition < Positions;
        if (fits && (!_frequencies.DependsOnSequenceLength || seqLen == _builtFor)) return;
        int positions = Math.Max(maxPosition + 1, fits ? Positions : 0);
        var (cos, sin) = Build(_frequencies, seqLen, positions);
        _cos?.Dispose();
        _sin?.Dispose();
        _cos = _device.Allocate<float>(cos.Length, "RoPE cos table");
        _sin = _device.Allocate<float>(sin.Length, "RoPE sin table");
        _cos.View.CopyFromCPU(cos);
        _sin.View.CopyFromCPU(sin);
        (Positions, _builtFor) = (positions, seqLen);
    }

    /// <summary>The host tables [positions, rotary dim / 2] for sequence length <paramref name="seqLen"/>.</summary>
    public static (float[] Cos, float[] Sin) Build(RopeFrequencies frequencies, long seqLen, int positions)
    {
        float[] inv = frequencies.ForSequenceLength(seqLen);
        int half = inv.Length;
        float scaling = frequencies.AttentionScaling;
        var cos = new float[(long)positions * half];
        var sin = new float[cos.Length];
        for (int p = 0; p < positions; p++)
        {
            for (int i = 0; i < half; i++)
            {
                float angle = inv[i] * (float)p;
                cos[(long)p * half + i] = (float)Math.Cos(angle) * scaling;
                sin[(long)p * half + i] = (float)Math.Sin(angle) * scaling;
            }
        }
        return (cos, sin);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _cos?.Dispose();
        _sin?.Dispose();
    }
}
