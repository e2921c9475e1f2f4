namespace Uprec.Trace.Tests;

/// <summary>The direct decoder must give exactly what Parquet.Net gives, column by column.</summary>
public class FastPathTests
{
    internal static List<string> Dump(string path, bool fast)
    {
        bool saved = TraceReader.DisableFastPath;
        TraceReader.DisableFastPath = !fast;
        try
        {
            using TraceReader reader = TraceReader.Open(path);
            var lines = new List<string>();
            foreach (TraceBatch b in reader.ReadBatches())
            {
                for (int i = 0; i < b.Count; i++)
                {
                    string args = string.Join(",", b.Args.OrderBy(a => a.Key).Select(a => $"{a.Key}={a.Value.GetValue(i) ?? "null"}"));
                    lines.Add($"{b.TimeNs[i]} {b.Pid[i]} {b.Tid[i]} {b.Probe[i]} {b.Kind[i]} {b.DurationNs[i]?.ToString() ?? "null"} {b.Comm[i]} {args}");
                }
            }
            return lines;
        }
        finally
        {
            TraceReader.DisableFastPath = saved;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(1000)]
    public void SampleTraceDecodesIdentically(int rowGroupSize)
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        TraceRoundTripTests.WriteSample(path, rowGroupSize);
        List<string> slow = Dump(path, fast: false);
        Assert.Equal(TraceRoundTripTests.SampleHits().Length, slow.Count);
        Assert.Equal(slow, Dump(path, fast: true));
    }

    [Fact]
    public void SyntheticTraceWithDropsDecodesIdentically()
    {
        using var dir = new TempDir();
        string path = dir.File("s.parquet");
        new SyntheticTrace
        {
            Probes = [new SyntheticProbe("a", 3000, new LatencyModel.LogNormal(1000, 1)), new SyntheticProbe("b", 2000)],
            Processes = 3,
            ThreadsPerProcess = 5,
            DropEvery = 9,
            RowGroupSize = 777,
        }.Write(path);
        List<string> slow = Dump(path, fast: false);
        Assert.True(slow.Count > 4000);
        Assert.Equal(slow, Dump(path, fast: true));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AnUnknownKindIsAnErrorNamingIt(bool fast)
    {
        using var dir = new TempDir();
        string path = dir.File("k.parquet");
        new SyntheticTrace
        {
            Probes = [new SyntheticProbe("a", 500, new LatencyModel.Uniform(1, 100))],
            RowGroupSize = 100_000,
        }.Write(path);
        // The kind dictionary's "return" (a PLAIN byte array: 4-byte length, then the text) becomes
        // "rexurn"; Snappy keeps short literals as they are, so only that value changes.
        byte[] bytes = File.ReadAllBytes(path);
        byte[] needle = [6, 0, 0, 0, .. "return"u8];
        int at = bytes.AsSpan().IndexOf(needle);
        Assert.True(at > 0, "the kind dictionary was not found in the file");
        Assert.Equal(-1, bytes.AsSpan(at + 1).IndexOf(needle));
        bytes[at + 4 + 2] = (byte)'x';
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<TraceFormatException>(() => Dump(path, fast));
        Assert.Contains("unknown kind 'rexurn'", e.Message);
    }

    [Fact]
    public void EveryColumnTheWriterProducesTakesTheFastPath()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        TraceRoundTripTests.WriteSample(path, 3);
        // Other tests may decode through Parquet.Net at the same time; only this file's reads are counted.
        long before = TraceReader.FastPathFallbacks;
        List<string> rows = Dump(path, fast: true);
        Assert.Equal(TraceRoundTripTests.SampleHits().Length, rows.Count);
        Assert.Equal(before, TraceReader.FastPathFallbacks);
    }

    [Fact]
    public void CorruptPageDataIsAnErrorNotAFallback()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        TraceRoundTripTests.WriteSample(path, 100);
        byte[] bytes = File.ReadAllBytes(path);
        // Garble the first page's Snappy data (after the magic and the page header).
        for (int i = 20; i < 60; i++)
        {
            bytes[i] ^= 0x5A;
        }
        File.WriteAllBytes(path, bytes);
        using TraceReader reader = TraceReader.Open(path);
        var e = Assert.Throws<TraceFormatException>(() => reader.ReadRowGroup(0));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void RandomCorruptionIsAlwaysATraceFormatErrorOrAValidRead()
    {
        using var dir = new TempDir();
        string clean = dir.File("clean.parquet");
        new SyntheticTrace
        {
            Probes = [new SyntheticProbe("a", 300, new LatencyModel.Uniform(1, 5000)), new SyntheticProbe("b", 200)],
            RowGroupSize = 100,
        }.Write(clean);
        byte[] original = File.ReadAllBytes(clean);
        var rng = new Random(1234);
        string path = dir.File("corrupt.parquet");
        int errors = 0;
        for (int round = 0; round < 200; round++)
        {
            byte[] bytes = (byte[])original.Clone();
            int flips = 1 + rng.Next(8);
            for (int f = 0; f < flips; f++)
            {
                // Stay clear of the footer length and magic so the damage reaches the pages and footer body.
                bytes[rng.Next(4, bytes.Length - 8)] = (byte)rng.Next(256);
            }
            File.WriteAllBytes(path, bytes);
            try
            {
                using TraceReader reader = TraceReader.Open(path);
                foreach (TraceBatch b in reader.ReadBatches())
                {
                    Assert.Equal(b.Count, b.Probe.Length);
                }
            }
            catch (TraceFormatException e)
            {
                Assert.Contains(path, e.Message);
                errors++;
            }
        }
        // Most damage is detected; what is not (a flipped timestamp bit) still reads as a well-formed trace.
        Assert.True(errors > 50, $"only {errors} of 200 corruptions detected");
    }
}
