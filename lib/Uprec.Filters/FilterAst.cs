namespace Uprec.Filters;

public enum FilterOp
{
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    /// <summary>Glob match on strings: * any run, ? one character, [abc] / [a-z] / [!a] a class.</summary>
    Glob,
}

/// <summary>The parsed expression tree; evaluation is a tree walk over a <see cref="FieldResolver"/>.</summary>
public abstract record FilterNode
{
    public abstract bool Evaluate(FieldResolver resolve);
    internal abstract void CollectFields(HashSet<string> into);
}

public sealed record AndNode(FilterNode Left, FilterNode Right) : FilterNode
{
    public override bool Evaluate(FieldResolver resolve) => Left.Evaluate(resolve) && Right.Evaluate(resolve);
    internal override void CollectFields(HashSet<string> into)
    {
        Left.CollectFields(into);
        Right.CollectFields(into);
    }
}

public sealed record OrNode(FilterNode Left, FilterNode Right) : FilterNode
{
    public override bool Evaluate(FieldResolver resolve) => Left.Evaluate(resolve) || Right.Evaluate(resolve);
    internal override void CollectFields(HashSet<string> into)
    {
        Left.CollectFields(into);
        Right.CollectFields(into);
    }
}

public sealed record NotNode(FilterNode Operand) : FilterNode
{
    public override bool Evaluate(FieldResolver resolve) => !Operand.Evaluate(resolve);
    internal override void CollectFields(HashSet<string> into) => Operand.CollectFields(into);
}

/// <summary><c>field OP literal</c>. <see cref="Position"/> is where the field name starts in the text.</summary>
public sealed record ComparisonNode(string Field, FilterOp Op, FilterValue Literal, int Position) : FilterNode
{
    private readonly Glob? _glob = Op == FilterOp.Glob && Literal.Text is not null ? new Glob(Literal.Text) : null;

    public override bool Evaluate(FieldResolver resolve)
    {
        FilterValue value = resolve(Field);
        if (value.Kind == FilterValueKind.Missing)
        {
            return false;
        }
        if (Op == FilterOp.Glob)
        {
            // A glob over a number matches its decimal text, so `pid ~ "12*"` does what it says.
            string text = value.Kind == FilterValueKind.String ? value.Text! : value.ToString();
            return _glob!.IsMatch(text);
        }
        int cmp;
        if (value.Kind == FilterValueKind.Integer && Literal.Kind == FilterValueKind.Integer)
        {
            cmp = value.Integer.CompareTo(Literal.Integer);
        }
        else if (value.Kind == FilterValueKind.String && Literal.Kind == FilterValueKind.String)
        {
            cmp = string.CompareOrdinal(value.Text, Literal.Text);
        }
        else
        {
            // A string field against a number (or the reverse) never matches; the checker reports it when it can.
            return false;
        }
        return Op switch
        {
            FilterOp.Equal => cmp == 0,
            FilterOp.NotEqual => cmp != 0,
            FilterOp.Less => cmp < 0,
            FilterOp.LessOrEqual => cmp <= 0,
            FilterOp.Greater => cmp > 0,
            _ => cmp >= 0,
        };
    }

    internal override void CollectFields(HashSet<string> into) => into.Add(Field);
}
