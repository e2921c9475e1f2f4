using System.Globalization;
using System.Text;
using Uprec.Filters;
using Uprec.Trace;

namespace Uprec.Reporting;

/// <summary>
/// `uprec report --sql`: DuckDB SQL over read_parquet(...) computing the per-probe and per-task tables
/// of the report, so the same aggregation runs in DuckDB (or, with small dialect changes, Spark/Trino)
/// over many traces. Differences by design, stated in the SQL's comments: counts are entry rows (uprec
/// prefers the exact in-target counters from the footer, which differ only when samples were lost);
/// percentiles are exact (uprec's are HdrHistogram values within 0.1%).
/// </summary>
public static class ReportSql
{
    public static string Build(ReportRequest request)
    {
        IReadOnlyList<string> inputs = TraceInputs.Expand(request.Inputs);
        var starts = new Dictionary<string, long>(StringComparer.Ordinal);
        var argColumns = new Dictionary<string, ArgColumnType>(StringComparer.Ordinal);
        foreach (string input in inputs)
        {
            using TraceReader reader = TraceReader.Open(input);
            long start = reader.Metadata.StartTimeNs;
            if (start <= 0 && (request.SinceNs is not null || request.UntilNs is not null))
            {
                start = reader.ReadBatches(new HashSet<string> { TraceColumns.TimeNs })
                    .SelectMany(b => b.TimeNs).DefaultIfEmpty(0).Min();
            }
            starts[input] = start;
            foreach (ArgColumn c in reader.ArgColumns)
            {
                argColumns[c.Name] = c.Type;
            }
        }

        var where = new List<string>();
        if (request.Filter is not null)
        {
            Filter filter = Filter.Parse(request.Filter);
            Dictionary<string, FilterValueKind> kinds = RowFilter.FieldKinds(argColumns.Select(c => (c.Key, c.Value)));
            filter.Check(kinds);
            where.Add(ToSql(filter.Root, kinds));
        }
        if (request.SinceNs is not null || request.UntilNs is not null)
        {
            var windows = inputs.Select(input =>
            {
                var terms = new List<string> { $"filename = {Literal(input)}" };
                if (request.SinceNs is long s)
                {
                    terms.Add($"time_ns >= {starts[input] + s}");
                }
                if (request.UntilNs is long u)
                {
                    terms.Add($"time_ns < {starts[input] + u}");
                }
                return "(" + string.Join(" AND ", terms) + ")";
            });
            where.Add("(" + string.Join(" OR ", windows) + ")");
        }

        string files = "[" + string.Join(", ", inputs.Select(Literal)) + "]";
        var sql = new StringBuilder();
        sql.AppendLine("-- uprec report --sql (DuckDB). Counts are entry rows; uprec uses the exact in-target counters");
        sql.AppendLine("-- from the trace footer when present (they differ only when samples were lost). Percentiles use");
        sql.AppendLine("-- uprec's rank, max(1, round(q * n)), exactly; uprec's own values are within 0.1% of these");
        sql.AppendLine("-- (HdrHistogram). Window functions, not quantile_disc, so Spark and Trino run it unchanged.");
        sql.AppendLine("CREATE OR REPLACE TEMP VIEW uprec_hits AS");
        sql.AppendLine($"    SELECT * FROM read_parquet({files}, union_by_name = true, filename = true)");
        if (where.Count > 0)
        {
            sql.AppendLine($"    WHERE {string.Join(" AND ", where)}");
        }
        sql.AppendLine(";");
        sql.AppendLine("-- per probe");
        AppendTable(sql, ["probe"], "probe AS name", "count DESC, name");
        sql.AppendLine("-- per task");
        AppendTable(sql, ["pid", "tid", "comm", "probe"], "pid, tid, comm, probe", "count DESC, pid, tid, comm, probe");
        return sql.ToString();
    }

