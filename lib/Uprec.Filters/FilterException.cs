namespace Uprec.Filters;

/// <summary>A malformed filter expression, or one naming a field the context does not have.</summary>
public sealed class FilterException : Exception
{
    public FilterException(string message, int position = -1) : base(message)
    {
        Position = position;
    }

    /// <summary>Zero-based character offset of the error in the expression; -1 when not positional.</summary>
    public int Position { get; }
}
