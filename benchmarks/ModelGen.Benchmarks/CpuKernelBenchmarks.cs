using BenchmarkDotNet.Attributes;
using ModelGen.Backends.Ilgpu;
using ModelGen.Rope;
using ILGPU;
using ILGPU.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelGen.Benchmarks;

/// <summary>
/// The CPU side of the kernel comparison under BenchmarkDotNet: RoPE and RMSNorm on TorchSharp (the baseline) and on
/// ILGPU's CPU accelerator (4-lane warps), same shapes, fp32. Run: <c>modelgen-bench kernels</c>.
/// </summary>
[MemoryDiagnoser]
public class CpuKernelBenchmarks
{
    private const int Heads = 4, Seq = 1024, HeadDim = 64, Rows = 256, Width = 1024;
    private Tensor _x = null!, _cos = null!, _sin = null!, _normInput = null!;
    private Backends.Torch.RmsNorm _norm = null!;
    private GpuDevice _device = null!;
    private GpuOps _ops = null!;
    private GpuTensor _gx = null!, _gIn = null!, _gW = null!, _gOut = null!;
    private MemoryBuffer1D<int, Stride1D.Dense> _positions = null!;
    private GpuRopeTable _table = null!;

    [GlobalSetup]
    public void Setup()
    {
        var frequencies = new RopeFrequencies(new RopeConfig { Theta = 500_000 }, HeadDim, Seq);
        _x = randn(1, Heads, Seq, HeadDim);
        (_cos, _sin) = new RopeTable(frequencies).CosSin(arange(Seq, dtype: ScalarType.Int64).unsqueeze(0));
        _normInput = randn(Rows, Width);
        _norm = new Backends.Torch.RmsNorm(Width, 1e-5);

        _device = GpuDevice.Open(GpuKind.Cpu, cpuWarpSize: 4);
        _ops = new GpuOps(_device, GpuDType.F32);
        _gx = GpuTensor.FromHost(_device, GpuDType.F32, "x", _x.data<float>().ToArray(), 1, Heads, Seq, HeadDim);
        _positions = _device.Allocate<int>(Seq, "positions");
        _positions.View.CopyFromCPU(Enumerable.Range(0, Seq).ToArray());
        _table = new GpuRopeTable(_device, frequencies);
        _table.Prepare(Seq - 1);
        _gIn = GpuTensor.FromHost(_device, GpuDType.F32, "in", _normInput.data<float>().ToArray(), Rows, Width);
        _gW = GpuTensor.FromHost(_device, GpuDType.F32, "w", Enumerable.Repeat(1f, Width).ToArray(), Width);
        _gOut = GpuTensor.Allocate(_device, GpuDType.F32, "out", Rows, Width);
    }

    [Benchmark(Baseline = true)]
    public void RopeTorch()
    {
        using var scope = NewDisposeScope();
        RotaryEmbedding.Apply(_x, _x, _cos, _sin, RopePrecision.Fp32);
    }

    [Benchmark]
    public void RopeIlgpuCpu()
    {
        _ops.Rope(_gx, HeadLayout.Bhsd(Heads, Seq, HeadDim), Seq, _positions.View, _table, false, Seq - 1);
        _device.Synchronize();
    }

    [Benchmark]
    public void RmsNormTorch()
    {
        using var scope = NewDisposeScope();
        _norm.forward(_normInput);
    }

    [Benchmark]
    public void RmsNormIlgpuCpu()
    {
        _ops.RmsNorm(_gIn, _gW, _gOut, 1e-5f);
        _device.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in new[] { _gx, _gIn, _gW, _gOut }) t.Dispose();
        _positions.Dispose();
        _table.Dispose();
        _ops.Dispose();
        _device.Dispose();
    }
}
