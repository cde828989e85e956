using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Text;
using ModelGen.Generators.Models;
using ModelGen.Generators.Parsing;
using static ModelGen.Generators.Diagnostics.DiagnosticDescriptors;

namespace ModelGen.Generators.Masks;

/// <summary>
/// Turns one <c>[AttentionMask]</c> struct into a <see cref="MaskSpec"/>: checks its shape, parses the expression, finds
/// the <c>[MaskPredicate]</c> method and checks that it can run in a kernel. Any error leaves the spec null.
/// </summary>
internal static class MaskParser
{
    public const string AttributeName = "ModelGen.AttentionMaskAttribute";
    private const string PredicateAttributeName = "ModelGen.MaskPredicateAttribute";
    private const string PointTypeName = "ModelGen.Masks.MaskPoint";

    public static MaskResult Parse(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
    {
        var symbol = (INamedTypeSymbol)context.TargetSymbol;
        var syntax = (StructDeclarationSyntax)context.TargetNode;
        var diagnostics = new List<DiagnosticInfo>();
        void Report(DiagnosticDescriptor descriptor, LocationInfo? location, params object[] arguments) =>
            diagnostics.Add(DiagnosticInfo.Create(descriptor, location, arguments));
        MaskResult Done(MaskSpec? spec) =>
            new(diagnostics.Any(d => d.Descriptor.DefaultSeverity == DiagnosticSeverity.Error) ? null : spec, diagnostics.ToEquatableArray());

        LocationInfo? structLocation = LocationInfo.From(syntax.Identifier.GetLocation());
        if (!syntax.Modifiers.Any(SyntaxKind.PartialKeyword)) Report(MaskNotPartialStruct, structLocation, symbol.Name, "it is not partial");
        else if (symbol.ContainingType is not null) Report(MaskNotPartialStruct, structLocation, symbol.Name, $"it is nested in '{symbol.ContainingType.Name}'");
        else if (symbol.TypeParameters.Length > 0) Report(MaskNotPartialStruct, structLocation, symbol.Name, "it is generic");
        else if (symbol.IsFileLocal) Report(MaskNotPartialStruct, structLocation, symbol.Name, "it is file-local");
        foreach (IFieldSymbol field in symbol.GetMembers().OfType<IFieldSymbol>().Where(f => !f.IsStatic && !f.IsImplicitlyDeclared))
            Report(PredicateUsesState, LocationInfo.From(field.Locations.FirstOrDefault()), symbol.Name, $"instance field '{field.Name}' (the generated struct is used as default(T))");

        var attribute = new AttributeArguments(context.Attributes[0], structLocation, cancellationToken);
        if (attribute.ConstructorString(0) is not { } name) return Done(null);
        if (string.IsNullOrWhiteSpace(name)) Report(InvalidMaskExpression, attribute.ConstructorArgumentLocation(0), name, 0, "the mask name is empty");
        string expression = context.Attributes[0].ConstructorArguments.Length > 1 ? attribute.ConstructorString(1) ?? "all" : "all";
        LocationInfo? expressionLocation = attribute.ConstructorArgumentLocation(1);

        var (terms, error) = MaskExpression.Parse(expression);
        if (error is not null)
        {
            LocationInfo? at = AtOffset(expressionLocation, context.Attributes[0], error.Offset, error.Length, cancellationToken) ?? expressionLocation;
            switch (error.Kind)
            {
                case MaskExpression.ErrorKind.UnknownPart: Report(UnknownMaskPart, at, error.Text, MaskExpression.KnownParts); break;
                case MaskExpression.ErrorKind.BadArgument: Report(BadMaskArgument, at, error.Text); break;
                case MaskExpression.ErrorKind.TooManyTerms: Report(TooManyMaskTerms, expressionLocation, expression, error.Text, MaskExpression.MaxTerms); break;
                default: Report(InvalidMaskExpression, at, expression, error.Offset, error.Text); break;
            }
        }

        // The predicate: at most one static bool M(MaskPoint) or M(in MaskPoint).
        string? predicateName = null;
        var predicates = symbol.GetMembers().OfType<IMethodSymbol>()
            .Where(m => m.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == PredicateAttributeName))
            .ToList();
        foreach (IMethodSymbol method in predicates)
        {
            LocationInfo? at = LocationInfo.From(method.Locations.FirstOrDefault());
            if (predicates.Count > 1 && !SymbolEqualityComparer.Default.Equals(method, predicates[0]))
            {
                Report(InvalidPredicate, at, method.Name, "a mask has at most one [MaskPredicate] method");
                continue;
            }
            if (!method.IsStatic)
            {
                Report(PredicateUsesState, at, method.Name, "the instance (the predicate must be static)");
                continue;
            }
            bool signature = method.ReturnType.SpecialType == SpecialType.System_Boolean
                && method.TypeParameters.Length == 0
                && method.Parameters.Length == 1
                && method.Parameters[0].Type.ToDisplayString() == PointTypeName
                && method.Parameters[0].RefKind is RefKind.None or RefKind.In or RefKind.RefReadOnlyParameter;
            if (!signature)
            {
                Report(InvalidPredicate, at, method.Name, "it must be 'static bool " + method.Name + "(in MaskPoint p)'");
                continue;
            }
            int before = diagnostics.Count;
            KernelSafety.Check(method, context.SemanticModel.Compilation, diagnostics, cancellationToken);
            predicateName = method.Name;
            if (diagnostics.Count == before) Report(PredicateClassifiedByElements, at, name, method.Name);
        }

        if (terms is null) return Done(null);
        var spec = new MaskSpec(
            symbol.ContainingNamespace.IsGlobalNamespace ? "" : symbol.ContainingNamespace.ToDisplayString(),
            symbol.Name, structLocation, name, expression, terms.ToEquatableArray(), predicateName);
        return Done(spec);
    }

    /// <summary>The location of one character of the expression literal, when it is a plain string literal.</summary>
    private static LocationInfo? AtOffset(LocationInfo? argument, AttributeData data, int offset, int length, CancellationToken cancellationToken)
    {
        if (data.ApplicationSyntaxReference?.GetSyntax(cancellationToken) is not AttributeSyntax { ArgumentList: { } list }) return null;
        var positional = list.Arguments.Where(a => a.NameEquals is null).ToList();
        if (positional.Count < 2 || positional[1].Expression is not LiteralExpressionSyntax literal) return argument;
        string token = literal.Token.Text;
        int quote = token.StartsWith("@", System.StringComparison.Ordinal) ? 2 : token.StartsWith("\"\"\"", System.StringComparison.Ordinal) ? -1 : 1;
        int valueLength = literal.Token.ValueText.Length;
        // Escapes, raw literals or a position past the end: the whole literal.
        if (quote < 0 || valueLength + quote + 1 != token.Length || offset + length > valueLength) return argument;
        var span = new TextSpan(literal.Token.SpanStart + quote + offset, length);
        return LocationInfo.From(Location.Create(literal.SyntaxTree, span));
    }
}
