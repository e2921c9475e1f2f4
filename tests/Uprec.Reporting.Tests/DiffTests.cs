using Uprec.Reporting.Diff;
using Uprec.Trace;

namespace Uprec.Reporting.Tests;

public class DiffTests
{
    private static SyntheticTrace Spec(long calls = 20_000, double median = 10_000, int seed = 1, double sigma = 0.5) => new()
    {
        Probes =
        [
            new SyntheticProbe("work", calls, new LatencyModel.LogNormal(median, sigma)),
            new SyntheticProbe("alloc", calls / 2),
        ],
        Seed = seed,
        RowGroupSize = 8192,
    };

    private static DiffResult Diff(TempDir dir, SyntheticTrace a, SyntheticTrace b, params string[] rules)
    {
        a.Write(dir.File("base.parquet"));
        b.Write(dir.File("new.parquet"));
        return DiffEngine.Run(new DiffRequest { Base = dir.File("base.parquet"), New = dir.File("new.parquet"), Rules = rules });
    }

    private static readonly string[] Gate = ["count > 5%", "p99 > 10%", "p50 > 10%", "mean > 2us"];

    [Fact]
    public void IdenticalTracesPass()
    {
        using var dir = new TempDir();
        DiffResult d = Diff(dir, Spec(), Spec(), Gate);
        Assert.False(d.Regression);
        Assert.All(d.Outcomes, o => Assert.False(o.Crossed));
        ProbeDiff work = d.Probes.Single(p => p.Name == "work");
        Assert.Equal(work.Base, work.New);
        // Identical samples: U sits at its mean, neither direction is significant.
        Assert.True(work.MannWhitney!.PGreater > 0.4 && work.MannWhitney.PLess > 0.4);
    }

    [Fact]
    public void FiftyPercentMoreCallsTripsTheCountRule()
    {
        using var dir = new TempDir();
        DiffResult d = Diff(dir, Spec(calls: 20_000), Spec(calls: 30_000), "count > 5%");
        Assert.True(d.Regression);
        Assert.Equal(["alloc", "work"], d.Outcomes.Where(o => o.Tripped).Select(o => o.Probe).Order());
        RuleOutcome work = d.Outcomes.Single(o => o.Probe == "work");
        Assert.Equal((20_000, 30_000), (work.BaseValue, work.NewValue));
        Assert.Null(work.PValue);

        Assert.False(Diff(dir, Spec(calls: 20_000), Spec(calls: 20_800), "count > 5%").Regression);
        Assert.True(Diff(dir, Spec(calls: 20_000), Spec(calls: 20_800), "count > 500").Regression);
        Assert.True(Diff(dir, Spec(calls: 20_000), Spec(calls: 10_000), "count < -20%").Regression);
    }

