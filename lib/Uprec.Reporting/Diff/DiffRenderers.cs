using System.Globalization;
using System.Text;
using System.Text.Json;
using Uprec.Reporting.Rendering;

namespace Uprec.Reporting.Diff;

public interface IDiffRenderer
{
    void Render(DiffResult diff, TextWriter output);
}

public static class DiffRenderers
{
    public const string Names = "table, json, markdown";

    public static IDiffRenderer Create(string format) => format.Trim().ToLowerInvariant() switch
    {
        "table" => new DiffTableRenderer(),
        "json" => new DiffJsonRenderer(),
        "markdown" or "md" => new DiffMarkdownRenderer(),
        _ => throw new ReportException($"unknown format '{format}' (valid: {Names})"),
    };

    internal static readonly DiffMetric[] LatencyMetrics =
        [DiffMetric.Mean, DiffMetric.P50, DiffMetric.P90, DiffMetric.P99, DiffMetric.P999, DiffMetric.Max];

    internal static string MetricName(DiffMetric m) => m == DiffMetric.P999 ? "p99.9" : m.ToString().ToLowerInvariant();

    internal static string Relative(long b, long n) => b == 0
        ? (n == 0 ? "0.0%" : "new")
        : (100.0 * (n - b) / b).ToString("+0.0;-0.0;0.0", CultureInfo.InvariantCulture) + "%";

    internal static string Value(DiffMetric m, long v) => m == DiffMetric.Count ? Units.Count(v) : Units.Duration(v);

    internal static string Change(DiffMetric m, long b, long n)
    {
        long d = n - b;
        string sign = d > 0 ? "+" : d < 0 ? "-" : "";
        return sign + Value(m, Math.Abs(d));
    }

    internal static string P(double p) => p < 0.0001 ? "<0.0001" : p.ToString("0.0000", CultureInfo.InvariantCulture);

    internal static string Verdict(RuleOutcome o, double alpha) => o.Tripped ? "FAIL"
        : o.Crossed && o.PValue is null ? "ok (no latency samples)"
        : o.Crossed ? $"ok (not significant, p={P(o.PValue!.Value)} >= {alpha})"
        : "ok";
}

/// <summary>perf-like text; each probe block lists count and latency metrics with absolute and relative change.</summary>
public sealed class DiffTableRenderer : IDiffRenderer
{
    public void Render(DiffResult d, TextWriter o)
    {
        o.WriteLine($"# uprec diff: base {d.Base}");
        o.WriteLine($"#             new  {d.New}");
        o.WriteLine($"# latency changes are tested with a one-sided Mann-Whitney U over the histograms (alpha {d.Alpha})");
        o.WriteLine("#");
        o.WriteLine($"# {"probe / metric",-20} {"base",12} {"new",12} {"change",12} {"rel",9}");
        foreach (ProbeDiff p in d.Probes)
        {
            string test = p.MannWhitney is { } mw
                ? $"  (Mann-Whitney: p(new slower)={DiffRenderers.P(mw.PGreater)}, p(new faster)={DiffRenderers.P(mw.PLess)})"
                : "";
            o.WriteLine($"  {Units.Fit(p.Name, 20)}{test}");
            Row(o, p, DiffMetric.Count);
            if (p.Base.Latency is not null && p.New.Latency is not null)
            {
                foreach (DiffMetric m in DiffRenderers.LatencyMetrics)
                {
                    Row(o, p, m);
                }
            }
        }
        foreach (string name in d.OnlyInBase)
        {
            o.WriteLine($"  {name}: only in base");
        }
        foreach (string name in d.OnlyInNew)
        {
            o.WriteLine($"  {name}: only in new");
        }
        if (d.Rules.Count > 0)
        {
            o.WriteLine();
            o.WriteLine("# rules");
            foreach (RuleOutcome r in d.Outcomes)
            {
                o.WriteLine($"  {(r.Tripped ? "FAIL" : "ok  ")} {r.Rule.Text,-16} {Units.Fit(r.Probe, 20),-20} " +
                    $"{DiffRenderers.Value(r.Rule.Metric, r.BaseValue)} -> {DiffRenderers.Value(r.Rule.Metric, r.NewValue)} " +
                    $"({DiffRenderers.Relative(r.BaseValue, r.NewValue)})" +
                    (r.Tripped || !r.Crossed ? "" : " " + DiffRenderers.Verdict(r, d.Alpha)[3..]) +
                    (r.Tripped && r.PValue is double pv ? $" p={DiffRenderers.P(pv)}" : ""));
            }
            o.WriteLine(d.Regression ? "# result: REGRESSION" : "# result: ok");
        }
    }

    private static void Row(TextWriter o, ProbeDiff p, DiffMetric m)
    {
        long b = p.Value(p.Base, m), n = p.Value(p.New, m);
        o.WriteLine($"    {DiffRenderers.MetricName(m),-18} {DiffRenderers.Value(m, b),12} {DiffRenderers.Value(m, n),12} " +
            $"{DiffRenderers.Change(m, b, n),12} {DiffRenderers.Relative(b, n),9}");
    }
}

