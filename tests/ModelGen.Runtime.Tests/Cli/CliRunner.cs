using ModelGen.Cli;

namespace ModelGen.Tests.Cli;

/// <summary>Runs <c>modelgen</c> in-process with its console captured.</summary>
public static class CliRunner
{
    /// <summary>Exit code, standard output and standard error of one command line.</summary>
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try { return (Program.Main(args), stdout.ToString(), stderr.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }
}
