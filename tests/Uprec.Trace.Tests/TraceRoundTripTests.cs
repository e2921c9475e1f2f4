namespace Uprec.Trace.Tests;

public class TraceRoundTripTests
{
    internal static readonly ProbeMeta[] Probes =
    [
        new() { Id = 0, Name = "work", Spec = "./prog:work%return", IsReturn = true, Installed = true, Count = 3,
            Args = [new ArgMeta("n", "u32", "arg1"), new ArgMeta("path", "string", "arg2")] },
        new() { Id = 1, Name = "alloc", Spec = "libc:malloc", Installed = true, Count = 2,
            Args = [new ArgMeta("size", "u64", "arg1"), new ArgMeta("n", "s64", "arg2")] },
        new() { Id = 2, Name = "never", Spec = "libfoo:bar", Installed = false, HitPath = "none" },
    ];

    internal static HitRecord[] SampleHits() =>
    [
        new() { TimeNs = 100, Pid = 10, Tid = 10, ProbeId = 0, Kind = HitKind.Entry, DurationNs = -1, Comm = "prog", Args = [7u, "/etc/x"] },
        new() { TimeNs = 150, Pid = 10, Tid = 11, ProbeId = 1, Kind = HitKind.Entry, DurationNs = -1, Comm = "worker", Args = [ulong.MaxValue, -5L] },
        new() { TimeNs = 180, Pid = 10, Tid = 10, ProbeId = 0, Kind = HitKind.Return, DurationNs = 80, Comm = "prog" },
        new() { TimeNs = 200, Pid = 10, Tid = 11, ProbeId = 0, Kind = HitKind.Entry, DurationNs = -1, Comm = "worker", Args = [8u, null] },
        new() { TimeNs = 260, Pid = 12, Tid = 12, ProbeId = 1, Kind = HitKind.Entry, DurationNs = -1, Comm = "child", Args = [16UL, 3L] },
        new() { TimeNs = 300, Pid = 10, Tid = 11, ProbeId = 0, Kind = HitKind.Return, DurationNs = 100, Comm = "worker" },
        new() { TimeNs = 310, Pid = 10, Tid = 10, ProbeId = 0, Kind = HitKind.Entry, DurationNs = -1, Comm = "prog", Args = [9u, "/tmp/y"] },
    ];

    internal static TraceMetadata SampleMetadata() => new()
    {
        CommandLine = ["uprec", "record", "-e", "./prog:work%return", "--", "./prog"],
        Probes = Probes,
        Tasks =
        [
            new TaskMeta { Pid = 10, Tid = 10, Comm = "prog", Exe = "/bin/prog", NsPid = [10, 1] },
            new TaskMeta { Pid = 10, Tid = 11, Comm = "worker", Ppid = 1 },
            new TaskMeta { Pid = 12, Tid = 12, Comm = "child", Ppid = 10 },
        ],
        Lost = 4,
        StartTimeNs = 50,
        EndTimeNs = 400,
        Outcome = "exit 0",
    };

