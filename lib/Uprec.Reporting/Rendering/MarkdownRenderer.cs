namespace Uprec.Reporting.Rendering;

/// <summary>GitHub-flavoured markdown tables (probes, then the grouping), for PR comments and CI summaries.</summary>
public sealed class MarkdownRenderer : IReportRenderer
{
    public void Render(Report report, TextWriter o)
    {
        o.WriteLine("| probe | count | lost | min | mean | p50 | p90 | p99 | p99.9 | max | total |");
        o.WriteLine("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        foreach (ProbeSummary p in report.Probes)
        {
            string lat = !p.Installed ? " not installed | | | | | | | |"
                : p.Latency is LatencyStats l
                    ? $" {D(l.Min)} | {D(l.Mean)} | {D(l.P50)} | {D(l.P90)} | {D(l.P99)} | {D(l.P999)} | {D(l.Max)} | {D(l.Total)} |"
                    : " | | | | | | | |";
            o.WriteLine($"| {Escape(p.Name)} | {Units.Count(p.Count)} | {Units.Count(p.Lost)} |{lat}");
        }
        o.WriteLine();
        string keys = report.GroupBy switch
        {
            GroupBy.Process => "| pid ",
            GroupBy.Comm => "",
            _ => "| pid | tid ",
        };
        string align = report.GroupBy switch
        {
            GroupBy.Process => "|--:",
            GroupBy.Comm => "",
            _ => "|--:|--:",
        };
        o.WriteLine($"{keys}| comm | probe | count | mean | p50 | p99 | max |");
        o.WriteLine($"{align}|:--|:--|--:|--:|--:|--:|--:|");
        foreach (GroupSummary g in report.Groups)
        {
            string key = report.GroupBy switch
            {
                GroupBy.Process => $"| {g.Pid} ",
                GroupBy.Comm => "",
                _ => $"| {g.Pid} | {g.Tid} ",
            };
            string lat = g.Latency is LatencyStats l ? $" {D(l.Mean)} | {D(l.P50)} | {D(l.P99)} | {D(l.Max)} |" : " | | | |";
            o.WriteLine($"{key}| {Escape(g.Comm)} | {Escape(g.Probe)} | {Units.Count(g.Count)} |{lat}");
        }
        if (report.Histograms)
        {
            foreach (ProbeSummary p in report.Probes.Where(p => p.Histogram is { Count: > 0 }))
            {
                o.WriteLine();
                o.WriteLine("```");
                TableRenderer.WriteHistogram(o, p.Name, p.Histogram!);
                o.WriteLine("```");
            }
        }
    }

    private static string D(long ns) => Units.Duration(ns);

    internal static string Escape(string s) => s.Replace("|", "\\|");
}
