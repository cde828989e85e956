using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace ModelGen.Generators.Masks;

/// <summary>
/// Parses a mask expression — <c>|</c> of <c>&amp;</c> of parts, with parentheses — into disjunctive normal form: a list of
/// <see cref="TermSpec"/>s (AND distributes over OR). Errors carry the offset in the expression.
/// </summary>
internal static class MaskExpression
{
    public const int MaxTerms = 4;

    /// <summary>Parts and whether each takes a positive integer argument.</summary>
    public static readonly IReadOnlyDictionary<string, bool> Parts = new Dictionary<string, bool>
    {
        ["all"] = false, ["causal"] = false, ["document"] = false, ["anchor"] = false,
        ["window"] = true, ["prefix"] = true, ["head"] = true,
    };

    public static string KnownParts => "all, causal, document, anchor, window(W), prefix(P), head(K)";

    internal enum ErrorKind { Syntax, UnknownPart, BadArgument, TooManyTerms }

    internal sealed record Error(ErrorKind Kind, int Offset, int Length, string Text);

    public static (List<TermSpec>? Terms, Error? Error) Parse(string text)
    {
        var parser = new Parser(text);
        try
        {
            List<TermSpec> terms = parser.Or();
            parser.SkipSpaces();
            if (!parser.AtEnd) throw parser.Fail(ErrorKind.Syntax, $"unexpected '{parser.Current}'");
            terms = terms.Distinct().ToList();
            if (terms.Count > MaxTerms)
                return (null, new Error(ErrorKind.TooManyTerms, 0, text.Length, terms.Count.ToString(CultureInfo.InvariantCulture)));
            return (terms, null);
        }
        catch (ParseException e)
        {
            return (null, e.Error);
        }
    }

    private sealed class ParseException(Error error) : System.Exception(error.Text)
    {
        public Error Error { get; } = error;
    }

    private sealed class Parser(string text)
    {
        private int _at;

        public bool AtEnd => _at >= text.Length;
        public char Current => text[_at];

        public ParseException Fail(ErrorKind kind, string message, int? at = null, int length = 1) => new(new Error(kind, at ?? _at, length, message));

        public void SkipSpaces()
        {
            while (!AtEnd && char.IsWhiteSpace(Current)) _at++;
        }

        private bool Accept(char c)
        {
            SkipSpaces();
            if (AtEnd || Current != c) return false;
            _at++;
            if (!AtEnd && Current == c && c is '&' or '|') _at++; // && and || read as & and |
            return true;
        }

        public List<TermSpec> Or()
        {
            var terms = And();
            while (Accept('|')) terms.AddRange(And());
            return terms;
        }

        private List<TermSpec> And()
        {
            var terms = Factor();
            while (Accept('&'))
            {
                var right = Factor();
                terms = terms.SelectMany(l => right.Select(r => l.And(r))).ToList();
                if (terms.Count > 64) throw Fail(ErrorKind.TooManyTerms, terms.Count.ToString(CultureInfo.InvariantCulture));
            }
            return terms;
        }

        private List<TermSpec> Factor()
        {
            SkipSpaces();
            if (AtEnd) throw Fail(ErrorKind.Syntax, "expected a part or '(' but the expression ends");
            if (Accept('('))
            {
                var inner = Or();
                if (!Accept(')')) throw Fail(ErrorKind.Syntax, AtEnd ? "expected ')' but the expression ends" : $"expected ')' but found '{Current}'");
                return inner;
            }
            int start = _at;
            while (!AtEnd && (char.IsLetterOrDigit(Current) || Current is '_' or '-')) _at++;
            if (_at == start) throw Fail(ErrorKind.Syntax, $"expected a part or '(' but found '{Current}'");
            string name = text.Substring(start, _at - start);
            if (!Parts.TryGetValue(name, out bool takesArgument)) throw Fail(ErrorKind.UnknownPart, name, start, name.Length);
            int? argument = null;
            if (Accept('('))
            {
                SkipSpaces();
                int numberStart = _at;
                while (!AtEnd && Current is not ')' && !char.IsWhiteSpace(Current)) _at++;
                string number = text.Substring(numberStart, _at - numberStart);
                if (!Accept(')')) throw Fail(ErrorKind.Syntax, "expected ')' after the argument");
                if (!takesArgument) throw Fail(ErrorKind.BadArgument, $"'{name}' takes no argument", start, _at - start);
                if (!int.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value <= 0)
                    throw Fail(ErrorKind.BadArgument, $"'{name}' needs a positive integer, got '{number}'", start, _at - start);
                argument = value;
            }
            else if (takesArgument) throw Fail(ErrorKind.BadArgument, $"'{name}' needs a positive integer argument, e.g. {name}(64)", start, name.Length);

            TermSpec term = name switch
            {
                "causal" => TermSpec.All with { Parts = TermSpec.Causal },
                "document" => TermSpec.All with { Parts = TermSpec.Document },
                "anchor" => TermSpec.All with { Parts = TermSpec.Anchor },
                "window" => TermSpec.All with { Window = argument!.Value },
                "prefix" => TermSpec.All with { Prefix = argument!.Value },
                "head" => TermSpec.All with { Head = argument!.Value },
                _ => TermSpec.All,
            };
            return [term];
        }
    }
}