    internal static void WriteSample(string path, int rowGroupSize)
    {
        using var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = rowGroupSize, Probes = Probes });
        foreach (HitRecord hit in SampleHits())
        {
            writer.Append(hit);
        }
        writer.Complete(SampleMetadata());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(1 << 20)]
    public void EveryColumnAndTheMetadataRoundTrip(int rowGroupSize)
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        WriteSample(path, rowGroupSize);

        using TraceReader reader = TraceReader.Open(path);
        HitRecord[] expected = SampleHits();
        Assert.Equal(expected.Length, reader.RowCount);
        Assert.Equal((expected.Length + rowGroupSize - 1) / rowGroupSize, reader.RowGroupCount);
        Assert.Equal(
            [new ArgColumn("n", ArgColumnType.Int64), new ArgColumn("path", ArgColumnType.String), new ArgColumn("size", ArgColumnType.UInt64)],
            reader.ArgColumns);

        var rows = new List<(long T, int Pid, int Tid, string Probe, HitKind Kind, long? D, string Comm, long? N, string? Path, ulong? Size)>();
        foreach (TraceBatch b in reader.ReadBatches())
        {
            var n = (long?[])b.Args["n"];
            var p = (string?[])b.Args["path"];
            var s = (ulong?[])b.Args["size"];
            for (int i = 0; i < b.Count; i++)
            {
                rows.Add((b.TimeNs[i], b.Pid[i], b.Tid[i], b.Probe[i], b.Kind[i], b.DurationNs[i], b.Comm[i], n[i], p[i], s[i]));
            }
        }
        Assert.Equal(expected.Length, rows.Count);
        string[] names = ["work", "alloc", "never"];
        for (int i = 0; i < expected.Length; i++)
        {
            HitRecord h = expected[i];
            Assert.Equal(h.TimeNs, rows[i].T);
            Assert.Equal(h.Pid, rows[i].Pid);
            Assert.Equal(h.Tid, rows[i].Tid);
            Assert.Equal(names[h.ProbeId], rows[i].Probe);
            Assert.Equal(h.Kind, rows[i].Kind);
            Assert.Equal(h.Kind == HitKind.Return ? h.DurationNs : null, rows[i].D);
            Assert.Equal(h.Comm, rows[i].Comm);
        }
        // Arguments land in the column of their name; other probes' rows are null there.
        Assert.Equal([7L, -5L, null, 8L, 3L, null, 9L], rows.Select(r => r.N));
        Assert.Equal(["/etc/x", null, null, null, null, null, "/tmp/y"], rows.Select(r => r.Path));
        Assert.Equal([null, ulong.MaxValue, null, null, 16UL, null, null], rows.Select(r => r.Size));

        TraceMetadata m = reader.Metadata;
        TraceMetadata e = SampleMetadata();
        Assert.Equal(TraceSchema.Version, m.SchemaVersion);
        Assert.Equal(e.CommandLine, m.CommandLine);
        Assert.Equal(e.Lost, m.Lost);
        Assert.Equal(e.Outcome, m.Outcome);
        Assert.Equal(e.StartTimeNs, m.StartTimeNs);
        Assert.Equal(e.EndTimeNs, m.EndTimeNs);
        Assert.Equal(e.Probes.Select(p => (p.Id, p.Name, p.Spec, p.IsReturn, p.Installed, p.Count, p.HitPath)),
            m.Probes.Select(p => (p.Id, p.Name, p.Spec, p.IsReturn, p.Installed, p.Count, p.HitPath)));
        Assert.Equal(e.Probes[0].Args, m.Probes[0].Args);
        Assert.Equal([10, 1], m.Tasks[0].NsPid);
        Assert.Equal(e.Tasks.Select(t => (t.Pid, t.Tid, t.Comm, t.Ppid)), m.Tasks.Select(t => (t.Pid, t.Tid, t.Comm, t.Ppid)));
    }

    [Fact]
    public void FooterJsonIsCamelCase()
    {
        string json = TraceMetadataJson.Serialize(SampleMetadata());
        Assert.Contains("\"schemaVersion\":1", json);
        Assert.Contains("\"commandLine\":", json);
        Assert.Contains("\"isReturn\":true", json);
        Assert.Contains("\"nsPid\":[10,1]", json);
    }

    [Fact]
    public void RequestedColumnsOnlyAreRead()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        WriteSample(path, 100);
        using TraceReader reader = TraceReader.Open(path);
        TraceBatch b = reader.ReadRowGroup(0, new HashSet<string> { TraceColumns.Probe, TraceColumns.DurationNs });
        Assert.True(b.Has(TraceColumns.Probe));
        Assert.True(b.Has(TraceColumns.DurationNs));
        Assert.False(b.Has(TraceColumns.TimeNs));
        Assert.False(b.Has("n"));
        Assert.Equal(["work", "alloc", "work", "work", "alloc", "work", "work"], b.Probe);
    }

    [Fact]
    public void ATraceWithNoHitsIsValid()
    {
        using var dir = new TempDir();
        string path = dir.File("empty-run.parquet");
        using (var writer = new TraceWriter(path, new TraceWriterOptions { Probes = Probes }))
        {
            writer.Flush();
            writer.Complete(SampleMetadata());
            Assert.Equal(0, writer.RowsWritten);
        }
        using TraceReader reader = TraceReader.Open(path);
        Assert.Equal(0, reader.RowCount);
        Assert.Empty(reader.ReadBatches());
        Assert.Equal(3, reader.Metadata.Probes.Count);
    }

    [Fact]
    public void FlushWritesARowGroupAndCountsRows()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        using (var writer = new TraceWriter(path, new TraceWriterOptions { Probes = Probes }))
        {
            HitRecord[] hits = SampleHits();
            writer.Append(hits[0]);
            writer.Append(hits[1]);
            writer.Flush();
            Assert.Equal(2, writer.RowsWritten);
            writer.Flush();
            writer.Append(hits[2]);
            Assert.Equal(2, writer.RowsWritten);
            writer.Complete(SampleMetadata());
            Assert.Equal(3, writer.RowsWritten);
        }
        using TraceReader reader = TraceReader.Open(path);
        Assert.Equal(2, reader.RowGroupCount);
        Assert.Equal(2, reader.RowGroupRows(0));
        Assert.Equal(1, reader.RowGroupRows(1));
    }

    [Fact]
    public void AnUnknownProbeIdIsWrittenUnderItsNumber()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        using (var writer = new TraceWriter(path, new TraceWriterOptions { Probes = Probes }))
        {
            writer.Append(new HitRecord { TimeNs = 1, Pid = 1, Tid = 1, ProbeId = 9, Comm = "x", Args = [1L] });
            writer.Complete(SampleMetadata());
        }
        using TraceReader reader = TraceReader.Open(path);
        TraceBatch b = reader.ReadRowGroup(0);
        Assert.Equal("#9", b.Probe[0]);
        Assert.Null(((long?[])b.Args["n"])[0]);
    }
}
