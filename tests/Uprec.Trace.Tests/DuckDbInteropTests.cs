using DuckDB.NET.Data;

namespace Uprec.Trace.Tests;

/// <summary>The trace must be readable by other Parquet readers; DuckDB is the one users reach for.</summary>
public class DuckDbInteropTests
{
    private static List<object?[]> Query(string sql)
    {
        using var connection = new DuckDBConnection("DataSource=:memory:");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        using var reader = command.ExecuteReader();
        var rows = new List<object?[]>();
        while (reader.Read())
        {
            var row = new object?[reader.FieldCount];
            for (int i = 0; i < row.Length; i++)
            {
                row[i] = reader.IsDBNull(i) ? null : reader.GetValue(i);
            }
            rows.Add(row);
        }
        return rows;
    }

    [Fact]
    public void ATraceRewrittenByDuckDbReadsBackTheSame()
    {
        // DuckDB declares every column optional (definition levels on every page): uprec must read such
        // a file row for row as it reads its own, on both decode paths, not misread the levels as values.
        using var dir = new TempDir();
        string path = dir.File("t.parquet"), copy = dir.File("duck.parquet");
        new SyntheticTrace
        {
            Probes = [new SyntheticProbe("a", 3000, new LatencyModel.LogNormal(1000, 1)), new SyntheticProbe("b", 2000)],
            Processes = 2,
            ThreadsPerProcess = 3,
            RowGroupSize = 2000,
        }.Write(path);
        string metadata;
        using (TraceReader original = TraceReader.Open(path))
        {
            metadata = TraceMetadataJson.Serialize(original.Metadata);
        }
        Query($"COPY (SELECT * FROM read_parquet('{path}')) TO '{copy}' (FORMAT parquet, KV_METADATA " +
            $"{{'{TraceColumns.SchemaVersionKey}': '{TraceSchema.Version}', '{TraceColumns.MetadataKey}': '{metadata.Replace("'", "''")}'}})");
        Assert.Contains(Query($"SELECT repetition_type FROM parquet_schema('{copy}') WHERE name = 'pid'"), r => (string?)r[0] == "OPTIONAL");

        List<string> expected = FastPathTests.Dump(path, fast: true);
        Assert.True(expected.Count > 7000);
        Assert.Equal(expected, FastPathTests.Dump(copy, fast: true));
        Assert.Equal(expected, FastPathTests.Dump(copy, fast: false));

        // One null where uprec needs a value is an error naming the column, not a zero pid.
        string holed = dir.File("holed.parquet");
        Query($"COPY (SELECT * REPLACE (CASE WHEN time_ns = (SELECT max(time_ns) FROM read_parquet('{path}')) THEN NULL ELSE pid END AS pid) " +
            $"FROM read_parquet('{path}')) TO '{holed}' (FORMAT parquet, KV_METADATA " +
            $"{{'{TraceColumns.SchemaVersionKey}': '{TraceSchema.Version}', '{TraceColumns.MetadataKey}': '{metadata.Replace("'", "''")}'}})");
        foreach (bool fast in new[] { true, false })
        {
            var e = Assert.Throws<TraceFormatException>(() => FastPathTests.Dump(holed, fast));
            Assert.Contains("null values in the required column 'pid'", e.Message);
        }
    }

    [Fact]
    public void DuckDbReadsRowsColumnsAndFooter()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        TraceRoundTripTests.WriteSample(path, 3);
        string source = $"read_parquet('{path}')";

        List<object?[]> rows = Query(
            $"SELECT time_ns, pid, tid, probe, kind, duration_ns, comm, n, path, size FROM {source} ORDER BY time_ns");
        HitRecord[] hits = TraceRoundTripTests.SampleHits();
        Assert.Equal(hits.Length, rows.Count);
        string[] names = ["work", "alloc"];
        for (int i = 0; i < hits.Length; i++)
        {
            Assert.Equal(hits[i].TimeNs, rows[i][0]);
            Assert.Equal(hits[i].Pid, rows[i][1]);
            Assert.Equal(hits[i].Tid, rows[i][2]);
            Assert.Equal(names[hits[i].ProbeId], rows[i][3]);
            Assert.Equal(hits[i].Kind == HitKind.Return ? "return" : "entry", rows[i][4]);
            Assert.Equal(hits[i].Kind == HitKind.Return ? hits[i].DurationNs : null, rows[i][5]);
            Assert.Equal(hits[i].Comm, rows[i][6]);
        }
        Assert.Equal([7L, -5L, null, 8L, 3L, null, 9L], rows.Select(r => r[7]));
        Assert.Equal(["/etc/x", null, null, null, null, null, "/tmp/y"], rows.Select(r => r[8]));
        Assert.Equal([null, ulong.MaxValue, null, null, 16UL, null, null], rows.Select(r => r[9]));

        List<object?[]> counts = Query($"SELECT probe, count(*) FROM {source} WHERE kind = 'entry' GROUP BY probe ORDER BY probe");
        Assert.Equal([["alloc", 2L], ["work", 3L]], counts);

        List<object?[]> footer = Query(
            $"SELECT decode(key), decode(value) FROM parquet_kv_metadata('{path}') WHERE decode(key) LIKE 'uprec.%' ORDER BY 1");
        Assert.Equal("uprec.metadata", footer[0][0]);
        Assert.Equal(TraceMetadataJson.Serialize(TraceRoundTripTests.SampleMetadata()), footer[0][1]);
        Assert.Equal(["uprec.schema_version", "1"], footer[1]);
    }

    [Fact]
    public void StringColumnsAreDictionaryEncoded()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        TraceRoundTripTests.WriteSample(path, 100);
        List<object?[]> encodings = Query(
            $"SELECT path_in_schema, encodings FROM parquet_metadata('{path}') WHERE path_in_schema IN ('probe','kind','comm') ORDER BY 1");
        Assert.Equal(3, encodings.Count);
        Assert.All(encodings, r => Assert.Contains("DICTIONARY", (string)r[1]!));
    }
}
