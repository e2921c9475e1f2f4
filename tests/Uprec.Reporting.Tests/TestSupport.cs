using Uprec.Trace;

namespace Uprec.Reporting.Tests;

public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "uprec-report-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Ground truth computed directly from a synthetic trace's hits, independently of the report code.</summary>
public static class Truth
{
    /// <summary>The exact value at uprec's rank for percentile p: max(1, round(p/100 * n)), 1-based.</summary>
    public static long Percentile(long[] sorted, double p)
    {
        long rank = Math.Max(1, (long)(p / 100 * sorted.Length + 0.5));
        return sorted[rank - 1];
    }

    public static long[] Durations(IEnumerable<HitRecord> hits, int probeId) =>
        hits.Where(h => h.ProbeId == probeId && h.Kind == HitKind.Return).Select(h => h.DurationNs).Order().ToArray();

    /// <summary>|actual - exact| within the relative bound (plus 1 ns for integer rounding).</summary>
    public static void Near(long exact, long actual, double relative)
    {
        Assert.True(Math.Abs(actual - exact) <= exact * relative + 1, $"expected {exact} within {relative:P2}, got {actual}");
    }
}
