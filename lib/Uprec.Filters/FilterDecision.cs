namespace Uprec.Filters;

/// <summary>The outcome of evaluating a filter when some fields are not known yet.</summary>
public enum FilterDecision
{
    /// <summary>No value of the unknown fields can make the expression true.</summary>
    No,
    /// <summary>True whatever the unknown fields turn out to be.</summary>
    Yes,
    /// <summary>Depends on fields not known yet (e.g. arguments, when deciding per task).</summary>
    Maybe,
}

public static class FilterDecisions
{
    /// <summary>
    /// Three-valued (Kleene) evaluation: comparisons on fields for which <paramref name="isKnown"/> is
    /// false are Maybe, and &amp;&amp; / || / ! combine them. This is the seed's wants_probe(): at exec,
    /// fork or a comm change, evaluate over the task fields with arguments unknown; a task whose answer
    /// is <see cref="FilterDecision.No"/> never needs the probe's breakpoints, and one whose answer is
    /// <see cref="FilterDecision.Yes"/> needs no per-hit evaluation.
    /// </summary>
    public static FilterDecision Decide(this Filter filter, FieldResolver resolve, Func<string, bool> isKnown) =>
        Decide(filter.Root, resolve, isKnown);

    private static FilterDecision Decide(FilterNode node, FieldResolver resolve, Func<string, bool> isKnown) => node switch
    {
        AndNode a => And(Decide(a.Left, resolve, isKnown), a, resolve, isKnown),
        OrNode o => Or(Decide(o.Left, resolve, isKnown), o, resolve, isKnown),
        NotNode n => Decide(n.Operand, resolve, isKnown) switch
        {
            FilterDecision.Yes => FilterDecision.No,
            FilterDecision.No => FilterDecision.Yes,
            _ => FilterDecision.Maybe,
        },
        ComparisonNode c => !isKnown(c.Field) ? FilterDecision.Maybe
            : c.Evaluate(resolve) ? FilterDecision.Yes : FilterDecision.No,
        _ => throw new InvalidOperationException(node.GetType().Name),
    };

    private static FilterDecision And(FilterDecision left, AndNode a, FieldResolver resolve, Func<string, bool> isKnown)
    {
        if (left == FilterDecision.No)
        {
            return FilterDecision.No;
        }
        FilterDecision right = Decide(a.Right, resolve, isKnown);
        return right == FilterDecision.No ? FilterDecision.No
            : left == FilterDecision.Yes && right == FilterDecision.Yes ? FilterDecision.Yes
            : FilterDecision.Maybe;
    }

    private static FilterDecision Or(FilterDecision left, OrNode o, FieldResolver resolve, Func<string, bool> isKnown)
    {
        if (left == FilterDecision.Yes)
        {
            return FilterDecision.Yes;
        }
        FilterDecision right = Decide(o.Right, resolve, isKnown);
        return right == FilterDecision.Yes ? FilterDecision.Yes
            : left == FilterDecision.No && right == FilterDecision.No ? FilterDecision.No
            : FilterDecision.Maybe;
    }
}
