using ModelGen.Backends.Ilgpu;

namespace ModelGen.Tests.Ilgpu;

/// <summary>Bad launches and missing or too-small devices are clear errors, not crashes.</summary>
public class GpuErrorTests(CpuAcceleratorFixture cpu) : IClassFixture<CpuAcceleratorFixture>
{
    [Fact]
    public void A_buffer_of_the_wrong_dtype_names_the_op_the_argument_and_the_dtypes()
    {
        var ops = new GpuOps(cpu.Device, GpuDType.F32);
        using var x = GpuTensor.Allocate(cpu.Device, GpuDType.BF16, "x", 4, 8);
        using var w = GpuTensor.Allocate(cpu.Device, GpuDType.F32, "w", 8);
        using var y = GpuTensor.Allocate(cpu.Device, GpuDType.F32, "y", 4, 8);
        var e = Assert.Throws<ArgumentException>(() => ops.RmsNorm(x, w, y, 1e-5f));
        Assert.Contains("RmsNorm", e.Message);
        Assert.Contains("input", e.Message);
        Assert.Contains("BF16", e.Message);
        Assert.Contains("F32", e.Message);
    }

    [Fact]
    public void A_buffer_of_the_wrong_size_names_the_shapes()
    {
        var ops = new GpuOps(cpu.Device, GpuDType.F32);
        using var x = GpuTensor.Allocate(cpu.Device, GpuDType.F32, "x", 4, 8);
        using var w = GpuTensor.Allocate(cpu.Device, GpuDType.F32, "w", 16, 7);
        using var y = GpuTensor.Allocate(cpu.Device, GpuDType.F32, "y", 4, 16);
        var e = Assert.Throws<ArgumentException>(() => ops.Linear(x, w, null, y));
        Assert.Contains("Linear", e.Message);
        Assert.Contains("weight", e.Message);
        Assert.Contains("[16, 7]", e.Message);
    }

    [Fact]
    public void Cuda_without_a_gpu_is_a_clear_error()
    {
        try
        {
            using var device = GpuDevice.Open(GpuKind.Cuda);
            Assert.Equal(GpuKind.Cuda, device.Kind); // this machine has a GPU: opening it is the correct behaviour
        }
        catch (GpuUnavailableException e)
        {
            Assert.Contains("CUDA", e.Message);
            Assert.Contains("--device cpu", e.Message);
        }
    }

    [Fact]
    public void An_allocation_larger_than_the_device_reports_the_bytes()
    {
        var e = Assert.Throws<GpuUnavailableException>(() => cpu.Device.Allocate<float>(1L << 60, "weights of a huge model"));
        Assert.Contains("weights of a huge model", e.Message);
        Assert.Contains("GiB", e.Message);
    }
}
