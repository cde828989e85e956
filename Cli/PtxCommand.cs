using System.ComponentModel;
using ModelGen.Backends.Ilgpu;
using Spectre.Console.Cli;

namespace ModelGen.Cli;

/// <summary>
/// <c>modelgen ptx</c>: the PTX of every kernel, compiled offline, one file per kernel, so that <c>ptxas -v</c> can
/// report registers, stack frames and spills on a machine with the CUDA toolkit.
/// </summary>
public sealed class PtxCommand : Command<PtxCommand.Settings>
{
    /// <summary>Arguments of <c>ptx</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Output folder.</summary>
        [CommandOption("--out <DIR>")]
        [DefaultValue("runs/ptx")]
        public string Out { get; init; } = "runs/ptx";

        /// <summary>Kernel filter.</summary>
        [CommandOption("--filter <TEXT>")]
        [Description("Only kernels whose name contains this text (e.g. Flash).")]
        public string? Filter { get; init; }
    }

    /// <inheritdoc/>
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(settings.Out);
        var kernels = PtxCompiler.Kernels().Where(k => settings.Filter is null || k.Name.Contains(settings.Filter, StringComparison.OrdinalIgnoreCase)).ToList();
        if (kernels.Count == 0) throw new ArgumentException($"--filter '{settings.Filter}' matches no kernel");
        foreach (var (name, method) in kernels)
        {
            string file = Path.Combine(settings.Out, new string(name.Select(c => char.IsLetterOrDigit(c) || c == '.' ? c : '_').ToArray()) + ".ptx");
            File.WriteAllText(file, PtxCompiler.Compile(method));
            Console.WriteLine($"{name} → {file}");
        }
        return 0;
    }
}