/// <summary>A PR-comment/CI-summary table: one row per probe and metric, then the rules with their verdicts.</summary>
public sealed class DiffMarkdownRenderer : IDiffRenderer
{
    public void Render(DiffResult d, TextWriter o)
    {
        o.WriteLine(d.Rules.Count == 0 ? "### uprec diff" : d.Regression ? "### uprec diff: regression" : "### uprec diff: ok");
        o.WriteLine();
        o.WriteLine($"base `{d.Base}`, new `{d.New}`. Latency rules need a one-sided Mann-Whitney U p-value below {d.Alpha}.");
        o.WriteLine();
        o.WriteLine("| probe | metric | base | new | change | rel | p (new slower) |");
        o.WriteLine("|:--|:--|--:|--:|--:|--:|--:|");
        foreach (ProbeDiff p in d.Probes)
        {
            var metrics = new List<DiffMetric> { DiffMetric.Count };
            if (p.Base.Latency is not null && p.New.Latency is not null)
            {
                metrics.AddRange(DiffRenderers.LatencyMetrics);
            }
            foreach (DiffMetric m in metrics)
            {
                long b = p.Value(p.Base, m), n = p.Value(p.New, m);
                string pv = m != DiffMetric.Count && p.MannWhitney is { } mw ? DiffRenderers.P(mw.PGreater) : "";
                o.WriteLine($"| {MarkdownRenderer.Escape(p.Name)} | {DiffRenderers.MetricName(m)} | {DiffRenderers.Value(m, b)} | " +
                    $"{DiffRenderers.Value(m, n)} | {DiffRenderers.Change(m, b, n)} | {DiffRenderers.Relative(b, n)} | {pv} |");
            }
        }
        if (d.OnlyInBase.Count + d.OnlyInNew.Count > 0)
        {
            o.WriteLine();
            foreach (string name in d.OnlyInBase)
            {
                o.WriteLine($"- `{name}`: only in base");
            }
            foreach (string name in d.OnlyInNew)
            {
                o.WriteLine($"- `{name}`: only in new");
            }
        }
        if (d.Rules.Count > 0)
        {
            o.WriteLine();
            o.WriteLine("| rule | probe | base | new | rel | verdict |");
            o.WriteLine("|:--|:--|--:|--:|--:|:--|");
            foreach (RuleOutcome r in d.Outcomes)
            {
                o.WriteLine($"| `{r.Rule.Text}` | {MarkdownRenderer.Escape(r.Probe)} | {DiffRenderers.Value(r.Rule.Metric, r.BaseValue)} | " +
                    $"{DiffRenderers.Value(r.Rule.Metric, r.NewValue)} | {DiffRenderers.Relative(r.BaseValue, r.NewValue)} | " +
                    $"{(r.Tripped ? "❌ " : "✅ ")}{DiffRenderers.Verdict(r, d.Alpha)} |");
            }
        }
    }
}

/// <summary>Compact JSON, integer nanoseconds, p-values as numbers.</summary>
public sealed class DiffJsonRenderer : IDiffRenderer
{
    public void Render(DiffResult d, TextWriter output)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("base", d.Base);
            w.WriteString("new", d.New);
            w.WriteNumber("alpha", d.Alpha);
            w.WriteBoolean("regression", d.Regression);
            w.WriteStartArray("probes");
            foreach (ProbeDiff p in d.Probes)
            {
                w.WriteStartObject();
                w.WriteString("name", p.Name);
                Side(w, "base", p.Base);
                Side(w, "new", p.New);
                if (p.MannWhitney is { } mw)
                {
                    w.WriteStartObject("mann_whitney");
                    w.WriteNumber("u", mw.U);
                    w.WriteNumber("z", Math.Round(mw.Z, 6));
                    w.WriteNumber("p_greater", mw.PGreater);
                    w.WriteNumber("p_less", mw.PLess);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("only_in_base");
            foreach (string s in d.OnlyInBase)
            {
                w.WriteStringValue(s);
            }
            w.WriteEndArray();
            w.WriteStartArray("only_in_new");
            foreach (string s in d.OnlyInNew)
            {
                w.WriteStringValue(s);
            }
            w.WriteEndArray();
            w.WriteStartArray("rules");
            foreach (RuleOutcome r in d.Outcomes)
            {
                w.WriteStartObject();
                w.WriteString("rule", r.Rule.Text);
                w.WriteString("probe", r.Probe);
                w.WriteNumber("base", r.BaseValue);
                w.WriteNumber("new", r.NewValue);
                w.WriteBoolean("crossed", r.Crossed);
                if (r.PValue is double pv)
                {
                    w.WriteNumber("p_value", pv);
                }
                w.WriteBoolean("tripped", r.Tripped);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        output.WriteLine(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }

    private static void Side(Utf8JsonWriter w, string name, ProbeSide s)
    {
        w.WriteStartObject(name);
        w.WriteNumber("count", s.Count);
        w.WriteNumber("lost", s.Lost);
        if (s.Latency is LatencyStats l)
        {
            Rendering.JsonRenderer.WriteLatency(w, l);
        }
        w.WriteEndObject();
    }
}
