using HdrHistogram;

namespace Uprec.Reporting;

/// <summary>
/// Latency of one probe (or one probe in one task). Count, min, max and total are exact; percentiles come
/// from an HdrHistogram. Why not exact percentiles: they need every duration in memory (8 bytes a
/// return, 800 MB for 100M hits), which breaks the promise that report memory is bounded by one row
/// group. HdrHistogram keeps a fixed-size log-linear histogram whose reported value for any percentile is
/// within a relative error of 10^-digits of the exact one (0.1% at 3 digits, 1% at 2), clamped here to
/// the exact [min, max]. Durations above <see cref="HighestTrackable"/> (one hour) are recorded as one
/// hour in the histogram; min, max and total keep their exact values.
/// A log2 histogram (exact counts per power-of-two bucket, as bpftrace's hist()) is kept alongside.
/// </summary>
public sealed class LatencyAccumulator
{
    public const long HighestTrackable = 3_600_000_000_000;

    private readonly LongHistogram _histogram;
    private readonly long[] _log2 = new long[65];

    public LatencyAccumulator(int significantDigits = 3)
    {
        SignificantDigits = significantDigits;
        _histogram = new LongHistogram(HighestTrackable, significantDigits);
    }

    public int SignificantDigits { get; }
    public long Count { get; private set; }
    public long Min { get; private set; } = long.MaxValue;
    public long Max { get; private set; } = long.MinValue;
    /// <summary>Exact sum of durations (saturates at long.MaxValue, ~292 years).</summary>
    public long Total { get; private set; }
    /// <summary>The relative error bound of the percentiles: 10^-digits.</summary>
    public double RelativeError => Math.Pow(10, -SignificantDigits);

    public void Record(long durationNs)
    {
        if (durationNs < 0)
        {
            return;
        }
        Count++;
        Min = Math.Min(Min, durationNs);
        Max = Math.Max(Max, durationNs);
        Total = Total > long.MaxValue - durationNs ? long.MaxValue : Total + durationNs;
        _histogram.RecordValue(Math.Min(durationNs, HighestTrackable));
        _log2[Log2Bucket(durationNs)]++;
    }

    public void Add(LatencyAccumulator other)
    {
        if (other.Count == 0)
        {
            return;
        }
        Count += other.Count;
        Min = Math.Min(Min, other.Min);
        Max = Math.Max(Max, other.Max);
        Total = Total > long.MaxValue - other.Total ? long.MaxValue : Total + other.Total;
        _histogram.Add(other._histogram);
        for (int i = 0; i < _log2.Length; i++)
        {
            _log2[i] += other._log2[i];
        }
    }

    /// <summary>Bucket 0 holds 0; bucket k (k >= 1) holds [2^(k-1), 2^k).</summary>
    public static int Log2Bucket(long value) => value <= 0 ? 0 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)value);

    /// <summary>
    /// The value at percentile <paramref name="percentile"/> (0..100): the value of rank max(1, round(p/100 * n))
    /// among the sorted durations (HdrHistogram's definition), within the stated relative error.
    /// </summary>
    public long Percentile(double percentile)
    {
        if (Count == 0)
        {
            return 0;
        }
        long v = _histogram.GetValueAtPercentile(percentile);
        return Math.Clamp(v, Min, Max);
    }

    public LatencyStats? ToStats() => Count == 0
        ? null
        : new LatencyStats(Count, Min, Total / Count, Percentile(50), Percentile(90), Percentile(99), Percentile(99.9), Max, Total);

    public IReadOnlyList<HistogramBucket> Log2Histogram()
    {
        int first = Array.FindIndex(_log2, c => c > 0);
        if (first < 0)
        {
            return [];
        }
        int last = Array.FindLastIndex(_log2, c => c > 0);
        var buckets = new List<HistogramBucket>();
        for (int k = first; k <= last; k++)
        {
            long low = k == 0 ? 0 : 1L << (k - 1);
            long high = k == 0 ? 1 : k == 64 ? long.MaxValue : 1L << k;
            buckets.Add(new HistogramBucket(low, high, _log2[k]));
        }
        return buckets;
    }

    /// <summary>
    /// The recorded distribution as (value, count) steps in increasing value order, each value the
    /// histogram's representative for its bucket. Used by rank tests over two histograms.
    /// </summary>
    public IEnumerable<(long Value, long Count)> Buckets()
    {
        foreach (var v in _histogram.RecordedValues())
        {
            yield return (v.ValueIteratedTo, v.CountAddedInThisIterationStep);
        }
    }
}

/// <summary>Integer-nanosecond latency summary; mean is total / count rounded down.</summary>
public sealed record LatencyStats(long Count, long Min, long Mean, long P50, long P90, long P99, long P999, long Max, long Total);

/// <summary>A log2 histogram bucket [Low, High) and its exact count.</summary>
public sealed record HistogramBucket(long Low, long High, long Count);
