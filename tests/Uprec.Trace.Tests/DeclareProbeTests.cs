namespace Uprec.Trace.Tests;

/// <summary>
/// Probes found while recording (a glob over a library resolved when it is first mapped) are declared
/// to the writer late: their rows carry their names, and captures keep only names that have a column.
/// </summary>
public class DeclareProbeTests
{
    [Fact]
    public void LateProbesKeepTheirNamesAndKnownArgumentColumns()
    {
        using var dir = new TempDir();
        string path = dir.File("late.parquet");
        ProbeMeta early = new() { Id = 0, Name = "early", Spec = "x:early", Args = [new ArgMeta("len", "u32", "rsi")] };
        ProbeMeta late = new()
        {
            Id = 7, Name = "late", Spec = "lib:l*",
            Args = [new ArgMeta("nocolumn", "s64", "rdx"), new ArgMeta("len", "u32", "rsi")],
        };
        using (var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = 4, Probes = [early] }))
        {
            for (int i = 0; i < 5; i++)
                writer.Append(new HitRecord { TimeNs = i, Pid = 1, Tid = 1, ProbeId = 0, DurationNs = -1, Comm = "c", Args = [(long)i] });
            writer.DeclareProbe(late);
            for (int i = 5; i < 9; i++)
                writer.Append(new HitRecord { TimeNs = i, Pid = 1, Tid = 1, ProbeId = 7, DurationNs = -1, Comm = "c", Args = [(long)-1, (long)i] });
            writer.Complete(new TraceMetadata { Probes = [early, late] });
        }

        var probes = new List<string>();
        var lens = new List<long?>();
        using (TraceReader reader = TraceReader.Open(path))
        {
            Assert.Equal(["len"], reader.ArgColumns.Select(c => c.Name));
            foreach (TraceBatch b in reader.ReadBatches())
            {
                for (int i = 0; i < b.Count; i++)
                {
                    probes.Add(b.Probe[i]);
                    lens.Add(b.Args["len"] is long?[] l ? l[i] : (long?)((ulong?[])b.Args["len"])[i]);
                }
            }
        }
        Assert.Equal([.. Enumerable.Repeat("early", 5), .. Enumerable.Repeat("late", 4)], probes);
        Assert.Equal(Enumerable.Range(0, 9).Select(i => (long?)i), lens);
    }
}
