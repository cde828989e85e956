using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelGen.Generators.Emit;
using ModelGen.Generators.Models;
using static ModelGen.Generators.Diagnostics.DiagnosticDescriptors;

namespace ModelGen.Generators.Masks;

/// <summary>
/// The mask half of the generator: each <c>[AttentionMask]</c> partial struct → <see cref="MaskResult"/> → valid specs,
/// checked for duplicate names → one source per mask and the assembly's <c>MaskCatalog</c>.
/// </summary>
internal static class MaskPipeline
{
    /// <summary>Names of the tracked steps, for tests of incremental caching.</summary>
    public static class Steps
    {
        public const string MaskDeclarations = nameof(MaskDeclarations);
        public const string MaskSet = nameof(MaskSet);
        public const string MaskEmitted = nameof(MaskEmitted);
        public const string MaskCatalog = nameof(MaskCatalog);
        public const string MaskDiagnostics = nameof(MaskDiagnostics);
    }

    public static void Initialize(IncrementalGeneratorInitializationContext context, IncrementalValueProvider<CatalogTarget> target)
    {
        IncrementalValuesProvider<MaskResult> declarations = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                MaskParser.AttributeName,
                static (node, _) => node is StructDeclarationSyntax,
                MaskParser.Parse)
            .WithTrackingName(Steps.MaskDeclarations);

        IncrementalValueProvider<MaskSet> set = declarations
            .Select(static (d, _) => d.Spec)
            .Where(static s => s is not null)
            .Select(static (s, _) => s!)
            .Collect()
            .Select(static (all, _) => CheckNames(all))
            .WithTrackingName(Steps.MaskSet);

        IncrementalValuesProvider<MaskSpec> emitted = set
            .SelectMany(static (s, _) => s.Valid.AsImmutableArray())
            .WithTrackingName(Steps.MaskEmitted);
        context.RegisterSourceOutput(emitted, static (spc, spec) => spc.AddSource(MaskEmitter.HintName(spec), MaskEmitter.Emit(spec)));

        IncrementalValueProvider<MaskCatalogModel> catalog = set
            .Combine(target)
            .Select(static (pair, _) => new MaskCatalogModel(pair.Right.Namespace, pair.Right.HasRuntime, pair.Left.Valid))
            .WithTrackingName(Steps.MaskCatalog);
        context.RegisterSourceOutput(catalog, static (spc, model) =>
        {
            if (model.HasRuntime && model.Masks.Count > 0) spc.AddSource(MaskEmitter.CatalogHintName, MaskEmitter.EmitCatalog(model));
        });

        IncrementalValueProvider<EquatableArray<DiagnosticInfo>> diagnostics = declarations
            .Select(static (d, _) => d.Diagnostics)
            .Collect()
            .Combine(set)
            .Select(static (pair, _) => pair.Left.SelectMany(d => d).Concat(pair.Right.Diagnostics).ToEquatableArray())
            .WithTrackingName(Steps.MaskDiagnostics);
        context.RegisterSourceOutput(diagnostics.Combine(context.CompilationProvider), static (spc, pair) =>
        {
            foreach (DiagnosticInfo info in pair.Left) spc.ReportDiagnostic(info.ToDiagnostic(pair.Right));
        });
    }

    /// <summary>Keeps the first declaration of each name (file and position order); later ones are MG0028.</summary>
    private static MaskSet CheckNames(ImmutableArray<MaskSpec> specs)
    {
        var diagnostics = new List<DiagnosticInfo>();
        var byName = new Dictionary<string, MaskSpec>(System.StringComparer.OrdinalIgnoreCase);
        var valid = new List<MaskSpec>();
        foreach (MaskSpec spec in specs.OrderBy(s => s.Location?.FilePath ?? "", System.StringComparer.Ordinal).ThenBy(s => s.Location?.Span.Start ?? 0))
        {
            if (byName.TryGetValue(spec.Name, out MaskSpec? first))
                diagnostics.Add(DiagnosticInfo.Create(DuplicateMaskName, spec.Location, spec.Name, first.FullName));
            else
            {
                byName.Add(spec.Name, spec);
                valid.Add(spec);
            }
        }
        return new(valid.OrderBy(s => s.Name, System.StringComparer.Ordinal).ToEquatableArray(), diagnostics.ToEquatableArray());
    }
}
