using DuckDB.NET.Data;

namespace Uprec.Trace.Tests;

/// <summary>
/// Shapes that take the writer's own Parquet encoder off its common path: long Thrift lists (more than
/// 14 columns and row groups), wide dictionaries (bit widths above 8), all-null and all-present optional
/// columns, empty strings and non-ASCII text. Both Parquet.Net (TraceReader) and DuckDB must read them.
/// </summary>
public class EncoderEdgeTests
{
    [Fact]
    public void ManyColumnsRowGroupsAndWideDictionariesReadBackEverywhere()
    {
        using var dir = new TempDir();
        string path = dir.File("edge.parquet");
        ArgMeta[] args = Enumerable.Range(0, 13).Select(i => new ArgMeta($"a{i}", i % 3 == 2 ? "string" : i % 3 == 1 ? "u64" : "s32", $"arg{i % 6 + 1}")).ToArray();
        ProbeMeta[] probes =
        [
            new() { Id = 0, Name = "wide", Spec = "x:wide", Args = args },
            new() { Id = 5, Name = "ünïcødé probe", Spec = "x:u" },
        ];
        const int rows = 700;
        var expected = new List<(string Probe, string Comm, long? A0, ulong? A1, string? A2)>();
        using (var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = 37, Probes = probes }))
        {
            for (int i = 0; i < rows; i++)
            {
                bool wide = i % 5 != 0;
                // 300 distinct comms: the comm dictionary needs a 9-bit index width.
                string comm = i % 300 == 0 ? "" : $"task-{i % 300}";
                object?[]? values = wide
                    ? Enumerable.Range(0, 13).Select(k => k % 3 == 2 ? (object?)(i % 7 == 0 ? null : $"s{i % 11}é") : k % 3 == 1 ? (object)((ulong)i * 1000003UL) : (object)(i - 350)).ToArray()
                    : null;
                writer.Append(new HitRecord
                {
                    TimeNs = i, Pid = 1, Tid = 1 + i % 3, ProbeId = wide ? 0 : 5, Kind = HitKind.Entry, DurationNs = -1, Comm = comm, Args = values,
                });
                expected.Add((wide ? "wide" : "ünïcødé probe", comm, wide ? i - 350 : null, wide ? (ulong)i * 1000003UL : null,
                    wide && i % 7 != 0 ? $"s{i % 11}é" : null));
            }
            writer.Complete(new TraceMetadata { Probes = probes });
        }

        using (TraceReader reader = TraceReader.Open(path))
        {
            Assert.Equal((rows + 36) / 37, reader.RowGroupCount);
            Assert.Equal(13, reader.ArgColumns.Count);
            var actual = new List<(string, string, long?, ulong?, string?)>();
            foreach (TraceBatch b in reader.ReadBatches())
            {
                for (int i = 0; i < b.Count; i++)
                {
                    actual.Add((b.Probe[i], b.Comm[i], ((long?[])b.Args["a0"])[i], ((ulong?[])b.Args["a1"])[i], ((string?[])b.Args["a2"])[i]));
                }
            }
            Assert.Equal(expected, actual);
        }

        using var connection = new DuckDBConnection("DataSource=:memory:");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT count(*), count(DISTINCT comm), count(a2), CAST(sum(a0) AS BIGINT), max(a1), count(*) FILTER (WHERE probe = 'ünïcødé probe') FROM read_parquet('{path}')";
        using var r = command.ExecuteReader();
        Assert.True(r.Read());
        Assert.Equal(rows, Convert.ToInt64(r.GetValue(0)));
        Assert.Equal(300, Convert.ToInt64(r.GetValue(1)));
        Assert.Equal(expected.Count(e => e.A2 is not null), Convert.ToInt64(r.GetValue(2)));
        Assert.Equal(expected.Sum(e => e.A0 ?? 0), Convert.ToInt64(r.GetValue(3)));
        Assert.Equal(expected.Max(e => e.A1 ?? 0), Convert.ToUInt64(r.GetValue(4)));
        Assert.Equal(rows / 5, Convert.ToInt64(r.GetValue(5)));
    }

    [Fact]
    public void NamesAddedWhileARowGroupIsEncodedLandInTheRightRows()
    {
        using var dir = new TempDir();
        string path = dir.File("grow.parquet");
        ProbeMeta[] probes = [new() { Id = 0, Name = "p", Spec = "x:p" }];
        const int rows = 5000;
        using (var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = 64, Probes = probes }))
        {
            for (int i = 0; i < rows; i++)
            {
                // A new comm every row and an unknown probe id every 10th: both dictionaries grow while
                // earlier row groups are being encoded in the background.
                writer.Append(new HitRecord { TimeNs = i, Pid = 1, Tid = 1, ProbeId = i % 10 == 0 ? 1000 + i : 0, Comm = $"c{i}" });
            }
            writer.Complete(new TraceMetadata { Probes = probes });
            Assert.Equal(rows, writer.RowsWritten);
        }
        using TraceReader reader = TraceReader.Open(path);
        int row = 0;
        foreach (TraceBatch b in reader.ReadBatches())
        {
            for (int i = 0; i < b.Count; i++, row++)
            {
                Assert.Equal(row, b.TimeNs[i]);
                Assert.Equal($"c{row}", b.Comm[i]);
                Assert.Equal(row % 10 == 0 ? $"#{1000 + row}" : "p", b.Probe[i]);
            }
        }
        Assert.Equal(rows, row);
    }

    /// <summary>
    /// Dictionary indices go out as the RLE/bit-packed hybrid: runs of 8 or more as RLE runs, the rest
    /// bit-packed in whole groups of 8. Runs of 7, 8 and 9, runs starting at every offset, a run ending
    /// the data, alternations, and a dictionary wider than a byte (2-byte RLE values) must read back
    /// the same through uprec's decoder and Parquet.Net.
    /// </summary>
    [Theory]
    [InlineData(1000)]
    [InlineData(37)]
    public void RunsOfEveryLengthAndOffsetRoundTrip(int rowGroupSize)
    {
        using var dir = new TempDir();
        string path = dir.File("runs.parquet");
        ProbeMeta[] probes = [new() { Id = 0, Name = "p", Spec = "x:p" }, new() { Id = 1, Name = "q", Spec = "x:q" }];
        var tids = new List<int>();
        for (int length = 1; length <= 20; length++)
            for (int offset = 0; offset < 9; offset++)
            {
                tids.AddRange(Enumerable.Range(0, offset).Select(i => 1000 + i % 2));
                tids.AddRange(Enumerable.Repeat(2000 + length, length));
            }
        tids.AddRange(Enumerable.Range(0, 300).Select(i => 5000 + i)); // 300+ distinct: indices wider than 8 bits
        tids.AddRange(Enumerable.Repeat(5299, 50));                     // a 2-byte index in RLE runs, ending the data
        string[] comms = ["a", "b"];
        using (var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = rowGroupSize, Probes = probes }))
        {
            for (int i = 0; i < tids.Count; i++)
            {
                writer.Append(new HitRecord
                {
                    TimeNs = i, Pid = 7, Tid = tids[i], ProbeId = tids[i] % 3 == 0 ? 1 : 0, Comm = comms[tids[i] / 9 % 2],
                    Kind = tids[i] % 5 == 0 ? HitKind.Return : HitKind.Entry, DurationNs = tids[i] % 5 == 0 ? 3 : -1,
                });
            }
            writer.Complete(new TraceMetadata { Probes = probes });
        }
        List<string> expected = tids.Select((t, i) =>
            $"{i} 7 {t} {(t % 3 == 0 ? "q" : "p")} {(t % 5 == 0 ? "Return 3" : "Entry null")} {comms[t / 9 % 2]} ").ToList();
        Assert.Equal(expected, FastPathTests.Dump(path, fast: true));
        Assert.Equal(expected, FastPathTests.Dump(path, fast: false));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(129)]
    [InlineData(1000)]
    public void TimestampsAndTaskIdsOfAnyShapeRoundTrip(int rowGroupSize)
    {
        using var dir = new TempDir();
        string path = dir.File("delta.parquet");
        ProbeMeta[] probes = [new() { Id = 0, Name = "p", Spec = "x:p" }];
        var rng = new Random(5);
        // Out of order, equal, extreme and wrapping timestamps; pids and tids including negatives and extremes.
        long[] times = [long.MinValue, long.MaxValue, 0, -1, 1, long.MaxValue, long.MinValue, 5, 5, 5,
            .. Enumerable.Range(0, 400).Select(i => (long)rng.NextInt64(-1_000_000, 1_000_000_000_000)),
            .. Enumerable.Range(0, 300).Select(i => 1_000_000_000L + i * 37)];
        int[] tids = times.Select((_, i) => i % 13 == 0 ? int.MinValue + i : i % 7 == 0 ? int.MaxValue - i : 100 + i % 5).ToArray();
        using (var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = rowGroupSize, Probes = probes }))
        {
            for (int i = 0; i < times.Length; i++)
            {
                writer.Append(new HitRecord { TimeNs = times[i], Pid = -tids[i], Tid = tids[i], ProbeId = 0, Comm = "c" });
            }
            writer.Complete(new TraceMetadata { Probes = probes });
        }
        foreach (bool fast in new[] { true, false })
        {
            TraceReader.DisableFastPath = !fast;
            try
            {
                using TraceReader reader = TraceReader.Open(path);
                var batches = reader.ReadBatches().ToList();
                Assert.Equal(times, batches.SelectMany(b => b.TimeNs));
                Assert.Equal(tids, batches.SelectMany(b => b.Tid));
                Assert.Equal(tids.Select(t => -t), batches.SelectMany(b => b.Pid));
            }
            finally
            {
                TraceReader.DisableFastPath = false;
            }
        }
        using var connection = new DuckDBConnection("DataSource=:memory:");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT time_ns, tid FROM read_parquet('{path}')";
        using var r = command.ExecuteReader();
        var duck = new List<(long, int)>();
        while (r.Read())
        {
            duck.Add((r.GetInt64(0), r.GetInt32(1)));
        }
        Assert.Equal(times.Zip(tids), duck);
    }
}
