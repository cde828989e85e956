using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelGen.Generators.Models;
using static ModelGen.Generators.Diagnostics.DiagnosticDescriptors;

namespace ModelGen.Generators.Parsing;

/// <summary>
/// Turns one <c>[CausalLM]</c> class into a <see cref="ModelSpec"/>: reads every ModelGen attribute, applies
/// the defaults, and checks the declaration. Any error leaves the spec null; warnings keep it.
/// </summary>
internal static class DeclarationParser
{
    /// <summary>RoPE parameters each scaling reads; any other one given explicitly is warned about (MG0014).</summary>
    private static readonly Dictionary<string, string[]> RopeParametersByScaling = new()
    {
        ["Default"] = [],
        ["Linear"] = ["Factor"],
        ["Dynamic"] = ["Factor", "OriginalContext"],
        ["Yarn"] = ["Factor", "OriginalContext", "BetaFast", "BetaSlow", "AttentionFactor"],
        ["Llama3"] = ["Factor", "OriginalContext", "LowFreqFactor", "HighFreqFactor"],
        ["LongRope"] = ["Factor", "OriginalContext", "AttentionFactor", "ShortFactor", "LongFactor"],
    };

    private static readonly string[] ScalingParameters =
        ["Factor", "OriginalContext", "LowFreqFactor", "HighFreqFactor", "BetaFast", "BetaSlow", "AttentionFactor", "ShortFactor", "LongFactor"];

