using DuckDB.NET.Data;
using Uprec.Trace;

namespace Uprec.Reporting.Tests;

/// <summary>The SQL printed by `report --sql`, run in DuckDB, must give uprec's own numbers.</summary>
public class ReportSqlTests
{
    private static List<List<Dictionary<string, object?>>> RunSql(string sql)
    {
        using var connection = new DuckDBConnection("DataSource=:memory:");
        connection.Open();
        var results = new List<List<Dictionary<string, object?>>>();
        // DuckDB.NET runs one statement per command; the script separates statements with ";\n".
        foreach (string statement in sql.Split(";\n").Where(s => s.Split('\n').Any(l => l.Trim().Length > 0 && !l.TrimStart().StartsWith("--"))))
        {
            using var command = connection.CreateCommand();
            command.CommandText = statement;
            using var reader = command.ExecuteReader();
            var rows = new List<Dictionary<string, object?>>();
            while (reader.Read())
            {
                var row = new Dictionary<string, object?>();
                for (int i = 0; i < reader.FieldCount; i++)
                {
                    row[reader.GetName(i)] = reader.IsDBNull(i) ? null : reader.GetValue(i);
                }
                rows.Add(row);
            }
            results.Add(rows);
        }
        return results;
    }

    private static long L(object? v) => Convert.ToInt64(v);

    private static void AssertSame(LatencyStats? uprec, Dictionary<string, object?> sql, double error)
    {
        if (uprec is null)
        {
            Assert.Equal(0, L(sql["latency_count"]));
            return;
        }
        Assert.Equal(uprec.Count, L(sql["latency_count"]));
        Assert.Equal(uprec.Min, L(sql["min_ns"]));
        Assert.Equal(uprec.Max, L(sql["max_ns"]));
        Assert.Equal(uprec.Total, L(sql["total_ns"]));
        Assert.Equal(uprec.Mean, L(sql["mean_ns"]));
        // DuckDB's quantiles are exact; uprec's are within the stated HdrHistogram bound.
        Truth.Near(L(sql["p50_ns"]), uprec.P50, error);
        Truth.Near(L(sql["p90_ns"]), uprec.P90, error);
        Truth.Near(L(sql["p99_ns"]), uprec.P99, error);
        Truth.Near(L(sql["p999_ns"]), uprec.P999, error);
    }

    [Theory]
    [InlineData(null, null, null)]
    [InlineData("comm ~ \"proc0*\" && !(probe == \"free\")", null, null)]
    [InlineData(null, 200_000L, 2_000_000L)]
    public void DuckDbComputesTheSameTables(string? filter, long? since, long? until)
    {
        using var dir = new TempDir();
        var spec = new SyntheticTrace
        {
            Probes =
            [
                new SyntheticProbe("work", 5_000, new LatencyModel.LogNormal(3_000, 0.9)),
                new SyntheticProbe("free", 3_000),
                new SyntheticProbe("io", 1_000, new LatencyModel.Uniform(10_000, 50_000)),
            ],
            Processes = 2,
            ThreadsPerProcess = 2,
            RowGroupSize = 2_000,
        };
        spec.Write(dir.File("a.parquet"));
        (spec with { Seed = 99 }).Write(dir.File("b.parquet"));
        var request = new ReportRequest { Inputs = [dir.File("*.parquet")], Filter = filter, SinceNs = since, UntilNs = until };

        Report report = ReportEngine.Run(request);
        List<List<Dictionary<string, object?>>> sql = RunSql(ReportSql.Build(request));
        List<Dictionary<string, object?>> probes = sql[^2];
        List<Dictionary<string, object?>> tasks = sql[^1];

        // No samples were lost, so entry rows equal the exact counters and both counts must agree.
        var withRows = report.Probes.Where(p => p.Count > 0).ToList();
        Assert.Equal(withRows.Select(p => p.Name).Order(), probes.Select(r => (string)r["name"]!).Order());
        foreach (ProbeSummary p in withRows)
        {
            Dictionary<string, object?> row = probes.Single(r => (string)r["name"]! == p.Name);
            Assert.Equal(p.Count, L(row["count"]));
            AssertSame(p.Latency, row, report.PercentileError);
        }
        Assert.Equal(report.Tasks.Count, tasks.Count);
        foreach (GroupSummary t in report.Tasks)
        {
            Dictionary<string, object?> row = tasks.Single(r =>
                L(r["pid"]) == t.Pid && L(r["tid"]) == t.Tid && (string)r["comm"]! == t.Comm && (string)r["probe"]! == t.Probe);
            Assert.Equal(t.Count, L(row["count"]));
            AssertSame(t.Latency, row, report.GroupPercentileError);
        }
        Assert.True(report.RowsMatched > 0);
    }

    [Fact]
    public void TheSqlNamesTheInputsAndTheFilter()
    {
        using var dir = new TempDir();
        new SyntheticTrace { Probes = [new SyntheticProbe("work", 10)] }.Write(dir.File("x.parquet"));
        string sql = ReportSql.Build(new ReportRequest { Inputs = [dir.File("x.parquet")], Filter = "pid == 0x10 || comm ~ \"a'b*\"" });
        Assert.Contains($"read_parquet(['{dir.File("x.parquet")}']", sql);
        Assert.Contains("coalesce(\"pid\" = 16, false)", sql);
        Assert.Contains("coalesce(\"comm\" GLOB 'a''b*', false)", sql);
    }
}
