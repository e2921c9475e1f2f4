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

    /// <summary>
    /// Row memory reserved in the background (what the in-process drain asks for): rows appended before
    /// it is used move over, captures included, and the second reserved buffer serves the next row
    /// group; the file is the same as without a reservation, in row groups of the configured size.
    /// </summary>
    [Fact]
    public void ReservedMemoryTakesOverBufferedRowsAndChangesNothingInTheFile()
    {
        using var dir = new TempDir();
        ProbeMeta a = new() { Id = 0, Name = "a", Spec = "x:a" };
        ProbeMeta b = new() { Id = 3, Name = "b", Spec = "x:b", Args = [new ArgMeta("len", "s64", "rsi")] };
        var rows = Enumerable.Range(0, 7000).Select(i => new HitRecord
        {
            TimeNs = 5000 + i, Pid = 10, Tid = 11 + i / 1000, ProbeId = i % 4 == 1 ? 3 : 0, DurationNs = -1, Comm = "w",
            Args = i % 4 == 1 ? [(long)i * 3] : null,
        }).ToList();
        // Larger than a buffer's first size (1024 rows), so the reservation is not moot.
        var options = new TraceWriterOptions { RowGroupSize = 3000, Probes = [a, b] };
        string plain = dir.File("plain.parquet"), reserved = dir.File("reserved.parquet");
        using (var writer = new TraceWriter(plain, options))
        {
            foreach (HitRecord r in rows) writer.Append(r);
            writer.Complete(new TraceMetadata { Probes = [a, b] });
        }
        using (var writer = new TraceWriter(reserved, options))
        {
            for (int i = 0; i < 1500; i++) writer.Append(rows[i]);
            writer.Reserve();
            for (int i = 1500; i < 1600; i++) writer.Append(rows[i]);
            writer.UseReserved();
            writer.UseReserved(); // a second call changes nothing
            for (int i = 1600; i < rows.Count; i++) writer.Append(rows[i]);
            writer.Complete(new TraceMetadata { Probes = [a, b] });
        }
        Assert.Equal(Read(plain), Read(reserved));
        List<string> lines = Read(reserved);
        Assert.Equal(7000, lines.Count);
        Assert.EndsWith(" 3", lines[1], StringComparison.Ordinal);       // a capture appended before the reservation
        Assert.EndsWith(" 4503", lines[1501], StringComparison.Ordinal); // and one between it and its use
        using TraceReader reader = TraceReader.Open(reserved);
        Assert.Equal([3000, 3000, 1000], reader.ReadBatches().Select(batch => batch.Count));
    }

    /// <summary>
    /// Returns in batches (TraceWriter.AppendReturns): kind, duration and the return value in the
    /// probe's retval column, as single appends of return HitRecords whose last argument is rax; a
    /// probe with a capture before its retval, and one with a capture only (its rows have no retval).
    /// </summary>
    [Fact]
    public void ReturnBatchesReadBackLikeSingleAppends()
    {
        using var dir = new TempDir();
        ProbeMeta r = new() { Id = 1, Name = "r", Spec = "x:r%return", IsReturn = true, Args = [new ArgMeta("retval", "s64", "rax")] };
        ProbeMeta c = new()
        {
            Id = 2, Name = "c", Spec = "x:c%return", IsReturn = true, Args = [new ArgMeta("len", "s64", "rsi"), new ArgMeta("retval", "s64", "rax")],
        };
        ProbeMeta e = new() { Id = 4, Name = "e", Spec = "x:e", Args = [new ArgMeta("len", "s64", "rsi")] };
        string batched = dir.File("batched.parquet"), single = dir.File("single.parquet");
        var rows = new List<HitRecord>();
        for (int i = 0; i < 17; i++)
        {
            int id = i % 3 == 0 ? 1 : i % 3 == 1 ? 2 : 4;
            object?[] args = id == 4 ? [] : id == 1 ? [(long)(-i)] : [null, (long)(i * 1000)];
            rows.Add(new HitRecord
            {
                TimeNs = 5000 + i, Pid = 20, Tid = 21, ProbeId = id, Kind = HitKind.Return, DurationNs = 7 * i, Comm = "t", Args = args,
            });
        }
        var options = new TraceWriterOptions { RowGroupSize = 4, Probes = [r, c, e] };
        using (var writer = new TraceWriter(single, options))
        {
            foreach (HitRecord h in rows) writer.Append(h);
            writer.Complete(new TraceMetadata { Probes = [r, c, e] });
        }
        using (var writer = new TraceWriter(batched, options))
        {
            writer.AppendReturns(rows.Select(h => h.TimeNs).ToArray(), rows.Select(h => h.ProbeId).ToArray(), rows.Select(h => h.DurationNs).ToArray(),
                rows.Select(h => h.Args!.Length == 0 ? 0L : (long)h.Args[^1]!).ToArray(), 20, 21, "t");
            writer.Complete(new TraceMetadata { Probes = [r, c, e] });
        }
        // Probe e has no retval column: its rows keep len empty both ways, and its "return value" goes nowhere.
        Assert.Equal(Read(single, "retval"), Read(batched, "retval"));
        Assert.Equal(Read(single, "len"), Read(batched, "len"));
        Assert.Contains(Read(batched, "retval"), line => line.EndsWith(" -3", StringComparison.Ordinal));
        Assert.Equal(17, Read(batched, "retval").Count);
    }

    private static List<string> Read(string path, string argument = "len")
    {
        var lines = new List<string>();
        using TraceReader reader = TraceReader.Open(path);
        foreach (TraceBatch batch in reader.ReadBatches())
        {
            for (int i = 0; i < batch.Count; i++)
            {
                object? value = batch.Args.TryGetValue(argument, out Array? column) ? column.GetValue(i) : null;
                lines.Add($"{batch.TimeNs[i]} {batch.Pid[i]} {batch.Tid[i]} {batch.Probe[i]} {batch.Kind[i]} {batch.DurationNs[i]} {batch.Comm[i]} {value}");
            }
        }
        return lines;
    }
}