    [Fact]
    public void AShiftedLatencyDistributionTrips()
    {
        using var dir = new TempDir();
        DiffResult d = Diff(dir, Spec(median: 10_000), Spec(median: 13_000, seed: 2), Gate);
        Assert.True(d.Regression);
        string[] tripped = d.Outcomes.Where(o => o.Tripped).Select(o => o.Rule.Text).ToArray();
        Assert.Equal(["p99 > 10%", "p50 > 10%", "mean > 2us"], tripped);
        Assert.All(d.Outcomes.Where(o => o.Tripped), o => Assert.True(o.PValue < 1e-6));
        Assert.DoesNotContain("count > 5%", tripped);

        // The same shift downwards is an improvement: nothing trips, but a '<' rule sees it.
        DiffResult faster = Diff(dir, Spec(median: 13_000, seed: 2), Spec(median: 10_000), [.. Gate, "p50 < -10%"]);
        Assert.Equal(["p50 < -10%"], faster.Outcomes.Where(o => o.Tripped).Select(o => o.Rule.Text));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void TheSameDistributionResampledPasses(int seed)
    {
        using var dir = new TempDir();
        DiffResult d = Diff(dir, Spec(seed: 1), Spec(seed: seed), Gate);
        Assert.False(d.Regression);
    }

    [Fact]
    public void ACrossedThresholdOnTooFewSamplesIsNotSignificant()
    {
        using var dir = new TempDir();
        // Six calls a side: the p99 jumps by far more than 10%, but six samples cannot show it is real.
        DiffResult d = Diff(dir, Spec(calls: 6, median: 10_000, sigma: 0.3), Spec(calls: 6, median: 12_000, seed: 5, sigma: 0.3), "p99 > 10%");
        RuleOutcome o = d.Outcomes.Single();
        Assert.True(o.Crossed);
        Assert.False(o.Tripped);
        Assert.True(o.PValue >= 0.01);
        Assert.False(d.Regression);
    }

    [Fact]
    public void ProbesInOnlyOneTraceAreListedNotErrors()
    {
        using var dir = new TempDir();
        SyntheticTrace a = Spec() with { Probes = [.. Spec().Probes, new SyntheticProbe("old_path", 10)] };
        SyntheticTrace b = Spec() with { Probes = [.. Spec().Probes, new SyntheticProbe("new_path", 10)] };
        DiffResult d = Diff(dir, a, b, "count > 5%");
        Assert.Equal(["old_path"], d.OnlyInBase);
        Assert.Equal(["new_path"], d.OnlyInNew);
        Assert.False(d.Regression);
        var text = new StringWriter();
        new DiffTableRenderer().Render(d, text);
        Assert.Contains("old_path: only in base", text.ToString());
        Assert.Contains("new_path: only in new", text.ToString());
    }

    [Theory]
    [InlineData("p99 >> 10%", "is not METRIC OP THRESHOLD")]
    [InlineData("latency > 5%", "unknown metric 'latency'")]
    [InlineData("mean > 200", "needs a unit or %")]
    [InlineData("count > 1ms", "a count threshold")]
    [InlineData("p99 > 10", "needs a unit or %")]
    public void BadRulesAreOneLineErrors(string rule, string message)
    {
        var e = Assert.Throws<ReportException>(() => DiffRule.Parse(rule));
        Assert.Contains(message, e.Message);
        Assert.Contains(rule, e.Message);
    }

    [Theory]
    [InlineData("count > 5%", DiffMetric.Count, ">", 5.0, true, null)]
    [InlineData("work:p99 >= 10%", DiffMetric.P99, ">=", 10.0, true, "work")]
    [InlineData("mean > 200us", DiffMetric.Mean, ">", 200_000.0, false, null)]
    [InlineData("p50 > 1ms", DiffMetric.P50, ">", 1_000_000.0, false, null)]
    [InlineData("p99.9 < -1.5ms", DiffMetric.P999, "<", -1_500_000.0, false, null)]
    public void RulesParse(string text, DiffMetric metric, string op, double threshold, bool relative, string? probe)
    {
        DiffRule r = DiffRule.Parse(text);
        Assert.Equal((metric, op, threshold, relative, probe), (r.Metric, r.Op, r.Threshold, r.Relative, r.Probe));
    }

    [Fact]
    public void HistogramMannWhitneyEqualsTheTextbookComputation()
    {
        // Values below 2048 are exact in a 3-digit HdrHistogram, so U must match the raw-sample U exactly.
        var rng = new Random(11);
        long[] a = Enumerable.Range(0, 300).Select(_ => (long)rng.Next(100, 600)).ToArray();
        long[] b = Enumerable.Range(0, 200).Select(_ => (long)rng.Next(130, 630)).ToArray();
        var accA = new LatencyAccumulator();
        var accB = new LatencyAccumulator();
        Array.ForEach(a, accA.Record);
        Array.ForEach(b, accB.Record);
        MannWhitneyResult r = MannWhitney.Test(accA, accB)!;

        // U of b over a: pairs where b wins plus half the ties.
        double u = 0;
        foreach (long x in b)
        {
            foreach (long y in a)
            {
                u += x > y ? 1 : x == y ? 0.5 : 0;
            }
        }
        Assert.Equal(u, r.U, 6);
        // The tie-corrected normal approximation, from the raw samples.
        double n1 = a.Length, n2 = b.Length, n = n1 + n2;
        double ties = a.Concat(b).GroupBy(x => x).Sum(g => Math.Pow(g.Count(), 3) - g.Count());
        double sd = Math.Sqrt(n1 * n2 / 12 * (n + 1 - ties / (n * (n - 1))));
        Assert.Equal((u - n1 * n2 / 2) / sd, r.Z, 9);
        Assert.Equal(MannWhitney.UpperTail((u - n1 * n2 / 2 - 0.5) / sd), r.PGreater, 12);
        Assert.True(r.PGreater < 0.05, $"p={r.PGreater}");
        Assert.True(r.PLess > 0.95);
        Assert.True(Math.Abs(r.PGreater + r.PLess - 1) < 0.01, $"{r.PGreater} + {r.PLess}");
    }

    [Fact]
    public void NormalTailIsAccurate()
    {
        Assert.Equal(0.5, MannWhitney.UpperTail(0), 6);
        Assert.Equal(0.0227501, MannWhitney.UpperTail(2), 6);
        Assert.Equal(0.9772499, MannWhitney.UpperTail(-2), 6);
        Assert.Equal(0.0013499, MannWhitney.UpperTail(3), 6);
    }

    [Fact]
    public void MarkdownIsAPullRequestComment()
    {
        using var dir = new TempDir();
        DiffResult d = Diff(dir, Spec(calls: 20_000), Spec(calls: 30_000), "count > 5%");
        var text = new StringWriter { NewLine = "\n" };
        new DiffMarkdownRenderer().Render(d, text);
        string md = text.ToString();
        Assert.StartsWith("### uprec diff: regression\n", md);
        Assert.Contains("| work | count | 20,000 | 30,000 | +10,000 | +50.0% |  |\n", md);
        Assert.Contains("| `count > 5%` | work | 20,000 | 30,000 | +50.0% | ❌ FAIL |\n", md);
    }

    [Fact]
    public void JsonCarriesTheVerdicts()
    {
        using var dir = new TempDir();
        DiffResult d = Diff(dir, Spec(), Spec(median: 13_000, seed: 2), "p99 > 10%");
        var text = new StringWriter();
        new DiffJsonRenderer().Render(d, text);
        using var doc = System.Text.Json.JsonDocument.Parse(text.ToString());
        Assert.True(doc.RootElement.GetProperty("regression").GetBoolean());
        var rule = doc.RootElement.GetProperty("rules")[0];
        Assert.Equal("work", rule.GetProperty("probe").GetString());
        Assert.True(rule.GetProperty("tripped").GetBoolean());
        Assert.True(rule.GetProperty("p_value").GetDouble() < 0.01);
        Assert.True(rule.GetProperty("new").GetInt64() > rule.GetProperty("base").GetInt64());
    }

    [Fact]
    public void AMissingTraceIsAnInputError()
    {
        using var dir = new TempDir();
        Spec().Write(dir.File("base.parquet"));
        Assert.Throws<TraceFormatException>(() =>
            DiffEngine.Run(new DiffRequest { Base = dir.File("base.parquet"), New = dir.File("missing.parquet") }));
    }
}
