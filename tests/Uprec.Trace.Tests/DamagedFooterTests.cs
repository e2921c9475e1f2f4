namespace Uprec.Trace.Tests;

/// <summary>
/// Data/footer-loop.parquet is a synthetic trace with a few bytes flipped (the corruption test's seed 99,
/// round 1789) on which Parquet.Net 6.1.0 decodes the footer forever. uprec must refuse it, not hang.
/// </summary>
public class DamagedFooterTests
{
    [Fact]
    public void AFooterParquetNetCannotFinishDecodingIsRefusedInBoundedTime()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Data", "footer-loop.parquet");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<TraceFormatException>(() => TraceReader.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Contains("damaged", e.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), $"took {watch.Elapsed}");
    }
}
