namespace Uprec.Trace.Tests;

/// <summary>
/// The in-process drain writes argument-less entry hits in batches (TraceWriter.AppendEntries): the
/// file must read back exactly as if every row had been appended one by one, across row groups, mixed
/// with single appends that carry captures.
/// </summary>
public class AppendEntriesTests
{
    [Fact]
    public void BatchesReadBackLikeSingleAppends()
    {
        using var dir = new TempDir();
        ProbeMeta a = new() { Id = 0, Name = "a", Spec = "x:a" };
        ProbeMeta b = new() { Id = 3, Name = "b", Spec = "x:b", Args = [new ArgMeta("len", "s64", "rsi")] };
        string batched = dir.File("batched.parquet"), single = dir.File("single.parquet");
        var rows = new List<HitRecord>();
        for (int i = 0; i < 23; i++)
        {
            bool withArg = i % 7 == 3;
            rows.Add(new HitRecord
            {
                TimeNs = 1000 + i, Pid = 10, Tid = 11, ProbeId = withArg ? 3 : (i % 3 == 0 ? 3 : 0), DurationNs = -1, Comm = "w",
                Args = withArg ? [(long)i] : null,
            });
        }
        // Row groups of 5: batches cross row-group boundaries.
        var options = new TraceWriterOptions { RowGroupSize = 5, Probes = [a, b] };
        using (var writer = new TraceWriter(single, options))
        {
            foreach (HitRecord r in rows) writer.Append(r);
            writer.Complete(new TraceMetadata { Probes = [a, b] });
        }
        using (var writer = new TraceWriter(batched, options))
        {
            int start = 0;
            for (int i = 0; i <= rows.Count; i++)
            {
                if (i < rows.Count && rows[i].Args is null) continue;
                var run = rows.GetRange(start, i - start);
                writer.AppendEntries(run.Select(r => r.TimeNs).ToArray(), run.Select(r => r.ProbeId).ToArray(), 10, 11, "w");
                if (i < rows.Count) writer.Append(rows[i]);
                start = i + 1;
            }
            writer.Complete(new TraceMetadata { Probes = [a, b] });
        }
        Assert.Equal(Read(single), Read(batched));
        Assert.Equal(23, Read(batched).Count);
    }

    private static List<string> Read(string path)
    {
        var lines = new List<string>();
        using TraceReader reader = TraceReader.Open(path);
        foreach (TraceBatch batch in reader.ReadBatches())
        {
            for (int i = 0; i < batch.Count; i++)
            {
                object? len = batch.Args.TryGetValue("len", out Array? column) ? column.GetValue(i) : null;
                lines.Add($"{batch.TimeNs[i]} {batch.Pid[i]} {batch.Tid[i]} {batch.Probe[i]} {batch.Kind[i]} {batch.DurationNs[i]} {batch.Comm[i]} {len}");
            }
        }
        return lines;
    }
}
