namespace Uprec.Trace.Tests;

public class TraceReaderErrorTests
{
    private static TraceFormatException OpenFails(string path)
    {
        var e = Assert.Throws<TraceFormatException>(() => TraceReader.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void MissingFile()
    {
        using var dir = new TempDir();
        Assert.Contains("does not exist", OpenFails(dir.File("nope.parquet")).Message);
    }

    [Fact]
    public void EmptyFile()
    {
        using var dir = new TempDir();
        string path = dir.File("empty.parquet");
        File.WriteAllBytes(path, []);
        Assert.Contains("is empty", OpenFails(path).Message);
    }

    [Fact]
    public void NotParquet()
    {
        using var dir = new TempDir();
        string path = dir.File("text.parquet");
        File.WriteAllText(path, "this is a text file, not a trace at all");
        Assert.Contains("not a Parquet file", OpenFails(path).Message);
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.99)]
    public void TruncatedTrace(double keep)
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        TraceRoundTripTests.WriteSample(path, 2);
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(int)(bytes.Length * keep)]);
        OpenFails(path);
    }

    [Fact]
    public void FooterIntactButDataCorruptFailsWhileReadingNamingTheFile()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        TraceRoundTripTests.WriteSample(path, 100);
        byte[] bytes = File.ReadAllBytes(path);
        // Overwrite the first column chunk (right after the 4-byte magic) with garbage.
        for (int i = 4; i < 40; i++)
        {
            bytes[i] = 0xFF;
        }
        File.WriteAllBytes(path, bytes);
        using TraceReader reader = TraceReader.Open(path);
        var e = Assert.Throws<TraceFormatException>(() => reader.ReadBatches().ToList());
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void ParquetButNotUprec()
    {
        using var dir = new TempDir();
        string path = dir.File("other.parquet");
        var field = new Parquet.Schema.DataField<int>("x");
        using (FileStream fs = File.Create(path))
        {
            var writer = Parquet.ParquetWriter.CreateAsync(new Parquet.Schema.ParquetSchema(field), fs).GetAwaiter().GetResult();
            using (var group = writer.CreateRowGroup())
            {
                group.WriteAsync<int>(field, new[] { 1, 2, 3 }.AsMemory()).GetAwaiter().GetResult();
            }
            writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        Assert.Contains("not a uprec trace", OpenFails(path).Message);
    }

    [Fact]
    public void ADirectory()
    {
        using var dir = new TempDir();
        Assert.Contains("directory", OpenFails(dir.Path).Message);
    }
}
