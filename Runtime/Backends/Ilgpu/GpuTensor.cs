using ILGPU;
using ILGPU.Runtime;

namespace ModelGen.Backends.Ilgpu;

/// <summary>Storage type of a <see cref="GpuTensor"/>: fp32, or bf16 held as 16-bit values (math stays fp32).</summary>
public enum GpuDType
{
    /// <summary>32-bit float.</summary>
    F32,
    /// <summary>bfloat16, stored as <see cref="ushort"/>.</summary>
    BF16,
}

/// <summary>
/// A dense row-major device buffer with a shape and a storage type. Every op checks the tensors it is given
/// (<see cref="Require"/>) before launching, so a buffer of the wrong size or type is an <see cref="ArgumentException"/>
/// naming the op, the argument and both shapes — never an out-of-bounds kernel.
/// </summary>
public sealed class GpuTensor : IDisposable
{
    private readonly MemoryBuffer _buffer;

    private GpuTensor(string name, GpuDType dtype, long[] shape, MemoryBuffer buffer)
    {
        (Name, DType, Shape, _buffer) = (name, dtype, shape, buffer);
        Length = 1;
        foreach (var d in shape) Length *= d;
    }

    /// <summary>What the buffer holds, for error messages.</summary>
    public string Name { get; }
    /// <summary>Storage type.</summary>
    public GpuDType DType { get; }
    /// <summary>Dimensions, outermost first.</summary>
    public long[] Shape { get; }
    /// <summary>Number of elements.</summary>
    public long Length { get; }
    /// <summary>Bytes per element.</summary>
    public int ElementSize => SizeOf(DType);
    /// <summary>Device address of element 0 (for library calls such as cuBLAS).</summary>
    public IntPtr NativePtr => _buffer.NativePtr;

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int SizeOf(GpuDType dtype) => dtype == GpuDType.F32 ? 4 : 2;

    /// <summary>An uninitialized tensor.</summary>
    public static GpuTensor Allocate(GpuDevice device, GpuDType dtype, string name, params long[] shape)
    {
        long length = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"{name}: negative dimension in [{string.Join(", ", shape)}]", nameof(shape));
            length *= d;
        }
        MemoryBuffer buffer = dtype == GpuDType.F32 ? device.Allocate<float>(length, name) : device.Allocate<ushort>(length, name);
        return new GpuTensor(name, dtype, shape, buffer);
    }

    /// <summary>A tensor holding <paramref name="values"/> converted to <paramref name="dtype"/>.</summary>
    public static GpuTensor FromHost(GpuDevice device, GpuDType dtype, string name, ReadOnlySpan<float> values, params long[] shape)
    {
        var t = Allocate(device, dtype, name, shape);
        if (t.Length != values.Length)
        {
            t.Dispose();
            throw new ArgumentException($"{name}: {values.Length} values do not fill shape [{string.Join(", ", shape)}]", nameof(values));
        }
        t.CopyFrom(values);
        return t;
    }

    /// <summary>Copies host values in (converted to the storage type).</summary>
    public void CopyFrom(ReadOnlySpan<float> values)
    {
        if (values.Length != Length) throw new ArgumentException($"{Name}: {values.Length} values for {Length} elements", nameof(values));
        if (DType == GpuDType.F32) ((MemoryBuffer1D<float, Stride1D.Dense>)_buffer).View.CopyFromCPU(values.ToArray());
        else ((MemoryBuffer1D<ushort, Stride1D.Dense>)_buffer).View.CopyFromCPU(Bf16.FromFloats(values));
    }

    /// <summary>The values as fp32 on the host (synchronizes).</summary>
    public float[] ToHost() => DType == GpuDType.F32
        ? ((MemoryBuffer1D<float, Stride1D.Dense>)_buffer).GetAsArray1D()
        : Bf16.ToFloats(((MemoryBuffer1D<ushort, Stride1D.Dense>)_buffer).GetAsArray1D());

    /// <summary>The typed view; <typeparamref name="T"/> must match the storage type.</summary>
    public ArrayView<T> View<T>() where T : unmanaged
    {
        if (_buffer is MemoryBuffer1D<T, Stride1D.Dense> typed) return typed.View;
        throw new ArgumentException($"{Name} holds {DType}, not {typeof(T).Name}");
    }

    /// <summary>
    /// Checks that this tensor is <paramref name="dtype"/> with exactly <paramref name="shape"/>, or throws an
    /// <see cref="ArgumentException"/> naming <paramref name="op"/> and <paramref name="argument"/>.
    /// </summary>
    public GpuTensor Require(string op, string argument, GpuDType dtype, params long[] shape)
    {
        if (DType != dtype || !Shape.AsSpan().SequenceEqual(shape))
            throw new ArgumentException(
                $"{op}: {argument} must be {dtype} [{string.Join(", ", shape)}], got {Name} {DType} [{string.Join(", ", Shape)}]", argument);
        return this;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {DType} [{string.Join(", ", Shape)}]";

    /// <inheritdoc/>
    public void Dispose() => _buffer.Dispose();
}
