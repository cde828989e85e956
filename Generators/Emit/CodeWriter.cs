using System;
using System.Text;

namespace ModelGen.Generators.Emit;

/// <summary>A minimal indented writer for generated C#: four spaces per level, <c>\n</c> line ends.</summary>
internal sealed class CodeWriter
{
    private readonly StringBuilder _text = new();
    private int _depth;

    /// <summary>Writes one line at the current indentation (an empty line is left unindented).</summary>
    public CodeWriter Line(string line = "")
    {
        if (line.Length > 0) _text.Append(' ', _depth * 4).Append(line);
        _text.Append('\n');
        return this;
    }

    /// <summary>Writes <c>{</c>, indents until the returned scope is disposed, then writes <c>}</c> + <paramref name="closing"/>.</summary>
    public IDisposable Block(string closing = "")
    {
        Line("{");
        _depth++;
        return new Scope(this, closing);
    }

    public override string ToString() => _text.ToString();

    private sealed class Scope(CodeWriter writer, string closing) : IDisposable
    {
        public void Dispose()
        {
            writer._depth--;
            writer.Line("}" + closing);
        }
    }
}
