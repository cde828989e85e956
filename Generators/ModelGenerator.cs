using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelGen.Generators.Diagnostics;
using ModelGen.Generators.Emit;
using ModelGen.Generators.Models;
using ModelGen.Generators.Parsing;

namespace ModelGen.Generators;

/// <summary>
/// Turns each <c>[CausalLM]</c> partial class into its configuration, weight list and kernel specialization,
/// each <c>[AttentionMask]</c> partial struct into a kernel-safe mask (<see cref="Masks.MaskPipeline"/>), and each
/// compilation into a <c>ModelCatalog</c> and a <c>MaskCatalog</c>.
/// </summary>
/// <remarks>
/// Pipeline: attribute → <see cref="DeclarationResult"/> (spec + diagnostics, value-equatable) → valid specs,
/// collected and checked across declarations (<see cref="DeclarationSet"/>) → one source per spec and one
/// catalog. Diagnostics travel as values and are reported from their own output.
/// </remarks>
[Generator(LanguageNames.CSharp)]
public sealed class ModelGenerator : IIncrementalGenerator
{
    /// <summary>Names of the tracked pipeline steps, for tests of incremental caching.</summary>
    public static class Steps
    {
        /// <summary>Each declaration parsed into a spec and its diagnostics.</summary>
        public const string Declarations = nameof(Declarations);
        /// <summary>The specs of declarations without errors.</summary>
        public const string Specs = nameof(Specs);
        /// <summary>All specs of the compilation.</summary>
        public const string CollectedSpecs = nameof(CollectedSpecs);
        /// <summary>The specs after checks across declarations, sorted.</summary>
        public const string DeclarationSet = nameof(DeclarationSet);
        /// <summary>One spec per generated source.</summary>
        public const string Emitted = nameof(Emitted);
        /// <summary>The catalog's namespace and whether the runtime is referenced.</summary>
        public const string CatalogTarget = nameof(CatalogTarget);
        /// <summary>The catalog entries with their target.</summary>
        public const string Catalog = nameof(Catalog);
        /// <summary>Diagnostics of the single declarations.</summary>
        public const string DeclarationDiagnostics = nameof(DeclarationDiagnostics);
        /// <summary>All diagnostics as values.</summary>
        public const string Diagnostics = nameof(Diagnostics);
        /// <summary>
        /// Diagnostics paired with the compilation, to place them on its syntax trees (so <c>#pragma</c> applies).
        /// Recomputed for every compilation by design; it only maps locations.
        /// </summary>
        public const string DiagnosticsInCompilation = nameof(DiagnosticsInCompilation);
    }

    /// <inheritdoc/>
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        IncrementalValuesProvider<DeclarationResult> declarations = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                "ModelGen.CausalLMAttribute",
                static (node, _) => node is ClassDeclarationSyntax,
                DeclarationParser.Parse)
            .WithTrackingName(Steps.Declarations);

        IncrementalValuesProvider<ModelSpec> specs = declarations
            .Select(static (d, _) => d.Spec)
            .Where(static s => s is not null)
            .Select(static (s, _) => s!)
            .WithTrackingName(Steps.Specs);

        IncrementalValueProvider<DeclarationSet> set = specs
            .Collect()
            .WithTrackingName(Steps.CollectedSpecs)
            .Select(static (all, _) => CheckAcrossDeclarations(all))
            .WithTrackingName(Steps.DeclarationSet);

        IncrementalValuesProvider<ModelSpec> emitted = set
            .SelectMany(static (s, _) => s.Valid.AsImmutableArray())
            .WithTrackingName(Steps.Emitted);
        context.RegisterSourceOutput(emitted, static (spc, spec) =>
            spc.AddSource(DeclarationEmitter.HintName(spec), DeclarationEmitter.Emit(spec)));

        IncrementalValueProvider<CatalogTarget> target = context.CompilationProvider
            .Select(static (c, _) => new CatalogTarget(
                CatalogEmitter.NamespaceFor(c.AssemblyName),
                // The runtime referenced, not the runtime itself being compiled (it hosts generated kernels only).
                c.GetTypeByMetadataName("ModelGen.ModelDeclaration") is { } declaration
                    && !SymbolEqualityComparer.Default.Equals(declaration.ContainingAssembly, c.Assembly)))
            .WithTrackingName(Steps.CatalogTarget);
        Masks.MaskPipeline.Initialize(context, target);
        IncrementalValueProvider<CatalogModel> catalog = set
            .Select(static (s, _) => s.Valid.Select(v => new CatalogEntry(v.GlobalName, v.Family, v.IsFamily)).ToEquatableArray())
            .Combine(target)
            .Select(static (pair, _) => new CatalogModel(pair.Right, pair.Left))
            .WithTrackingName(Steps.Catalog);
        context.RegisterSourceOutput(catalog, static (spc, model) =>
        {
            if (model.Target.HasRuntime) spc.AddSource(CatalogEmitter.HintName, CatalogEmitter.Emit(model));
        });

        IncrementalValueProvider<EquatableArray<DiagnosticInfo>> diagnostics = declarations
            .Select(static (d, _) => d.Diagnostics)
            .WithTrackingName(Steps.DeclarationDiagnostics)
            .Collect()
            .Combine(set)
            .Select(static (pair, _) => pair.Left.SelectMany(d => d).Concat(pair.Right.Diagnostics).ToEquatableArray())
            .WithTrackingName(Steps.Diagnostics);
        context.RegisterSourceOutput(
            diagnostics.Combine(context.CompilationProvider).WithTrackingName(Steps.DiagnosticsInCompilation),
            static (spc, pair) =>
            {
                foreach (DiagnosticInfo info in pair.Left) spc.ReportDiagnostic(info.ToDiagnostic(pair.Right));
            });
    }

    /// <summary>
    /// Sorts the valid specs by full name and keeps one family declaration per <c>model_type</c>: a second one
    /// (in file and position order) is an error (MG0015) and is neither emitted nor cataloged.
    /// </summary>
    private static DeclarationSet CheckAcrossDeclarations(ImmutableArray<ModelSpec> specs)
    {
        var diagnostics = new List<DiagnosticInfo>();
        var families = new Dictionary<string, ModelSpec>();
        var rejected = new HashSet<ModelSpec>();
        IEnumerable<ModelSpec> inSourceOrder = specs
            .OrderBy(s => s.Location?.FilePath ?? "", System.StringComparer.Ordinal)
            .ThenBy(s => s.Location?.Span.Start ?? 0);
        foreach (ModelSpec spec in inSourceOrder.Where(s => s.IsFamily))
        {
            if (families.TryGetValue(spec.Family, out ModelSpec? first))
            {
                diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.DuplicateFamily, spec.Location, spec.Family, first.FullName));
                rejected.Add(spec);
            }
            else families.Add(spec.Family, spec);
        }
        EquatableArray<ModelSpec> valid = specs
            .Where(s => !rejected.Contains(s))
            .OrderBy(s => s.FullName, System.StringComparer.Ordinal)
            .ToEquatableArray();
        return new(valid, diagnostics.ToEquatableArray());
    }
}
