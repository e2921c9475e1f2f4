using System.Globalization;

namespace Uprec.Reporting;

/// <summary>Durations as users type them: 500ns, 12us, 1.5ms, 2s, 1m; a bare number is nanoseconds.</summary>
public static class DurationText
{
    public static bool TryParse(string text, out long ns)
    {
        ns = 0;
        string t = text.Trim().ToLowerInvariant();
        (string unit, double scale)[] units = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)];
        double factor = 1;
        foreach ((string unit, double scale) in units)
        {
            if (t.EndsWith(unit, StringComparison.Ordinal) && (unit != "s" || !t.EndsWith("ns") && !t.EndsWith("us") && !t.EndsWith("ms") && !t.EndsWith("µs")))
            {
                factor = scale;
                t = t[..^unit.Length];
                break;
            }
        }
        if (!double.TryParse(t, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value) || value * factor > long.MaxValue)
        {
            return false;
        }
        ns = (long)Math.Round(value * factor);
        return true;
    }

    public static long Parse(string text, string what) => TryParse(text, out long ns)
        ? ns
        : throw new ReportException($"{what}: '{text}' is not a duration (examples: 500ns, 12us, 1.5ms, 2s)");
}
