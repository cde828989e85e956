using System.Collections.Immutable;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace ModelGen.Generators.Tests;

/// <summary>Runs <see cref="ModelGenerator"/> over in-memory sources, offline, against .NET 10 and ModelGen.Runtime.</summary>
internal static class GeneratorHarness
{
    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Latest);

    private static readonly MetadataReference[] References =
    [
        .. Basic.Reference.Assemblies.Net100.References.All,
        MetadataReference.CreateFromFile(typeof(ModelConfig).Assembly.Location),
    ];

    /// <summary>A compilation of the given files (path, text), named <paramref name="assemblyName"/>.</summary>
    public static CSharpCompilation Compilation(string assemblyName, params (string Path, string Text)[] files) =>
        CSharpCompilation.Create(
            assemblyName,
            files.Select(f => CSharpSyntaxTree.ParseText(f.Text, ParseOptions, f.Path)),
            References,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));

    /// <summary>A driver that tracks incremental steps.</summary>
    public static GeneratorDriver Driver() =>
        CSharpGeneratorDriver.Create(
            [new ModelGenerator().AsSourceGenerator()],
            parseOptions: ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    /// <summary>Runs the generator over one declaration file (Models.cs) in assembly Demo.Models.</summary>
    public static GeneratorResult Run(string source) => Run(Compilation("Demo.Models", ("Models.cs", source)));

    public static GeneratorResult Run(CSharpCompilation compilation)
    {
        GeneratorDriver driver = Driver().RunGeneratorsAndUpdateCompilation(compilation, out Compilation output, out var diagnostics);
        return new(driver, output, diagnostics);
    }

    /// <summary>The declaration file's usual header.</summary>
    public const string Usings = "using ModelGen;\n\nnamespace Demo.Models;\n\n";
}

/// <summary>What one generator run produced.</summary>
internal sealed record GeneratorResult(GeneratorDriver Driver, Compilation Output, ImmutableArray<Diagnostic> Diagnostics)
{
    public GeneratorRunResult RunResult => Driver.GetRunResult().Results.Single();

    /// <summary>Generated sources by hint name.</summary>
    public IReadOnlyDictionary<string, string> Sources =>
        RunResult.GeneratedSources.ToDictionary(s => s.HintName, s => s.SourceText.ToString());

    /// <summary>Compiler diagnostics of the output compilation at warning level or above.</summary>
    public IReadOnlyList<Diagnostic> CompilationDiagnostics =>
        Output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();

    /// <summary>Emits the output compilation and loads it (resolving ModelGen.Runtime from the test's own load).</summary>
    public Assembly Load()
    {
        using var stream = new MemoryStream();
        var emit = Output.Emit(stream);
        Assert.True(emit.Success, string.Join("\n", emit.Diagnostics));
        return Assembly.Load(stream.ToArray());
    }
}

/// <summary>Reads a diagnostic as ID, the source text it points at, and its message.</summary>
internal static class DiagnosticExtensions
{
    public static string LocatedText(this Diagnostic diagnostic)
    {
        Assert.True(diagnostic.Location.IsInSource, $"{diagnostic.Id} is not located in a source tree");
        return diagnostic.Location.SourceTree!.GetText().ToString(diagnostic.Location.SourceSpan);
    }

    public static string Message(this Diagnostic diagnostic) => diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture);
}
