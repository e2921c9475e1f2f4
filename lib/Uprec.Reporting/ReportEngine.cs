namespace Uprec.Reporting;

/// <summary>The one entry point of `uprec report`: request in, <see cref="Report"/> out. Never touches the console.</summary>
public static class ReportEngine
{
    public static Report Run(ReportRequest request)
    {
        if (request.SinceNs is long s && request.UntilNs is long u && u <= s)
        {
            throw new ReportException($"--until ({u} ns) must be after --since ({s} ns)");
        }
        IReadOnlyList<string> inputs = TraceInputs.Expand(request.Inputs);
        TraceAggregator agg = TraceAggregator.Run(inputs, request.Filter, request.SinceNs, request.UntilNs, request.Progress);
        return Build(agg, request);
    }

    internal static Report Build(TraceAggregator agg, ReportRequest request)
    {
        var probes = agg.Probes.Select(p => new ProbeSummary
        {
            Name = p.Name,
            Count = p.Count,
            Lost = p.Lost,
            IsReturn = p.IsReturn,
            Installed = p.Installed || p.Count > 0 || p.Latency.Count > 0,
            Latency = p.IsReturn ? p.Latency.ToStats() : null,
            Histogram = request.Histograms && p.IsReturn ? p.Latency.Log2Histogram() : null,
        }).ToList();
        probes = Sort(probes, request.Sort, p => p.Name, p => p.Count, p => p.Latency).ThenBy(p => p.Name, StringComparer.Ordinal).ToList();
        var isReturn = probes.ToDictionary(p => p.Name, p => p.IsReturn, StringComparer.Ordinal);

        var tasks = agg.Tasks
            .GroupBy(kv => (kv.Key.Pid, kv.Key.Tid, kv.Key.Comm, kv.Key.Probe))
            .Select(g => Summarize(g.Key.Pid, g.Key.Tid, g.Key.Comm, g.Key.Probe, g.Select(kv => kv.Value), isReturn))
            .ToList();
        tasks = SortGroups(tasks, request.Sort);

        List<GroupSummary> groups = request.GroupBy switch
        {
            GroupBy.Process => SortGroups(agg.Tasks
                .GroupBy(kv => (kv.Key.Pid, kv.Key.Probe))
                .Select(g => Summarize(g.Key.Pid, null, agg.ProcessComm(g.Key.Pid), g.Key.Probe,
                    g.Select(kv => kv.Value), isReturn))
                .ToList(), request.Sort),
            GroupBy.Comm => SortGroups(agg.Tasks
                .GroupBy(kv => (kv.Key.Comm, kv.Key.Probe))
                .Select(g => Summarize(null, null, g.Key.Comm, g.Key.Probe, g.Select(kv => kv.Value), isReturn))
                .ToList(), request.Sort),
            _ => tasks,
        };

        return new Report
        {
            Inputs = agg.Inputs,
            RowsRead = agg.RowsRead,
            RowsMatched = agg.RowsMatched,
            Probes = probes,
            Tasks = tasks,
            GroupBy = request.GroupBy ?? GroupBy.Task,
            GroupingRequested = request.GroupBy is not null,
            Groups = groups,
            Histograms = request.Histograms,
            PercentileError = Math.Pow(10, -3),
            GroupPercentileError = Math.Pow(10, -TraceAggregator.GroupDigits),
        };
    }

    private static GroupSummary Summarize(int? pid, int? tid, string comm, string probe, IEnumerable<GroupAggregate> parts,
        Dictionary<string, bool> isReturn)
    {
        long count = 0;
        LatencyAccumulator? latency = null;
        foreach (GroupAggregate part in parts)
        {
            count += part.Count;
            if (part.Latency is not null)
            {
                (latency ??= new LatencyAccumulator(TraceAggregator.GroupDigits)).Add(part.Latency);
            }
        }
        return new GroupSummary
        {
            Pid = pid,
            Tid = tid,
            Comm = comm,
            Probe = probe,
            Count = count,
            Latency = isReturn.GetValueOrDefault(probe) ? latency?.ToStats() : null,
        };
    }

    private static List<GroupSummary> SortGroups(List<GroupSummary> groups, SortKey key) =>
        Sort(groups, key, g => g.Probe, g => g.Count, g => g.Latency)
            .ThenBy(g => g.Pid ?? 0).ThenBy(g => g.Tid ?? 0).ThenBy(g => g.Comm, StringComparer.Ordinal)
            .ThenBy(g => g.Probe, StringComparer.Ordinal)
            .ToList();

    /// <summary>Name sorts ascending, every other key descending; callers add tie-breakers so output is deterministic.</summary>
    private static IOrderedEnumerable<T> Sort<T>(IEnumerable<T> items, SortKey key, Func<T, string> name, Func<T, long> count,
        Func<T, LatencyStats?> latency)
    {
        return key switch
        {
            SortKey.Name => items.OrderBy(name, StringComparer.Ordinal),
            SortKey.Count => items.OrderByDescending(count),
            SortKey.Total => items.OrderByDescending(x => latency(x)?.Total ?? -1),
            SortKey.Mean => items.OrderByDescending(x => latency(x)?.Mean ?? -1),
            SortKey.P99 => items.OrderByDescending(x => latency(x)?.P99 ?? -1),
            _ => items.OrderByDescending(x => latency(x)?.Max ?? -1),
        };
    }
}
