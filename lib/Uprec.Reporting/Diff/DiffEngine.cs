namespace Uprec.Reporting.Diff;

public sealed record DiffRequest
{
    public required string Base { get; init; }
    public required string New { get; init; }
    public IReadOnlyList<string> Rules { get; init; } = [];
    /// <summary>A latency rule trips only when the one-sided Mann–Whitney p-value is below this.</summary>
    public double Alpha { get; init; } = 0.01;
}

public sealed record ProbeSide(long Count, long Lost, LatencyStats? Latency);

public sealed record ProbeDiff
{
    public required string Name { get; init; }
    public required bool IsReturn { get; init; }
    public required ProbeSide Base { get; init; }
    public required ProbeSide New { get; init; }
    /// <summary>Null when either side has no latency samples.</summary>
    public MannWhitneyResult? MannWhitney { get; init; }

    public long Value(ProbeSide side, DiffMetric metric) => metric switch
    {
        DiffMetric.Count => side.Count,
        DiffMetric.Min => side.Latency?.Min ?? 0,
        DiffMetric.Mean => side.Latency?.Mean ?? 0,
        DiffMetric.P50 => side.Latency?.P50 ?? 0,
        DiffMetric.P90 => side.Latency?.P90 ?? 0,
        DiffMetric.P99 => side.Latency?.P99 ?? 0,
        DiffMetric.P999 => side.Latency?.P999 ?? 0,
        DiffMetric.Max => side.Latency?.Max ?? 0,
        _ => side.Latency?.Total ?? 0,
    };
}

/// <summary>One rule against one probe: whether it tripped, and why not when it crossed but was not significant.</summary>
public sealed record RuleOutcome(DiffRule Rule, string Probe, long BaseValue, long NewValue, bool Crossed, double? PValue, bool Tripped);

public sealed record DiffResult
{
    public required string Base { get; init; }
    public required string New { get; init; }
    public required double Alpha { get; init; }
    public required IReadOnlyList<ProbeDiff> Probes { get; init; }
    public required IReadOnlyList<string> OnlyInBase { get; init; }
    public required IReadOnlyList<string> OnlyInNew { get; init; }
    public required IReadOnlyList<DiffRule> Rules { get; init; }
    /// <summary>Every (rule, probe) pair evaluated.</summary>
    public required IReadOnlyList<RuleOutcome> Outcomes { get; init; }
    public bool Regression => Outcomes.Any(o => o.Tripped);
}

/// <summary>`uprec diff`: aggregates both traces and evaluates the rules.</summary>
public static class DiffEngine
{
    public static DiffResult Run(DiffRequest request)
    {
        // Parse rules first: a typo in a rule should fail before two traces are read.
        List<DiffRule> rules = request.Rules.Select(DiffRule.Parse).ToList();
        TraceAggregator baseAgg = TraceAggregator.Run([request.Base]);
        TraceAggregator newAgg = TraceAggregator.Run([request.New]);
        return Compare(request, rules, baseAgg, newAgg);
    }

    private static DiffResult Compare(DiffRequest request, List<DiffRule> rules, TraceAggregator baseAgg, TraceAggregator newAgg)
    {
        // A probe never installed and without rows in a trace counts as absent from it.
        static bool Present(ProbeAggregate p) => p.Installed || p.Count > 0 || p.Latency.Count > 0;
        var baseProbes = baseAgg.Probes.Where(Present).ToDictionary(p => p.Name, StringComparer.Ordinal);
        var newProbes = newAgg.Probes.Where(Present).ToDictionary(p => p.Name, StringComparer.Ordinal);

        var probes = new List<ProbeDiff>();
        foreach (ProbeAggregate b in baseProbes.Values.OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            if (!newProbes.TryGetValue(b.Name, out ProbeAggregate? n))
            {
                continue;
            }
            bool isReturn = b.IsReturn || n.IsReturn;
            probes.Add(new ProbeDiff
            {
                Name = b.Name,
                IsReturn = isReturn,
                Base = new ProbeSide(b.Count, b.Lost, isReturn ? b.Latency.ToStats() : null),
                New = new ProbeSide(n.Count, n.Lost, isReturn ? n.Latency.ToStats() : null),
                MannWhitney = isReturn ? MannWhitney.Test(b.Latency, n.Latency) : null,
            });
        }

        var outcomes = new List<RuleOutcome>();
        foreach (DiffRule rule in rules)
        {
            if (rule.Probe is not null && !probes.Any(p => p.Name == rule.Probe))
            {
                throw new ReportException($"rule '{rule.Text}': probe '{rule.Probe}' is not in both traces");
            }
            foreach (ProbeDiff p in probes.Where(p => rule.Probe is null || p.Name == rule.Probe))
            {
                if (rule.IsLatency && !p.IsReturn)
                {
                    continue;
                }
                long bv = p.Value(p.Base, rule.Metric), nv = p.Value(p.New, rule.Metric);
                bool crossed = rule.Crosses(bv, nv);
                double? pValue = null;
                bool tripped = crossed;
                if (rule.IsLatency)
                {
                    pValue = p.MannWhitney is { } mw ? (rule.LooksForIncrease ? mw.PGreater : mw.PLess) : null;
                    tripped = crossed && pValue is double pv && pv < request.Alpha;
                }
                outcomes.Add(new RuleOutcome(rule, p.Name, bv, nv, crossed, pValue, tripped));
            }
        }

        return new DiffResult
        {
            Base = request.Base,
            New = request.New,
            Alpha = request.Alpha,
            Probes = probes,
            OnlyInBase = baseProbes.Keys.Where(k => !newProbes.ContainsKey(k)).Order(StringComparer.Ordinal).ToList(),
            OnlyInNew = newProbes.Keys.Where(k => !baseProbes.ContainsKey(k)).Order(StringComparer.Ordinal).ToList(),
            Rules = rules,
            Outcomes = outcomes,
        };
    }
}
