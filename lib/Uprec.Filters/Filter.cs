using System.Globalization;

namespace Uprec.Filters;

/// <summary>
/// A parsed filter expression:
/// <code>
///   expr       := and ( "||" and )*
///   and        := unary ( "&amp;&amp;" unary )*
///   unary      := "!" unary | "(" expr ")" | comparison
///   comparison := FIELD ( "==" | "!=" | "&lt;" | "&lt;=" | "&gt;" | "&gt;=" | "~" ) LITERAL
///   LITERAL    := "double-quoted string" (\" and \\ escapes) | [-]decimal | [-]0xhex
/// </code>
/// Field names are letters, digits, '_' and '.', not starting with a digit. A row missing a field
/// (an argument column another probe captures) fails every comparison on it.
/// </summary>
public sealed class Filter
{
    private Filter(string text, FilterNode root)
    {
        Text = text;
        Root = root;
        var fields = new HashSet<string>(StringComparer.Ordinal);
        root.CollectFields(fields);
        Fields = fields;
    }

    public string Text { get; }
    public FilterNode Root { get; }
    /// <summary>Every field name the expression reads.</summary>
    public IReadOnlySet<string> Fields { get; }

    public bool Evaluate(FieldResolver resolve) => Root.Evaluate(resolve);

    /// <summary>Parses <paramref name="text"/>; a malformed expression throws <see cref="FilterException"/> naming the position.</summary>
    public static Filter Parse(string text)
    {
        var parser = new Parser(text);
        FilterNode root = parser.ParseExpression();
        parser.ExpectEnd();
        return new Filter(text, root);
    }

    /// <summary>
    /// Checks every field against what the context offers (name -> kind of its values) and that each
    /// comparison's literal has the field's kind (a glob accepts any field). Throws with the position.
    /// </summary>
    public void Check(IReadOnlyDictionary<string, FilterValueKind> fields)
    {
        Visit(Root);

        void Visit(FilterNode node)
        {
            switch (node)
            {
                case AndNode a:
                    Visit(a.Left);
                    Visit(a.Right);
                    break;
                case OrNode o:
                    Visit(o.Left);
                    Visit(o.Right);
                    break;
                case NotNode n:
                    Visit(n.Operand);
                    break;
                case ComparisonNode c:
                    if (!fields.TryGetValue(c.Field, out FilterValueKind kind))
                    {
                        throw new FilterException(
                            $"filter '{Text}': unknown field '{c.Field}' at position {c.Position + 1} (known: {string.Join(", ", fields.Keys.Order(StringComparer.Ordinal))})",
                            c.Position);
                    }
                    if (c.Op == FilterOp.Glob)
                    {
                        break;
                    }
                    if (kind != c.Literal.Kind)
                    {
                        string want = kind == FilterValueKind.String ? "a double-quoted string" : "a number";
                        throw new FilterException(
                            $"filter '{Text}': field '{c.Field}' at position {c.Position + 1} is compared with {c.Literal}, but it needs {want}",
                            c.Position);
                    }
                    break;
            }
        }
    }

    public override string ToString() => Text;

    private sealed class Parser(string text)
    {
        private int _pos;

        public FilterNode ParseExpression()
        {
            FilterNode left = ParseAnd();
            while (TryConsume("||"))
            {
                left = new OrNode(left, ParseAnd());
            }
            return left;
        }

        private FilterNode ParseAnd()
        {
            FilterNode left = ParseUnary();
            while (TryConsume("&&"))
            {
                left = new AndNode(left, ParseUnary());
            }
            return left;
        }

        private FilterNode ParseUnary()
        {
            SkipSpace();
            if (_pos >= text.Length)
            {
                throw Error("expected a comparison, '!' or '(' but the expression ended");
            }
            if (text[_pos] == '!' && !(_pos + 1 < text.Length && text[_pos + 1] == '='))
            {
                _pos++;
                return new NotNode(ParseUnary());
            }
            if (text[_pos] == '(')
            {
                _pos++;
                FilterNode inner = ParseExpression();
                SkipSpace();
                if (_pos >= text.Length || text[_pos] != ')')
                {
                    throw Error("expected ')'");
                }
                _pos++;
                return inner;
            }
            return ParseComparison();
        }