    public static DeclarationResult Parse(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
    {
        var symbol = (INamedTypeSymbol)context.TargetSymbol;
        var syntax = (ClassDeclarationSyntax)context.TargetNode;
        var diagnostics = ImmutableArray.CreateBuilder<DiagnosticInfo>();
        void Report(DiagnosticDescriptor descriptor, LocationInfo? location, params object[] arguments) =>
            diagnostics.Add(DiagnosticInfo.Create(descriptor, location, arguments));

        LocationInfo? classLocation = LocationInfo.From(syntax.Identifier.GetLocation());

        // Shape of the class: the generated part must be able to join it and the catalog to name it.
        if (!syntax.Modifiers.Any(SyntaxKind.PartialKeyword)) Report(NotPartial, classLocation, symbol.Name);
        if (symbol.ContainingType is not null)
            Report(UnsupportedShape, classLocation, symbol.Name, $"it is nested in '{symbol.ContainingType.Name}'");
        else if (symbol.TypeParameters.Length > 0) Report(UnsupportedShape, classLocation, symbol.Name, "it is generic");
        else if (symbol.IsFileLocal) Report(UnsupportedShape, classLocation, symbol.Name, "it is file-local");

        var causal = new AttributeArguments(context.Attributes[0], classLocation, cancellationToken);
        AttributeArguments Other(string name) => new(FindAttribute(symbol, name), classLocation, cancellationToken);
        AttributeArguments decoder = Other("DecoderAttribute");
        AttributeArguments rope = Other("RopeAttribute");
        AttributeArguments norm = Other("RmsNormAttribute");
        AttributeArguments attention = Other("AttentionAttribute");
        AttributeArguments mlp = Other("MlpAttribute");

        // The family (constructor argument). Without it the compiler already reports an error.
        if (causal.ConstructorString(0) is not { } family) return new(null, diagnostics.ToImmutable().ToEquatableArray());
        if (!KnownNames.Families.Contains(family))
            Report(UnknownFamily, causal.ConstructorArgumentLocation(0), family, string.Join(", ", KnownNames.Families));

        // Sizes.
        SizeSpec sizes = SizeSpec.Family;
        if (decoder.IsPresent)
        {
            int Size(string name, int defaultValue, bool zeroMeansDefault)
            {
                int value = decoder.Int(name, defaultValue);
                if (value < 0 || (value == 0 && !zeroMeansDefault))
                    Report(NonPositiveSize, decoder.LocationOf(name), name, zeroMeansDefault ? "positive, or 0 for the default" : "positive", value);
                return value;
            }
            int layers = Size("Layers", 0, false), hidden = Size("Hidden", 0, false), heads = Size("Heads", 0, false);
            int kvHeads = Size("KvHeads", 0, true), headDim = Size("HeadDim", 0, true);
            int intermediate = Size("Intermediate", 0, false), vocab = Size("Vocab", 0, false);
            int maxPositions = Size("MaxPositions", 4096, false);

            if (kvHeads == 0) kvHeads = heads;
            if (heads > 0 && kvHeads > 0 && heads % kvHeads != 0)
                Report(HeadsNotDivisibleByKvHeads, decoder.LocationOf("KvHeads"), heads, kvHeads);
            if (headDim == 0 && heads > 0 && hidden > 0)
            {
                if (hidden % heads != 0) Report(HiddenNotDivisibleByHeads, decoder.LocationOf("Hidden"), hidden, heads);
                else headDim = hidden / heads;
            }
            sizes = new(layers, hidden, heads, kvHeads, headDim, intermediate, vocab, maxPositions);
        }

        string? Enum(AttributeArguments args, string name, string label, ImmutableArray<string> names)
        {
            int value = args.EnumValue(name, 0);
            if (value >= 0 && value < names.Length) return names[value];
            Report(UnknownEnumValue, args.LocationOf(name), label, value, string.Join(", ", names));
            return null;
        }

        // RoPE.
        string? scaling = Enum(rope, "Scaling", "RoPE scaling", KnownNames.RopeScaling);
        string? precision = Enum(rope, "Precision", "RoPE precision", KnownNames.RopePrecision);
        double theta = rope.Double("Theta", 10000.0);
        double factor = rope.Double("Factor", 0);
        int originalContext = rope.Int("OriginalContext", 0);
        double lowFreq = rope.Double("LowFreqFactor", 0), highFreq = rope.Double("HighFreqFactor", 0);
        double partial = rope.Double("PartialRotaryFactor", 1.0);
        EquatableArray<double>? shortFactor = rope.Doubles("ShortFactor"), longFactor = rope.Doubles("LongFactor");

        if (!(theta > 0)) Report(NonPositiveTheta, rope.LocationOf("Theta"), theta);

        bool rotaryDimKnown = false;
        int rotaryDim = 0;
        if (!(partial > 0 && partial <= 1)) Report(PartialRotaryFactorOutOfRange, rope.LocationOf("PartialRotaryFactor"), partial);
        else if (sizes.HeadDim > 0)
        {
            rotaryDim = (int)(sizes.HeadDim * partial);
            if (rotaryDim < 2 || rotaryDim % 2 != 0)
            {
                LocationInfo? where = rope.IsGiven("PartialRotaryFactor") || !decoder.IsGiven("HeadDim")
                    ? rope.LocationOf("PartialRotaryFactor") : decoder.LocationOf("HeadDim");
                Report(OddRotaryDim, where, partial, rotaryDim, sizes.HeadDim);
            }
            else rotaryDimKnown = true;
        }

        if (scaling is not null)
        {
            void Require(bool ok, string parameter, string requirement)
            {
                if (!ok) Report(MissingRopeParameter, rope.IsGiven(parameter) ? rope.LocationOf(parameter) : rope.LocationOf("Scaling"), scaling, requirement);
            }
            if (scaling is "Linear" or "Dynamic" or "Yarn" or "Llama3")
                Require(factor > 0, "Factor", $"Factor > 0, got {Emit.Literals.Number(factor)}");
            if (scaling is "Yarn" or "Llama3")
                Require(originalContext > 0, "OriginalContext", $"OriginalContext > 0, got {originalContext}");
            if (scaling is "Llama3")
            {
                Require(lowFreq > 0, "LowFreqFactor", $"LowFreqFactor > 0, got {Emit.Literals.Number(lowFreq)}");
                Require(highFreq > lowFreq, "HighFreqFactor",
                    $"HighFreqFactor > LowFreqFactor ({Emit.Literals.Number(lowFreq)}), got {Emit.Literals.Number(highFreq)}");
            }
            if (scaling is "LongRope")
            {
                foreach (var (name, values) in new[] { ("ShortFactor", shortFactor), ("LongFactor", longFactor) })
                {
                    if (values is null)
                        Require(false, name, rotaryDimKnown ? $"{name} with {rotaryDim / 2} values (rotary dim / 2)" : $"{name} (rotary dim / 2 values)");
                    else if (rotaryDimKnown && values.Value.Count != rotaryDim / 2)
                        Require(false, name, $"{name} with {rotaryDim / 2} values (rotary dim / 2), got {values.Value.Count}");
                }
            }
            string[] used = RopeParametersByScaling[scaling];
            foreach (string parameter in ScalingParameters)
            {
                if (rope.IsGiven(parameter) && !used.Contains(parameter))
                    Report(IgnoredRopeParameter, rope.LocationOf(parameter), parameter, scaling);
            }
        }

        // RMSNorm.
        double eps = norm.Double("Eps", 1e-6);
        if (!(eps > 0) || double.IsInfinity(eps)) Report(NonPositiveEps, norm.LocationOf("Eps"), eps);

        // Attention.
        string? mask = Enum(attention, "Mask", "mask kind", KnownNames.MaskKind);
        int window = attention.Int("SlidingWindow", 0);
        if (attention.IsGiven("SlidingWindow") && window <= 0) Report(NonPositiveSlidingWindow, attention.LocationOf("SlidingWindow"), window);
        // Qwen2 always has q/k/v biases; an explicit QkvBias still wins.
        bool qkvBias = attention.Bool("QkvBias", family == "qwen2");

        // MLP.
        string? mlpKind = Enum(mlp, "Kind", "MLP kind", KnownNames.MlpKind);

        int bos = causal.Int("BosTokenId", 1);
        var result = diagnostics.ToImmutable().ToEquatableArray();
        if (result.Any(d => d.Descriptor.DefaultSeverity == DiagnosticSeverity.Error)
            || scaling is null || precision is null || mask is null || mlpKind is null)
        {
            return new(null, result);
        }

        var ropeSpec = new RopeSpec(
            scaling, theta, factor, originalContext, lowFreq, highFreq,
            rope.Double("BetaFast", 0), rope.Double("BetaSlow", 0), rope.Double("AttentionFactor", 0),
            shortFactor, longFactor, partial, precision);
        var spec = new ModelSpec(
            symbol.ContainingNamespace.IsGlobalNamespace ? "" : symbol.ContainingNamespace.ToDisplayString(),
            symbol.Name, classLocation, family, !decoder.IsPresent, sizes, ropeSpec, eps, mask, window,
            qkvBias, attention.Bool("OutputBias", false), mlpKind, mlp.Bool("Bias", false),
            bos == -1 ? null : bos, causal.Int("EosTokenId", 2), causal.Bool("TiedEmbeddings", false));
        return new(spec, result);
    }

    private static AttributeData? FindAttribute(INamedTypeSymbol symbol, string name)
    {
        foreach (AttributeData attribute in symbol.GetAttributes())
        {
            if (attribute.AttributeClass is { } type && type.Name == name
                && type.ContainingNamespace is { Name: "ModelGen", ContainingNamespace.IsGlobalNamespace: true })
            {
                return attribute;
            }
        }
        return null;
    }
}
