using System.Collections.Generic;
using System.Globalization;
using System.Text;
using Microsoft.CodeAnalysis.CSharp;

namespace ModelGen.Generators.Emit;

/// <summary>
/// C# literals for values in generated code. Always invariant culture: a θ of 500000 must print as
/// <c>500000d</c> whatever the culture of the machine that builds (never <c>500 000</c> or <c>1,5</c>).
/// </summary>
internal static class Literals
{
    /// <summary>The shortest round-trip text of <paramref name="value"/> in invariant culture (e.g. 1E-05).</summary>
    public static string Number(double value)
    {
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        // "R" does not always round-trip on .NET Framework hosts (Visual Studio); G17 always does.
        if (!double.IsNaN(value) && double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture) != value)
        {
            text = value.ToString("G17", CultureInfo.InvariantCulture);
        }
        return text;
    }

    /// <summary>A C# <c>double</c> literal with its <c>d</c> suffix, or a named constant for NaN and infinities.</summary>
    public static string Double(double value)
    {
        if (double.IsNaN(value)) return "double.NaN";
        if (double.IsPositiveInfinity(value)) return "double.PositiveInfinity";
        if (double.IsNegativeInfinity(value)) return "double.NegativeInfinity";
        return Number(value) + "d";
    }

    /// <summary>A C# <c>int</c> literal.</summary>
    public static string Int(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>A nullable <c>int</c>: the number or <c>null</c>.</summary>
    public static string NullableInt(int? value) => value is { } v ? Int(v) : "null";

    /// <summary><c>true</c> or <c>false</c>.</summary>
    public static string Bool(bool value) => value ? "true" : "false";

    /// <summary>A quoted, escaped C# string literal.</summary>
    public static string String(string value) => SymbolDisplay.FormatLiteral(value, quote: true);

    /// <summary><c>new double[] { … }</c>, or <c>null</c>.</summary>
    public static string DoubleArray(IReadOnlyList<double>? values)
    {
        if (values is null) return "null";
        var text = new StringBuilder("new double[] { ");
        for (int i = 0; i < values.Count; i++)
        {
            if (i > 0) text.Append(", ");
            text.Append(Double(values[i]));
        }
        return text.Append(values.Count == 0 ? "}" : " }").ToString();
    }
}
