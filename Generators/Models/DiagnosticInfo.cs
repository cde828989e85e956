using Microsoft.CodeAnalysis;

namespace ModelGen.Generators.Models;

/// <summary>A diagnostic as a value: descriptor, location and message arguments, all equatable.</summary>
internal sealed record DiagnosticInfo(DiagnosticDescriptor Descriptor, LocationInfo? Location, EquatableArray<string> Arguments)
{
    public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, LocationInfo? location, params object[] arguments)
    {
        var texts = new string[arguments.Length];
        for (int i = 0; i < arguments.Length; i++)
        {
            texts[i] = arguments[i] switch
            {
                double d => Emit.Literals.Number(d),
                System.IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
                var other => other?.ToString() ?? "",
            };
        }
        return new(descriptor, location, texts.ToEquatableArray());
    }

    public Diagnostic ToDiagnostic(Compilation compilation) =>
        Diagnostic.Create(Descriptor, Location?.ToLocation(compilation) ?? Microsoft.CodeAnalysis.Location.None, [.. Arguments]);
}
