using System.Globalization;

namespace Uprec.Reporting.Rendering;

/// <summary>Human units for tables: durations with 3 significant digits, counts with thousands separators.</summary>
public static class Units
{
    public static string Duration(long ns)
    {
        if (ns < 1_000)
        {
            return ns.ToString(CultureInfo.InvariantCulture) + "ns";
        }
        (double value, string unit) = ns switch
        {
            < 1_000_000 => (ns / 1e3, "us"),
            < 1_000_000_000 => (ns / 1e6, "ms"),
            _ => (ns / 1e9, "s"),
        };
        string digits = value switch
        {
            < 10 => value.ToString("0.00", CultureInfo.InvariantCulture),
            < 100 => value.ToString("0.0", CultureInfo.InvariantCulture),
            _ => value.ToString("0", CultureInfo.InvariantCulture),
        };
        // Rounding can carry into the next unit (999.6us prints as 1000us); that is still exact enough to read.
        return digits + unit;
    }

    public static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>bpftrace-style short power-of-two bounds: 512, 1K, 2M, 4G.</summary>
    public static string Pow2(long v)
    {
        string[] suffix = ["", "K", "M", "G", "T", "P", "E"];
        int i = 0;
        while (v >= 1024 && v % 1024 == 0 && i < suffix.Length - 1)
        {
            v /= 1024;
            i++;
        }
        return v.ToString(CultureInfo.InvariantCulture) + suffix[i];
    }

    public static string Fit(string text, int width) =>
        text.Length <= width ? text : text[..(width - 2)] + "..";
}
