namespace Uprec.Trace.Tests;

public class TraceWriterFileTests
{
    [Fact]
    public void NothingAppearsAtThePathUntilComplete()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        using var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = 2, Probes = TraceRoundTripTests.Probes });
        foreach (HitRecord hit in TraceRoundTripTests.SampleHits())
        {
            writer.Append(hit);
        }
        writer.Flush();
        Assert.False(File.Exists(path));
        // The rows so far live in one hidden temporary file next to the target.
        string temp = Assert.Single(Directory.GetFiles(dir.Path));
        Assert.StartsWith(".t.parquet.", Path.GetFileName(temp));

        writer.Complete(TraceRoundTripTests.SampleMetadata());
        Assert.Equal([path], Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void CompleteReplacesAnOldFileAtomically()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        File.WriteAllText(path, "old contents");
        using (var writer = new TraceWriter(path, new TraceWriterOptions { Probes = TraceRoundTripTests.Probes }))
        {
            writer.Append(TraceRoundTripTests.SampleHits()[0]);
            writer.Flush();
            Assert.Equal("old contents", File.ReadAllText(path));
            writer.Complete(TraceRoundTripTests.SampleMetadata());
        }
        using TraceReader reader = TraceReader.Open(path);
        Assert.Equal(1, reader.RowCount);
    }

    [Fact]
    public void DisposeWithoutCompleteLeavesNoFileAndKeepsTheOldOne()
    {
        using var dir = new TempDir();
        string fresh = dir.File("fresh.parquet");
        string existing = dir.File("existing.parquet");
        File.WriteAllText(existing, "old");
        foreach (string path in new[] { fresh, existing })
        {
            using var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = 1, Probes = TraceRoundTripTests.Probes });
            writer.Append(TraceRoundTripTests.SampleHits()[0]);
            writer.Append(TraceRoundTripTests.SampleHits()[1]);
        }
        Assert.False(File.Exists(fresh));
        Assert.Equal("old", File.ReadAllText(existing));
        Assert.Equal([existing], Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void AMissingDirectoryFailsAtConstructionNamingThePath()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "no-such-dir", "t.parquet");
        var e = Assert.Throws<TraceFormatException>(() => new TraceWriter(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("does not exist", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AnUnwritableDirectoryFailsAtConstruction()
    {
        if (Environment.UserName == "root")
        {
            // root ignores directory permissions, so the only honest check is that writing works.
            using var rootDir = new TempDir();
            using var w = new TraceWriter(rootDir.File("t.parquet"));
            return;
        }
        using var dir = new TempDir();
        string locked = Path.Combine(dir.Path, "locked");
        Directory.CreateDirectory(locked);
        File.SetUnixFileMode(locked, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            string path = Path.Combine(locked, "t.parquet");
            var e = Assert.Throws<TraceFormatException>(() => new TraceWriter(path));
            Assert.Contains(path, e.Message);
        }
        finally
        {
            File.SetUnixFileMode(locked, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    [Fact]
    public void AppendAfterCompleteIsRefused()
    {
        using var dir = new TempDir();
        using var writer = new TraceWriter(dir.File("t.parquet"), new TraceWriterOptions { Probes = TraceRoundTripTests.Probes });
        writer.Complete(TraceRoundTripTests.SampleMetadata());
        Assert.Throws<InvalidOperationException>(() => writer.Append(TraceRoundTripTests.SampleHits()[0]));
    }

    [Fact]
    public void AnArgumentNamedLikeAFixedColumnIsRefused()
    {
        using var dir = new TempDir();
        ProbeMeta bad = new() { Id = 0, Name = "p", Spec = "x:p", Args = [new ArgMeta("pid", "u32", "arg1")] };
        var e = Assert.Throws<TraceFormatException>(() => new TraceWriter(dir.File("t.parquet"), new TraceWriterOptions { Probes = [bad] }));
        Assert.Contains("'pid'", e.Message);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }
}
