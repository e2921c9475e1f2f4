using System.Text;
using System.Text.Json;

namespace Uprec.Reporting.Rendering;

/// <summary>
/// The DESIGN.md shape, compact, integer nanoseconds:
/// {"probes":[{"name","count","lost","installed","latency_ns":{...}?,"histogram":[...]?}],
///  "tasks":[{"pid","tid","comm","probe","count","latency_ns"?}], "processes"|"comms": [...] when grouped so}.
/// latency_ns appears only for %return probes that returned at least once.
/// </summary>
public sealed class JsonRenderer : IReportRenderer
{
    public void Render(Report report, TextWriter output)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("probes");
            foreach (ProbeSummary p in report.Probes)
            {
                w.WriteStartObject();
                w.WriteString("name", p.Name);
                w.WriteNumber("count", p.Count);
                w.WriteNumber("lost", p.Lost);
                w.WriteBoolean("installed", p.Installed);
                if (p.IsReturn && p.Latency is LatencyStats l)
                {
                    WriteLatency(w, l);
                }
                if (p.Histogram is { } hist)
                {
                    w.WriteStartArray("histogram");
                    foreach (HistogramBucket b in hist)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("low", b.Low);
                        w.WriteNumber("high", b.High);
                        w.WriteNumber("count", b.Count);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            WriteGroups(w, "tasks", report.Tasks, GroupBy.Task);
            if (report.GroupBy == GroupBy.Process)
            {
                WriteGroups(w, "processes", report.Groups, GroupBy.Process);
            }
            else if (report.GroupBy == GroupBy.Comm)
            {
                WriteGroups(w, "comms", report.Groups, GroupBy.Comm);
            }
            w.WriteEndObject();
        }
        output.WriteLine(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }

    private static void WriteGroups(Utf8JsonWriter w, string name, IReadOnlyList<GroupSummary> groups, GroupBy by)
    {
        w.WriteStartArray(name);
        foreach (GroupSummary g in groups)
        {
            w.WriteStartObject();
            if (by != GroupBy.Comm)
            {
                w.WriteNumber("pid", g.Pid ?? 0);
            }
            if (by == GroupBy.Task)
            {
                w.WriteNumber("tid", g.Tid ?? 0);
            }
            w.WriteString("comm", g.Comm);
            w.WriteString("probe", g.Probe);
            w.WriteNumber("count", g.Count);
            if (g.Latency is LatencyStats l)
            {
                WriteLatency(w, l);
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    /// <summary>The DESIGN.md latency_ns object; diff's JSON uses it too, so the two shapes stay one.</summary>
    internal static void WriteLatency(Utf8JsonWriter w, LatencyStats l)
    {
        w.WriteStartObject("latency_ns");
        w.WriteNumber("count", l.Count);
        w.WriteNumber("min", l.Min);
        w.WriteNumber("mean", l.Mean);
        w.WriteNumber("p50", l.P50);
        w.WriteNumber("p90", l.P90);
        w.WriteNumber("p99", l.P99);
        w.WriteNumber("p999", l.P999);
        w.WriteNumber("max", l.Max);
        w.WriteNumber("total", l.Total);
        w.WriteEndObject();
    }
}
