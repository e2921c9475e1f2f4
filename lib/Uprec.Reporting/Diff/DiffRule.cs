using System.Globalization;
using System.Text.RegularExpressions;

namespace Uprec.Reporting.Diff;

public enum DiffMetric
{
    Count,
    Min,
    Mean,
    P50,
    P90,
    P99,
    P999,
    Max,
    Total,
}

/// <summary>
/// A --fail-on rule: <c>[PROBE:]METRIC OP THRESHOLD</c>, e.g. <c>count &gt; 5%</c>, <c>p99 &gt; 10%</c>,
/// <c>mean &gt; 200us</c>, <c>work:p50 &gt; 1ms</c>, <c>count &lt; -20%</c>. The left side is the change from
/// BASE to NEW: relative (THRESHOLD ends in %) or absolute (a duration for latency metrics, a number for
/// count). It applies to every probe present in both traces, or to PROBE only.
/// </summary>
public sealed partial record DiffRule(string Text, string? Probe, DiffMetric Metric, string Op, double Threshold, bool Relative)
{
    public bool IsLatency => Metric != DiffMetric.Count;

    [GeneratedRegex(@"^\s*(?:(?<probe>[^:\s]+)\s*:\s*)?(?<metric>[A-Za-z0-9.]+)\s*(?<op>>=|<=|>|<)\s*(?<value>[+-]?[0-9][^\s]*)\s*$")]
    private static partial Regex Pattern();

    public static DiffRule Parse(string text)
    {
        Match m = Pattern().Match(text);
        if (!m.Success)
        {
            throw new ReportException($"rule '{text}' is not METRIC OP THRESHOLD (examples: 'count > 5%', 'p99 > 10%', 'mean > 200us')");
        }
        DiffMetric metric = m.Groups["metric"].Value.ToLowerInvariant() switch
        {
            "count" => DiffMetric.Count,
            "min" => DiffMetric.Min,
            "mean" => DiffMetric.Mean,
            "p50" or "median" => DiffMetric.P50,
            "p90" => DiffMetric.P90,
            "p99" => DiffMetric.P99,
            "p999" or "p99.9" => DiffMetric.P999,
            "max" => DiffMetric.Max,
            "total" => DiffMetric.Total,
            string other => throw new ReportException(
                $"rule '{text}': unknown metric '{other}' (valid: count, min, mean, p50, p90, p99, p999, max, total)"),
        };
        string value = m.Groups["value"].Value;
        string? probe = m.Groups["probe"].Success ? m.Groups["probe"].Value : null;
        if (value.EndsWith('%'))
        {
            if (!double.TryParse(value[..^1], NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double pct))
            {
                throw new ReportException($"rule '{text}': '{value}' is not a percentage");
            }
            return new DiffRule(text.Trim(), probe, metric, m.Groups["op"].Value, pct, Relative: true);
        }
        bool negative = value.StartsWith('-');
        string magnitude = value.TrimStart('+', '-');
        double threshold;
        if (metric == DiffMetric.Count)
        {
            if (!long.TryParse(magnitude, NumberStyles.None, CultureInfo.InvariantCulture, out long n))
            {
                throw new ReportException($"rule '{text}': a count threshold is a number of calls or a percentage, not '{value}'");
            }
            threshold = n;
        }
        else
        {
            if (!DurationText.TryParse(magnitude, out long ns) || magnitude.All(char.IsAsciiDigit))
            {
                throw new ReportException($"rule '{text}': a latency threshold needs a unit or %, e.g. 200us, 1ms, 10% (got '{value}')");
            }
            threshold = ns;
        }
        return new DiffRule(text.Trim(), probe, metric, m.Groups["op"].Value, negative ? -threshold : threshold, Relative: false);
    }

    /// <summary>Whether the change crosses the threshold (significance is checked separately for latency).</summary>
    public bool Crosses(long baseValue, long newValue)
    {
        double change = Relative
            ? (baseValue == 0 ? (newValue == 0 ? 0 : double.PositiveInfinity * Math.Sign(newValue)) : 100.0 * (newValue - baseValue) / baseValue)
            : newValue - baseValue;
        return Op switch
        {
            ">" => change > Threshold,
            ">=" => change >= Threshold,
            "<" => change < Threshold,
            _ => change <= Threshold,
        };
    }

    /// <summary>A rule looking for increases needs NEW significantly greater; one looking for decreases, significantly less.</summary>
    public bool LooksForIncrease => Op is ">" or ">=";
}
