namespace Uprec.Reporting.Rendering;

/// <summary>
/// One header line and one row per probe; with --per-task/--per-process/--per-comm, one row per group
/// instead (a CSV file holds one table). Latency cells are empty where there is no latency.
/// </summary>
public sealed class CsvRenderer : IReportRenderer
{
    private const string LatencyHeader = "latency_count,min_ns,mean_ns,p50_ns,p90_ns,p99_ns,p999_ns,max_ns,total_ns";

    public void Render(Report report, TextWriter o)
    {
        if (!report.GroupingRequested)
        {
            o.WriteLine($"probe,count,lost,installed,{LatencyHeader}");
            foreach (ProbeSummary p in report.Probes)
            {
                o.WriteLine($"{Quote(p.Name)},{p.Count},{p.Lost},{(p.Installed ? "true" : "false")},{Latency(p.IsReturn ? p.Latency : null)}");
            }
            return;
        }
        string keys = report.GroupBy switch
        {
            GroupBy.Process => "pid,",
            GroupBy.Comm => "",
            _ => "pid,tid,",
        };
        o.WriteLine($"{keys}comm,probe,count,{LatencyHeader}");
        foreach (GroupSummary g in report.Groups)
        {
            string key = report.GroupBy switch
            {
                GroupBy.Process => $"{g.Pid},",
                GroupBy.Comm => "",
                _ => $"{g.Pid},{g.Tid},",
            };
            o.WriteLine($"{key}{Quote(g.Comm)},{Quote(g.Probe)},{g.Count},{Latency(g.Latency)}");
        }
    }

    private static string Latency(LatencyStats? l) => l is null
        ? ",,,,,,,,"
        : $"{l.Count},{l.Min},{l.Mean},{l.P50},{l.P90},{l.P99},{l.P999},{l.Max},{l.Total}";

    internal static string Quote(string s) =>
        s.IndexOfAny([',', '"', '\n', '\r']) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";
}
