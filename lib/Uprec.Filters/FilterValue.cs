namespace Uprec.Filters;

public enum FilterValueKind : byte
{
    /// <summary>The field has no value in this row (an argument another probe captures): every comparison is false.</summary>
    Missing,
    Integer,
    String,
}

/// <summary>
/// A field's value as a filter sees it. Integers are held as Int128 so that u64 and s64 values compare
/// exactly against each other and against literals.
/// </summary>
public readonly struct FilterValue
{
    private FilterValue(FilterValueKind kind, Int128 integer, string? text)
    {
        Kind = kind;
        Integer = integer;
        Text = text;
    }

    public FilterValueKind Kind { get; }
    public Int128 Integer { get; }
    public string? Text { get; }

    public static FilterValue Missing => default;
    public static FilterValue Of(long value) => new(FilterValueKind.Integer, value, null);
    public static FilterValue Of(ulong value) => new(FilterValueKind.Integer, value, null);
    public static FilterValue Of(Int128 value) => new(FilterValueKind.Integer, value, null);
    public static FilterValue Of(string? value) => value is null ? Missing : new(FilterValueKind.String, 0, value);

    public override string ToString() => Kind switch
    {
        FilterValueKind.Integer => Integer.ToString(System.Globalization.CultureInfo.InvariantCulture),
        FilterValueKind.String => $"\"{Text}\"",
        _ => "(missing)",
    };
}

/// <summary>Gives the value of a named field for the row or task being filtered.</summary>
public delegate FilterValue FieldResolver(string field);