    private static void AppendTable(StringBuilder sql, string[] keys, string select, string order)
    {
        string k = string.Join(", ", keys);
        (string Name, string Q)[] percentiles = [("p50_ns", "0.5"), ("p90_ns", "0.9"), ("p99_ns", "0.99"), ("p999_ns", "0.999")];
        sql.AppendLine("WITH agg AS (");
        sql.AppendLine($"    SELECT {k},");
        sql.AppendLine("           count(*) FILTER (WHERE kind = 'entry') AS count,");
        sql.AppendLine("           count(duration_ns) AS latency_count,");
        sql.AppendLine("           min(duration_ns) AS min_ns,");
        sql.AppendLine("           CAST(sum(duration_ns) // count(duration_ns) AS BIGINT) AS mean_ns,");
        sql.AppendLine("           max(duration_ns) AS max_ns,");
        sql.AppendLine("           CAST(sum(duration_ns) AS BIGINT) AS total_ns");
        sql.AppendLine($"    FROM uprec_hits GROUP BY {k}),");
        sql.AppendLine("ranked AS (");
        sql.AppendLine($"    SELECT {k}, duration_ns,");
        sql.AppendLine($"           row_number() OVER (PARTITION BY {k} ORDER BY duration_ns) AS r,");
        sql.AppendLine($"           count(*) OVER (PARTITION BY {k}) AS n");
        sql.AppendLine("    FROM uprec_hits WHERE duration_ns IS NOT NULL),");
        sql.AppendLine("pct AS (");
        sql.AppendLine($"    SELECT {k},");
        sql.AppendLine(string.Join(",\n", percentiles.Select(p =>
            $"           max(duration_ns) FILTER (WHERE r = greatest(1, CAST(floor(n * {p.Q} + 0.5) AS BIGINT))) AS {p.Name}")));
        sql.AppendLine($"    FROM ranked GROUP BY {k})");
        sql.AppendLine($"SELECT {select}, count, latency_count, min_ns, mean_ns, {string.Join(", ", percentiles.Select(p => p.Name))}, max_ns, total_ns");
        sql.AppendLine($"FROM agg LEFT JOIN pct USING ({k})");
        sql.AppendLine($"ORDER BY {order};");
    }

    /// <summary>
    /// Each comparison is wrapped in coalesce(..., false) so a NULL (missing) field fails it and NOT
    /// then flips it, exactly as uprec's evaluator does; SQL's three-valued logic would drop the row instead.
    /// </summary>
    private static string ToSql(FilterNode node, IReadOnlyDictionary<string, FilterValueKind> kinds) => node switch
    {
        AndNode a => $"({ToSql(a.Left, kinds)} AND {ToSql(a.Right, kinds)})",
        OrNode o => $"({ToSql(o.Left, kinds)} OR {ToSql(o.Right, kinds)})",
        NotNode n => $"(NOT {ToSql(n.Operand, kinds)})",
        ComparisonNode c => Comparison(c, kinds[c.Field]),
        _ => throw new InvalidOperationException(node.GetType().Name),
    };

    private static string Comparison(ComparisonNode c, FilterValueKind kind)
    {
        string column = "\"" + c.Field.Replace("\"", "\"\"") + "\"";
        if (c.Op == FilterOp.Glob)
        {
            string subject = kind == FilterValueKind.String ? column : $"CAST({column} AS VARCHAR)";
            return $"coalesce({subject} GLOB {Literal(c.Literal.Text!)}, false)";
        }
        string op = c.Op switch
        {
            FilterOp.Equal => "=",
            FilterOp.NotEqual => "<>",
            FilterOp.Less => "<",
            FilterOp.LessOrEqual => "<=",
            FilterOp.Greater => ">",
            _ => ">=",
        };
        string literal = c.Literal.Kind == FilterValueKind.String
            ? Literal(c.Literal.Text!)
            : c.Literal.Integer.ToString(CultureInfo.InvariantCulture) + (c.Literal.Integer > long.MaxValue ? "::UBIGINT" : "");
        return $"coalesce({column} {op} {literal}, false)";
    }

    private static string Literal(string s) => "'" + s.Replace("'", "''") + "'";
}
