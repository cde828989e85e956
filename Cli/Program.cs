using Spectre.Console.Cli;

namespace ModelGen.Cli;

/// <summary>Entry point of the <c>modelgen</c> command.</summary>
public static class Program
{
    /// <summary>Runs one verb; exit code 0 success, 1 check failed, 2 bad input.</summary>
    public static int Main(string[] args)
    {
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("modelgen");
        });
        return app.Run(args);
    }
}
