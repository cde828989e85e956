using System;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelGen.Generators.Models;

namespace ModelGen.Generators.Parsing;

/// <summary>
/// Reads one ModelGen attribute application: named arguments with their defaults, whether each was written
/// explicitly, and the syntax location of each argument for diagnostics. An absent attribute reads as all
/// defaults and locates at <c>fallback</c> (the class identifier).
/// </summary>
internal sealed class AttributeArguments
{
    private readonly AttributeData? _data;
    private readonly AttributeSyntax? _syntax;
    private readonly LocationInfo? _fallback;

    public AttributeArguments(AttributeData? data, LocationInfo? fallback, CancellationToken cancellationToken)
    {
        _data = data;
        _syntax = data?.ApplicationSyntaxReference?.GetSyntax(cancellationToken) as AttributeSyntax;
        _fallback = fallback;
    }

    /// <summary>Whether the attribute is applied at all.</summary>
    public bool IsPresent => _data is not null;

    /// <summary>Whether the named argument <paramref name="name"/> is written explicitly.</summary>
    public bool IsGiven(string name) => Find(name) is not null;

    /// <summary>The location of the attribute itself (or the fallback when it is absent).</summary>
    public LocationInfo? AttributeLocation => LocationInfo.From(_syntax) ?? _fallback;

    /// <summary>The location of the named argument, or of the attribute when the argument is not written.</summary>
    public LocationInfo? LocationOf(string name)
    {
        if (_syntax?.ArgumentList is { } list)
        {
            foreach (AttributeArgumentSyntax argument in list.Arguments)
            {
                if (argument.NameEquals?.Name.Identifier.ValueText == name) return LocationInfo.From(argument);
            }
        }
        return AttributeLocation;
    }

    /// <summary>The location of the <paramref name="index"/>-th constructor argument.</summary>
    public LocationInfo? ConstructorArgumentLocation(int index)
    {
        if (_syntax?.ArgumentList is { } list)
        {
            var positional = list.Arguments.Where(a => a.NameEquals is null).ToList();
            if (index < positional.Count) return LocationInfo.From(positional[index]);
        }
        return AttributeLocation;
    }

    public string? ConstructorString(int index) =>
        _data is { } d && index < d.ConstructorArguments.Length ? d.ConstructorArguments[index].Value as string : null;

    public int Int(string name, int defaultValue) =>
        Find(name) is { IsNull: false, Value: { } v } ? Convert.ToInt32(v, CultureInfo.InvariantCulture) : defaultValue;

    public double Double(string name, double defaultValue) =>
        Find(name) is { IsNull: false, Value: { } v } ? Convert.ToDouble(v, CultureInfo.InvariantCulture) : defaultValue;

    public bool Bool(string name, bool defaultValue) =>
        Find(name) is { IsNull: false, Value: bool v } ? v : defaultValue;

    /// <summary>An enum argument as its underlying value (which may lie outside the declared members).</summary>
    public int EnumValue(string name, int defaultValue) => Int(name, defaultValue);

    /// <summary>A <c>double[]</c> argument, or null when not given or given as null.</summary>
    public EquatableArray<double>? Doubles(string name)
    {
        if (Find(name) is not { Kind: TypedConstantKind.Array, IsNull: false } array) return null;
        return array.Values
            .Select(v => v.Value is { } x ? Convert.ToDouble(x, CultureInfo.InvariantCulture) : 0.0)
            .ToImmutableArray()
            .ToEquatableArray();
    }

    private TypedConstant? Find(string name)
    {
        if (_data is null) return null;
        foreach (var pair in _data.NamedArguments)
        {
            if (pair.Key == name) return pair.Value;
        }
        return null;
    }
}
