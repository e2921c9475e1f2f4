namespace Uprec.Reporting;

/// <summary>How the second section of a report (and the csv view) groups rows.</summary>
public enum GroupBy
{
    Task,
    Process,
    Comm,
}

public enum SortKey
{
    Count,
    Total,
    Mean,
    P99,
    Max,
    Name,
}

public static class SortKeys
{
    public const string Names = "count, total, mean, p99, max, name";

    /// <summary>Parses a --sort value; an unknown key is a <see cref="ReportException"/> listing the valid ones.</summary>
    public static SortKey Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "count" => SortKey.Count,
        "total" => SortKey.Total,
        "mean" => SortKey.Mean,
        "p99" => SortKey.P99,
        "max" => SortKey.Max,
        "name" => SortKey.Name,
        _ => throw new ReportException($"unknown sort key '{text}' (valid: {Names})"),
    };
}

/// <summary>What `uprec report` was asked for; the CLI builds one from its options.</summary>
public sealed record ReportRequest
{
    /// <summary>Trace paths or globs (* ? [..] in the file name part); several are merged.</summary>
    public IReadOnlyList<string> Inputs { get; init; } = ["uprec.parquet"];
    /// <summary>--per-task/--per-process/--per-comm; null when none was given (tables then show tasks, csv probes).</summary>
    public GroupBy? GroupBy { get; init; }
    public SortKey Sort { get; init; } = SortKey.Count;
    /// <summary>Row filter over the trace's columns (Uprec.Filters grammar); null for none.</summary>
    public string? Filter { get; init; }
    /// <summary>Keep rows at or after this offset (ns) from each trace's start.</summary>
    public long? SinceNs { get; init; }
    /// <summary>Keep rows before this offset (ns) from each trace's start.</summary>
    public long? UntilNs { get; init; }
    /// <summary>Include log2 latency histograms per probe.</summary>
    public bool Histograms { get; init; }
    public IProgress<ReadProgress>? Progress { get; init; }
}

/// <summary>How far a report has read: row groups and rows over all inputs.</summary>
public readonly record struct ReadProgress(int RowGroupsDone, int RowGroupsTotal, long RowsDone, long RowsTotal);

public sealed record ProbeSummary
{
    public required string Name { get; init; }
    /// <summary>Calls: exact in-target counters when the trace has them and no filter/window applies, else entry rows.</summary>
    public required long Count { get; init; }
    public required long Lost { get; init; }
    public required bool IsReturn { get; init; }
    /// <summary>False when the probe was never installed in any input and has no rows.</summary>
    public required bool Installed { get; init; }
    /// <summary>Only for %return probes; null when no call returned.</summary>
    public LatencyStats? Latency { get; init; }
    /// <summary>Log2 histogram, when requested.</summary>
    public IReadOnlyList<HistogramBucket>? Histogram { get; init; }
}

/// <summary>One probe in one task, process or comm. Pid/Tid are null when the grouping does not key on them.</summary>
public sealed record GroupSummary
{
    public int? Pid { get; init; }
    public int? Tid { get; init; }
    public required string Comm { get; init; }
    public required string Probe { get; init; }
    /// <summary>Entry rows of this probe in this group (the trace has exact counters per probe only).</summary>
    public required long Count { get; init; }
    public LatencyStats? Latency { get; init; }
}

public sealed record Report
{
    public required IReadOnlyList<string> Inputs { get; init; }
    public required long RowsRead { get; init; }
    public required long RowsMatched { get; init; }
    public required IReadOnlyList<ProbeSummary> Probes { get; init; }
    /// <summary>Always per task (pid, tid, comm, probe): the JSON "tasks" array.</summary>
    public required IReadOnlyList<GroupSummary> Tasks { get; init; }
    public required GroupBy GroupBy { get; init; }
    /// <summary>True when the user asked for a grouping explicitly (csv then lists groups instead of probes).</summary>
    public required bool GroupingRequested { get; init; }
    /// <summary>Rows of the requested grouping (the same list as <see cref="Tasks"/> for GroupBy.Task).</summary>
    public required IReadOnlyList<GroupSummary> Groups { get; init; }
    public required bool Histograms { get; init; }
    /// <summary>Relative error bound of the per-probe percentiles (per-group ones: <see cref="GroupPercentileError"/>).</summary>
    public required double PercentileError { get; init; }
    public required double GroupPercentileError { get; init; }
}
