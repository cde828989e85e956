using System.Collections.Concurrent;

namespace ModelGen.Masks;

/// <summary>
/// A mask declared with <c>[AttentionMask]</c>: its name, its expression and how the generator classifies its tiles.
/// <see cref="Apply{TResult, TAction}"/> runs generic code with the generated struct, which is how
/// <see cref="AttentionMask.Apply{TResult, TAction}"/> reaches a declared mask.
/// </summary>
public abstract class MaskDefinition
{
    private protected MaskDefinition(string name, string expression, bool analytic)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        (Name, Expression, IsAnalytic) = (name, expression, analytic);
    }

    /// <summary>The mask's name (what <c>modelgen train --mask</c> takes).</summary>
    public string Name { get; }
    /// <summary>The declared expression, as written.</summary>
    public string Expression { get; }
    /// <summary>True when tiles are classified from document boundaries; false when by evaluating a predicate.</summary>
    public bool IsAnalytic { get; }
    /// <summary>The generated struct.</summary>
    public abstract Type MaskType { get; }

    /// <summary>Runs <paramref name="action"/> with the generated struct.</summary>
    public abstract TResult Apply<TResult, TAction>(TAction action) where TAction : IMaskAction<TResult>;

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Expression})";
}

/// <summary>The definition of the generated mask struct <typeparamref name="TMask"/>.</summary>
public sealed class MaskDefinition<TMask>(string name, string expression, bool analytic) : MaskDefinition(name, expression, analytic)
    where TMask : struct, IAttentionMask
{
    /// <inheritdoc/>
    public override Type MaskType => typeof(TMask);

    /// <inheritdoc/>
    public override TResult Apply<TResult, TAction>(TAction action) => action.Run(default(TMask));
}

/// <summary>
/// Declared masks by name, across assemblies: each generated <c>MaskCatalog</c> registers its masks here when its
/// assembly is initialized, and anyone may register more.
/// </summary>
public static class MaskRegistry
{
    private static readonly ConcurrentDictionary<string, MaskDefinition> Masks = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Registers <paramref name="masks"/>; a name registered again with another struct is an error.</summary>
    public static void Register(IEnumerable<MaskDefinition> masks)
    {
        foreach (var mask in masks)
        {
            var existing = Masks.GetOrAdd(mask.Name, mask);
            if (existing.MaskType != mask.MaskType)
                throw new InvalidOperationException($"mask '{mask.Name}' is declared twice: by {existing.MaskType.FullName} and {mask.MaskType.FullName}");
        }
    }

    /// <summary>The mask named <paramref name="name"/> (case-insensitive), or null.</summary>
    public static MaskDefinition? Find(string name) => Masks.TryGetValue(name, out var mask) ? mask : null;

    /// <summary>Every registered mask, by name.</summary>
    public static IReadOnlyList<MaskDefinition> All => Masks.Values.OrderBy(m => m.Name, StringComparer.Ordinal).ToArray();
}
