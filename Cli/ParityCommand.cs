using System.ComponentModel;
using System.Globalization;
using ModelGen.Parity;
using Spectre.Console;
using Spectre.Console.Cli;

namespace ModelGen.Cli;

/// <summary><c>modelgen parity DIR</c>: logits against an HF reference, last line <c>max_abs_err=…</c>.</summary>
public sealed class ParityCommand : Command<ParityCommand.Settings>
{
    /// <summary>Arguments of <c>parity</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Checkpoint folder with config.json, model.safetensors and expected.safetensors.</summary>
        [CommandArgument(0, "<DIR>")]
        [Description("Folder with config.json, model.safetensors (or a sharded index) and expected.safetensors.")]
        public string Directory { get; init; } = "";

        /// <summary>Backend to run on.</summary>
        [CommandOption("--backend <NAME>")]
        [Description("torch (TorchSharp on the CPU) or ilgpu (ILGPU kernels; see --device).")]
        [DefaultValue("torch")]
        public string Backend { get; init; } = "torch";

        /// <summary>ILGPU accelerator.</summary>
        [CommandOption("--device <NAME>")]
        [Description("With --backend ilgpu: cuda (first GPU) or cpu (ILGPU's CPU accelerator, slow). Default cuda.")]
        [DefaultValue("cuda")]
        public string Device { get; init; } = "cuda";

        /// <summary>ILGPU storage type.</summary>
        [CommandOption("--dtype <TYPE>")]
        [Description("With --backend ilgpu: f32 or bf16 storage (fp32 math either way). bf16 is checked against the bound of --tol, so pass one; see README.")]
        [DefaultValue("f32")]
        public string DType { get; init; } = "f32";

        /// <summary>Largest max-abs logit error that passes.</summary>
        [CommandOption("--tol <VALUE>")]
        [Description("Largest max abs logit error that passes (default 1e-4; with --dtype bf16 the derived bound (6·layers + 4)·2⁻⁸·max|logit|).")]
        public double? Tolerance { get; init; }

        /// <summary>Mask from a document layout instead of the file's 4D mask.</summary>
        [CommandOption("--mask <KIND>")]
        [Description("Build attention from a document layout: full | intradoc | intradoc-reset | anchor. Default: the file's attention_mask, else causal.")]
        public string? Mask { get; init; }

        /// <summary>Comma-separated document starts for <see cref="Mask"/>.</summary>
        [CommandOption("--documents <STARTS>")]
        [Description("Comma-separated start tokens of documents 1..n (tokens before the first form document 0, the anchor). Default: document_ids from expected.safetensors.")]
        public string? Documents { get; init; }

        /// <inheritdoc/>
        public override ValidationResult Validate()
        {
            if (Backend is not ("torch" or "ilgpu")) return ValidationResult.Error($"--backend '{Backend}' is not one of torch, ilgpu");
            if (!Backends.Ilgpu.GpuDevice.TryParse(Device, out _)) return ValidationResult.Error($"--device '{Device}' is not one of cuda, cpu");
            if (DType is not ("f32" or "bf16")) return ValidationResult.Error($"--dtype '{DType}' is not one of f32, bf16");
            if (Backend == "torch" && DType != "f32") return ValidationResult.Error("--dtype bf16 needs --backend ilgpu");
            if (Tolerance is { } tol && !(tol >= 0)) return ValidationResult.Error($"--tol must be a non-negative number, got {Tolerance}");
            if (Mask is not null && !MaskNames.TryParse(Mask, out _))
                return ValidationResult.Error($"--mask '{Mask}' is not one of {MaskNames.Choices}");
            if (Documents is not null && Mask is null) return ValidationResult.Error("--documents needs --mask");
            return ValidationResult.Success();
        }
    }

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        if (!System.IO.Directory.Exists(settings.Directory))
            throw new DirectoryNotFoundException($"{settings.Directory}: no such checkpoint folder");
        var options = new ParityOptions
        {
            Tolerance = settings.Tolerance,
            Mask = settings.Mask is null ? null : MaskNames.Parse(settings.Mask),
            DocumentStarts = settings.Documents is null ? null : ParseStarts(settings.Documents),
        };
        ParityResult result;
        string backend = settings.Backend;
        if (settings.Backend == "ilgpu")
        {
            Backends.Ilgpu.GpuDevice.TryParse(settings.Device, out var kind);
            using var device = Backends.Ilgpu.GpuDevice.Open(kind);
            var dtype = settings.DType == "bf16" ? Backends.Ilgpu.GpuDType.BF16 : Backends.Ilgpu.GpuDType.F32;
            result = ParityCheck.RunIlgpu(settings.Directory, Models.ModelCatalog.All, options, device, dtype);
            backend = $"ilgpu {settings.DType} on {device.Description}";
        }
        else result = ParityCheck.Run(settings.Directory, Models.ModelCatalog.All, options);
        var c = result.Config;
        Console.WriteLine($"model: {c.Family}, {c.Layers} layers, hidden {c.Hidden}, heads {c.Heads}/{c.KvHeads}×{c.HeadDim}, rope {RopeNames.ToHf(c.Rope.Scaling)}");
        Console.WriteLine($"backend: {backend}; attention: {result.AttentionSource}");
        Console.WriteLine($"logits: [{string.Join(", ", result.LogitsShape)}]; tolerance {result.Tolerance.ToString("G", CultureInfo.InvariantCulture)}: {(result.Passed ? "PASS" : "FAIL")}");
        Console.WriteLine($"max_abs_err={result.MaxAbsError.ToString("G6", CultureInfo.InvariantCulture)}");
        return result.Passed ? 0 : 1;
    }

    private static int[] ParseStarts(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var starts = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out starts[i]))
                throw new ArgumentException($"--documents: '{parts[i]}' is not a token index");
        return starts;
    }
}

/// <summary>The CLI spellings of <see cref="MaskKind"/>.</summary>
public static class MaskNames
{
    /// <summary>All spellings, for messages.</summary>
    public const string Choices = "full, intradoc, intradoc-reset, anchor";

    /// <summary>Parses a CLI mask name.</summary>
    public static bool TryParse(string name, out MaskKind kind)
    {
        (bool ok, kind) = name switch
        {
            "full" or "causal" => (true, MaskKind.Causal),
            "intradoc" => (true, MaskKind.IntraDocument),
            "intradoc-reset" => (true, MaskKind.IntraDocumentReset),
            "anchor" => (true, MaskKind.Anchor),
            _ => (false, MaskKind.Causal),
        };
        return ok;
    }

    /// <summary>Parses a CLI mask name or throws naming the value.</summary>
    public static MaskKind Parse(string name) =>
        TryParse(name, out var kind) ? kind : throw new ArgumentException($"mask '{name}' is not one of {Choices}");
}
