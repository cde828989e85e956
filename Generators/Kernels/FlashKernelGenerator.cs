using System.Collections.Generic;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelGen.Generators.Diagnostics;
using ModelGen.Generators.Models;

namespace ModelGen.Generators.Kernels;

/// <summary>
/// Emits the unrolled flash-attention kernels (<see cref="FlashKernelEmitter"/>) for every head dimension listed by a
/// <c>[GenerateFlashAttention(…)]</c> attribute on a partial class.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class FlashKernelGenerator : IIncrementalGenerator
{
    private const string AttributeName = "ModelGen.Backends.Ilgpu.Kernels.GenerateFlashAttentionAttribute";

    /// <inheritdoc/>
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var requests = context.SyntaxProvider.ForAttributeWithMetadataName(
            AttributeName,
            static (node, _) => node is ClassDeclarationSyntax,
            static (ctx, _) =>
            {
                var type = (INamedTypeSymbol)ctx.TargetSymbol;
                var attribute = ctx.Attributes[0];
                var dims = attribute.ConstructorArguments.Length == 1
                    ? attribute.ConstructorArguments[0].Values.Select(v => v.Value is int i ? i : -1).ToArray()
                    : new int[0];
                var location = LocationInfo.From(attribute.ApplicationSyntaxReference?.GetSyntax() ?? ctx.TargetNode)!;
                bool isPartial = ((ClassDeclarationSyntax)ctx.TargetNode).Modifiers.Any(m => m.Text == "partial");
                return new FlashRequest(type.ContainingNamespace.IsGlobalNamespace ? "" : type.ContainingNamespace.ToDisplayString(),
                    type.Name, new EquatableArray<int>(System.Collections.Immutable.ImmutableArray.Create(dims)), location, isPartial);
            });
        context.RegisterSourceOutput(requests, static (spc, request) =>
        {
            var bad = request.HeadDims.Where(d => !FlashKernelEmitter.Supports(d)).ToList();
            if (!request.IsPartial)
            {
                spc.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.FlashKernelsNotPartial, Location.Create(request.Location.FilePath, request.Location.Span, request.Location.LineSpan), request.TypeName));
                return;
            }
            if (bad.Count > 0 || request.HeadDims.Count == 0)
            {
                spc.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.UnsupportedFlashHeadDim, Location.Create(request.Location.FilePath, request.Location.Span, request.Location.LineSpan),
                    bad.Count > 0 ? string.Join(", ", bad) : "(none)"));
                return;
            }
            var dims = new SortedSet<int>(request.HeadDims).ToList();
            spc.AddSource($"{request.TypeName}.Flash.g.cs", FlashKernelEmitter.Emit(request.Namespace, request.TypeName, dims));
        });
    }

    private sealed record FlashRequest(string Namespace, string TypeName, EquatableArray<int> HeadDims, LocationInfo Location, bool IsPartial);
}
