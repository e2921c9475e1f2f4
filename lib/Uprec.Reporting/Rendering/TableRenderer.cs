namespace Uprec.Reporting.Rendering;

/// <summary>
/// perf-like text: a header of '#' lines, the probe table, then the per-task (or process/comm) table,
/// then log2 histograms when asked. Every line fits in 100 columns.
/// </summary>
public sealed class TableRenderer : IReportRenderer
{
    private const int BarWidth = 40;

    public void Render(Report report, TextWriter o)
    {
        o.WriteLine($"# uprec report: {report.Inputs.Count} trace(s), {Units.Count(report.RowsRead)} rows read, {Units.Count(report.RowsMatched)} used");
        o.WriteLine($"# latency percentiles within {report.PercentileError * 100:0.#}% (HdrHistogram); count, min, max, mean, total exact");
        o.WriteLine("#");
        o.WriteLine($"# {"probe",-16} {"count",10} {"lost",5} {"min",7} {"mean",7} {"p50",7} {"p90",7} {"p99",7} {"p99.9",7} {"max",7} {"total",7}");
        foreach (ProbeSummary p in report.Probes)
        {
            string head = $"  {Units.Fit(p.Name, 16),-16} {Units.Count(p.Count),10} {Units.Count(p.Lost),5}";
            if (!p.Installed)
            {
                o.WriteLine($"{head} not installed");
            }
            else if (p.Latency is LatencyStats l)
            {
                o.WriteLine($"{head} {D(l.Min)} {D(l.Mean)} {D(l.P50)} {D(l.P90)} {D(l.P99)} {D(l.P999)} {D(l.Max)} {D(l.Total)}");
            }
            else
            {
                o.WriteLine(p.IsReturn ? $"{head} no returns" : head);
            }
        }

        o.WriteLine();
        string keyTitle = report.GroupBy switch
        {
            GroupBy.Process => "pid",
            GroupBy.Comm => "",
            _ => "pid/tid",
        };
        o.WriteLine($"# {keyTitle,-15} {"comm",-16} {"probe",-16} {"count",10} {"mean",7} {"p50",7} {"p99",7} {"max",7}");
        foreach (GroupSummary g in report.Groups)
        {
            string key = report.GroupBy switch
            {
                GroupBy.Process => $"{g.Pid}",
                GroupBy.Comm => "",
                _ => $"{g.Pid}/{g.Tid}",
            };
            string line = $"  {key,-15} {Units.Fit(g.Comm, 16),-16} {Units.Fit(g.Probe, 16),-16} {Units.Count(g.Count),10}";
            if (g.Latency is LatencyStats l)
            {
                line += $" {D(l.Mean)} {D(l.P50)} {D(l.P99)} {D(l.Max)}";
            }
            o.WriteLine(line.TrimEnd());
        }

        if (report.Histograms)
        {
            foreach (ProbeSummary p in report.Probes.Where(p => p.Histogram is { Count: > 0 }))
            {
                o.WriteLine();
                WriteHistogram(o, p.Name, p.Histogram!);
            }
        }
    }

    private static string D(long ns) => $"{Units.Duration(ns),7}";

    /// <summary>bpftrace's @hist layout: "[lo, hi)  count |@@@@   |", the bar scaled to the largest bucket.</summary>
    internal static void WriteHistogram(TextWriter o, string name, IReadOnlyList<HistogramBucket> buckets)
    {
        o.WriteLine($"@{name} latency (ns):");
        long max = buckets.Max(b => b.Count);
        foreach (HistogramBucket b in buckets)
        {
            string range = b.Low == 0 && b.High == 1 ? "[0]" : b.High == b.Low * 2 && b.Low == 1 ? "[1]" : $"[{Units.Pow2(b.Low)}, {Units.Pow2(b.High)})";
            int bar = max == 0 ? 0 : (int)(b.Count * BarWidth / max);
            o.WriteLine($"{range,-16} {b.Count,12} |{new string('@', bar),-BarWidth}|");
        }
    }
}