        private FilterNode ParseComparison()
        {
            SkipSpace();
            int start = _pos;
            if (_pos >= text.Length || !(char.IsAsciiLetter(text[_pos]) || text[_pos] == '_'))
            {
                throw Error($"expected a field name but found '{text[_pos]}'");
            }
            while (_pos < text.Length && (char.IsAsciiLetterOrDigit(text[_pos]) || text[_pos] is '_' or '.'))
            {
                _pos++;
            }
            string field = text[start.._pos];
            SkipSpace();
            int opPos = _pos;
            FilterOp op;
            if (TryConsume("=="))
            {
                op = FilterOp.Equal;
            }
            else if (TryConsume("!="))
            {
                op = FilterOp.NotEqual;
            }
            else if (TryConsume("<="))
            {
                op = FilterOp.LessOrEqual;
            }
            else if (TryConsume(">="))
            {
                op = FilterOp.GreaterOrEqual;
            }
            else if (TryConsume("<"))
            {
                op = FilterOp.Less;
            }
            else if (TryConsume(">"))
            {
                op = FilterOp.Greater;
            }
            else if (TryConsume("~"))
            {
                op = FilterOp.Glob;
            }
            else
            {
                _pos = opPos;
                throw Error(_pos < text.Length && text[_pos] == '='
                    ? "'=' is not an operator: use '=='"
                    : $"expected an operator (== != < <= > >= ~) after '{field}'");
            }
            SkipSpace();
            FilterValue literal = ParseLiteral();
            if (op == FilterOp.Glob && literal.Kind != FilterValueKind.String)
            {
                _pos = opPos;
                throw Error("'~' needs a double-quoted glob pattern");
            }
            return new ComparisonNode(field, op, literal, start);
        }

        private FilterValue ParseLiteral()
        {
            if (_pos >= text.Length)
            {
                throw Error("expected a number or a double-quoted string but the expression ended");
            }
            if (text[_pos] == '"')
            {
                int start = _pos++;
                var sb = new System.Text.StringBuilder();
                while (_pos < text.Length && text[_pos] != '"')
                {
                    if (text[_pos] == '\\' && _pos + 1 < text.Length && text[_pos + 1] is '"' or '\\')
                    {
                        _pos++;
                    }
                    sb.Append(text[_pos++]);
                }
                if (_pos >= text.Length)
                {
                    _pos = start;
                    throw Error("unterminated string (missing closing '\"')");
                }
                _pos++;
                return FilterValue.Of(sb.ToString());
            }
            int numberStart = _pos;
            bool negative = false;
            if (text[_pos] == '-')
            {
                negative = true;
                _pos++;
            }
            bool hex = _pos + 1 < text.Length && text[_pos] == '0' && text[_pos + 1] is 'x' or 'X';
            if (hex)
            {
                _pos += 2;
            }
            int digitsStart = _pos;
            while (_pos < text.Length && (hex ? char.IsAsciiHexDigit(text[_pos]) : char.IsAsciiDigit(text[_pos])))
            {
                _pos++;
            }
            if (_pos == digitsStart || (_pos < text.Length && (char.IsAsciiLetterOrDigit(text[_pos]) || text[_pos] == '_')))
            {
                _pos = numberStart;
                throw Error("expected a number (decimal or 0x hex) or a double-quoted string");
            }
            string digits = text[digitsStart.._pos];
            // Int128 holds every u64 and s64 value; anything beyond is not a value a probe can produce.
            if (!Int128.TryParse(digits, hex ? NumberStyles.AllowHexSpecifier : NumberStyles.None, CultureInfo.InvariantCulture, out Int128 value)
                || (hex && digits.Length > 16) || value > ulong.MaxValue)
            {
                _pos = numberStart;
                throw Error("number out of the 64-bit range");
            }
            return FilterValue.Of(negative ? -value : value);
        }

        public void ExpectEnd()
        {
            SkipSpace();
            if (_pos < text.Length)
            {
                throw Error(text[_pos] == ')' ? "unbalanced ')'" : $"expected '&&', '||' or the end but found '{text[_pos]}'");
            }
        }

        private bool TryConsume(string token)
        {
            SkipSpace();
            if (string.CompareOrdinal(text, _pos, token, 0, token.Length) == 0)
            {
                _pos += token.Length;
                return true;
            }
            return false;
        }

        private void SkipSpace()
        {
            while (_pos < text.Length && char.IsWhiteSpace(text[_pos]))
            {
                _pos++;
            }
        }

        private FilterException Error(string what) =>
            new($"filter '{text}': {what} at position {_pos + 1}", _pos);
    }
}
