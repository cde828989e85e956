using ModelGen.Checkpoints;
using Spectre.Console;
using Spectre.Console.Cli;

namespace ModelGen.Cli;

/// <summary>Entry point of the <c>modelgen</c> command.</summary>
public static class Program
{
    /// <summary>Exit code for bad input (a file, field or value that cannot be used).</summary>
    public const int BadInput = 2;

    /// <summary>Runs one verb. Exit codes: 0 success, 1 a check failed, 2 bad input.</summary>
    public static int Main(string[] args)
    {
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("modelgen");
            config.AddCommand<ParityCommand>("parity")
                .WithDescription("Run a checkpoint on its reference inputs and compare logits with transformers'.")
                .WithExample("parity", "tests/fixtures/hf/llama")
                .WithExample("parity", "tests/fixtures/hf/llama_anchor_packed", "--mask", "anchor", "--documents", "1,20,41")
                .WithExample("parity", "tests/fixtures/hf/qwen2", "--backend", "ilgpu", "--device", "cpu");
            config.AddCommand<InspectCommand>("inspect")
                .WithDescription("Print the bound configuration and parameter count of a checkpoint folder.")
                .WithExample("inspect", "tests/fixtures/hf/qwen2");
            config.AddCommand<TrainCommand>("train")
                .WithDescription("Train with AnchorAttention (or a baseline mask) on packed windows; no arguments trains TinyLlama on the embedded corpus.")
                .WithExample("train")
                .WithExample("train", "--steps", "40", "--seq", "512", "--mask", "full", "--out", "runs/full");
            config.AddCommand<GenerateCommand>("generate")
                .WithDescription("Sample text from a trained checkpoint.")
                .WithExample("generate", "runs/train", "--prompt", "The \"if\" statement");
            config.AddCommand<AnalyzeRopeCommand>("analyze-rope")
                .WithDescription("Measure how bf16 breaks RoPE's relative positions (the paper's D, per-token view and D_logit) with CSV and plots.")
                .WithExample("analyze-rope", "tests/fixtures/hf/llama", "--random-tokens", "--out", "runs/rope-llama");
            config.AddCommand<BenchCommand>("bench")
                .WithDescription("Time RoPE, RMSNorm, attention per mask, GEMM and the tile map on every backend present (table, JSON, PNG); --peer runs PyTorch on the same shapes.")
                .WithExample("bench", "--backends", "torch-cpu,ilgpu-cpu", "--repeats", "5")
                .WithExample("bench", "--peer", "python3", "--out", "runs/bench-h200");
            config.AddCommand<BenchAttentionCommand>("bench-attention")
                .WithDescription("Time flash attention forward/backward per length, mask and document mix on the GPU (TFLOP/s over allowed pairs); --peer runs SDPA and FlexAttention on the same inputs, --check-seqs checks outputs and gradients against PyTorch.")
                .WithExample("bench-attention", "--peer", "python3", "--check-seqs", "8192")
                .WithExample("bench-attention", "--seqs", "16384", "--masks", "causal", "--heads", "32", "--kv-heads", "8");
            config.AddCommand<BenchWgmmaCommand>("bench-wgmma")
                .WithDescription("Check and time Hopper's warpgroup MMA (wgmma, SM_90) from ILGPU: both operand forms against fp64, the tensor cores with resident operands, and GEMMs against cuBLAS in the same process.")
                .WithExample("bench-wgmma", "--size", "8192");
            config.AddCommand<PtxCommand>("ptx")
                .WithDescription("Compile every GPU kernel to PTX offline (no GPU needed) and write one .ptx file per kernel, for ptxas -v.")
                .WithExample("ptx", "--out", "runs/ptx");
            config.SetExceptionHandler((exception, _) => ReportError(exception));
        });
        return app.Run(args);
    }

    /// <summary>Prints an error the user can act on and returns its exit code.</summary>
    internal static int ReportError(Exception exception)
    {
        var e = exception is CommandRuntimeException { InnerException: { } inner } ? inner : exception;
        string message = e switch
        {
            ModelConfigException or CheckpointException or InvalidDataException or FileNotFoundException
                or DirectoryNotFoundException or ArgumentException or CommandAppException
                or Backends.Ilgpu.GpuUnavailableException => e.Message,
            _ => $"{e.GetType().Name}: {e.Message}",
        };
        Console.Error.WriteLine($"error: {message}");
        if (Environment.GetEnvironmentVariable("MODELGEN_DEBUG") == "1") Console.Error.WriteLine(e);
        return e is ModelConfigException or CheckpointException or InvalidDataException or FileNotFoundException
            or DirectoryNotFoundException or ArgumentException or CommandAppException or IOException
            ? BadInput : 3;
    }
}
