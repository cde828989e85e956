using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace ModelGen.Generators.Models;

/// <summary>
/// Where a diagnostic points, as plain values (no <see cref="SyntaxTree"/>): the file, the span and its lines.
/// <see cref="ToLocation"/> maps it back onto the tree of the current compilation so <c>#pragma</c> applies.
/// </summary>
internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
{
    public static LocationInfo? From(SyntaxNode? node) => node is null ? null : From(node.GetLocation());

    public static LocationInfo? From(Location? location) =>
        location?.SourceTree is null ? null : new(location.SourceTree.FilePath, location.SourceSpan, location.GetLineSpan().Span);

    public Location ToLocation(Compilation compilation)
    {
        foreach (SyntaxTree tree in compilation.SyntaxTrees)
        {
            if (tree.FilePath == FilePath && tree.Length >= Span.End) return Location.Create(tree, Span);
        }
        return Location.Create(FilePath, Span, LineSpan);
    }
}
