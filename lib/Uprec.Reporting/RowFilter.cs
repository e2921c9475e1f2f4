using Uprec.Filters;
using Uprec.Trace;

namespace Uprec.Reporting;

/// <summary>
/// Binds a <see cref="Filter"/> to the columns of one batch. The fields are the trace's columns:
/// time_ns pid tid probe kind duration_ns comm and every argument column by name.
/// </summary>
internal sealed class RowFilter
{
    private readonly Filter _filter;
    private readonly FieldResolver _resolver;
    private TraceBatch? _batch;
    private int _row;

    private RowFilter(Filter filter)
    {
        _filter = filter;
        _resolver = Resolve;
    }

    public IReadOnlySet<string> Fields => _filter.Fields;

    /// <summary>A filter binds one row at a time, so each thread needs its own copy.</summary>
    public RowFilter Clone() => new(_filter);

    /// <summary>Parses and checks the expression against the columns every input has.</summary>
    public static RowFilter Create(string text, IEnumerable<TraceReader> readers)
    {
        Filter filter = Filter.Parse(text);
        filter.Check(FieldKinds(readers.SelectMany(r => r.ArgColumns).Select(a => (a.Name, a.Type))));
        return new RowFilter(filter);
    }

    /// <summary>The fields a report filter may read, with their kinds: the fixed columns and the argument columns.</summary>
    internal static Dictionary<string, FilterValueKind> FieldKinds(IEnumerable<(string Name, ArgColumnType Type)> argColumns)
    {
        var fields = new Dictionary<string, FilterValueKind>(StringComparer.Ordinal)
        {
            [TraceColumns.TimeNs] = FilterValueKind.Integer,
            [TraceColumns.Pid] = FilterValueKind.Integer,
            [TraceColumns.Tid] = FilterValueKind.Integer,
            [TraceColumns.Probe] = FilterValueKind.String,
            [TraceColumns.Kind] = FilterValueKind.String,
            [TraceColumns.DurationNs] = FilterValueKind.Integer,
            [TraceColumns.Comm] = FilterValueKind.String,
        };
        foreach ((string name, ArgColumnType type) in argColumns)
        {
            fields[name] = type == ArgColumnType.String ? FilterValueKind.String : FilterValueKind.Integer;
        }
        return fields;
    }

    public bool Matches(TraceBatch batch, int row)
    {
        _batch = batch;
        _row = row;
        return _filter.Evaluate(_resolver);
    }

    private FilterValue Resolve(string field)
    {
        TraceBatch b = _batch!;
        int i = _row;
        switch (field)
        {
            case TraceColumns.TimeNs: return FilterValue.Of(b.TimeNs[i]);
            case TraceColumns.Pid: return FilterValue.Of(b.Pid[i]);
            case TraceColumns.Tid: return FilterValue.Of(b.Tid[i]);
            case TraceColumns.Probe: return FilterValue.Of(b.Probe[i]);
            case TraceColumns.Kind: return FilterValue.Of(b.Kind[i] == HitKind.Return ? TraceColumns.KindReturn : TraceColumns.KindEntry);
            case TraceColumns.DurationNs: return b.DurationNs[i] is long d ? FilterValue.Of(d) : FilterValue.Missing;
            case TraceColumns.Comm: return FilterValue.Of(b.Comm[i]);
        }
        if (!b.Args.TryGetValue(field, out Array? column))
        {
            // This input lacks the column another input has: missing, so comparisons on it are false.
            return FilterValue.Missing;
        }
        return column switch
        {
            long?[] l => l[i] is long v ? FilterValue.Of(v) : FilterValue.Missing,
            ulong?[] u => u[i] is ulong v ? FilterValue.Of(v) : FilterValue.Missing,
            string?[] s => FilterValue.Of(s[i]),
            _ => FilterValue.Missing,
        };
    }
}
