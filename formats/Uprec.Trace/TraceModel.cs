namespace Uprec.Trace;

/// <summary>What a hit row records: the entry of a probe, or the return of a %return probe.</summary>
public enum HitKind : byte
{
    Entry = 0,
    Return = 1,
}

/// <summary>
/// One hit as the engine hands it to the writer. A plain struct so the hot path allocates nothing;
/// <see cref="Comm"/> is expected to be an interned string the engine keeps per task.
/// </summary>
public struct HitRecord
{
    /// <summary>CLOCK_MONOTONIC nanoseconds.</summary>
    public long TimeNs;
    public int Pid;
    public int Tid;
    /// <summary>Index into <see cref="TraceMetadata.Probes"/> (ProbeMeta.Id).</summary>
    public int ProbeId;
    public HitKind Kind;
    /// <summary>Entry-to-return nanoseconds on returns; -1 when not known (entries, unmatched returns).</summary>
    public long DurationNs;
    public string Comm;
    /// <summary>Captured argument values in the order of the probe's <see cref="ProbeMeta.Args"/>; null when none.</summary>
    public object?[]? Args;
}

/// <summary>A captured argument column of a probe: its name and type (u8..u64, s8..s64, x64, string).</summary>
public sealed record ArgMeta(string Name, string Type, string Source);

/// <summary>A probe as the trace's footer describes it.</summary>
public sealed record ProbeMeta
{
    public required int Id { get; init; }
    /// <summary>The probe's name as reports show it (default: the symbol).</summary>
    public required string Name { get; init; }
    /// <summary>The -e text the user gave.</summary>
    public required string Spec { get; init; }
    public string? Binary { get; init; }
    public string? Symbol { get; init; }
    public long FileOffset { get; init; }
    public bool IsReturn { get; init; }
    /// <summary>"trap", "inprocess", or "none" when never installed.</summary>
    public string HitPath { get; init; } = "trap";
    public string? HitPathReason { get; init; }
    public bool Installed { get; init; }
    /// <summary>Exact number of hits (entries), whether or not each became a row; -1 when unknown.</summary>
    public long Count { get; init; } = -1;
    /// <summary>Samples counted but not written (full ring, filtered rows are not lost).</summary>
    public long Lost { get; init; }
    public IReadOnlyList<ArgMeta> Args { get; init; } = [];
    public string? Filter { get; init; }
}

/// <summary>A task (thread) seen during the recording.</summary>
public sealed record TaskMeta
{
    public required int Pid { get; init; }
    public required int Tid { get; init; }
    public int Ppid { get; init; }
    public string Comm { get; init; } = "";
    public string? Exe { get; init; }
    /// <summary>The NSpid chain from /proc/TID/status, outermost first.</summary>
    public IReadOnlyList<int> NsPid { get; init; } = [];
}

/// <summary>Everything the footer's key/value metadata holds.</summary>
public sealed record TraceMetadata
{
    public int SchemaVersion { get; init; } = TraceSchema.Version;
    public IReadOnlyList<string> CommandLine { get; init; } = [];
    public string Clock { get; init; } = "CLOCK_MONOTONIC";
    public IReadOnlyList<ProbeMeta> Probes { get; init; } = [];
    public IReadOnlyList<TaskMeta> Tasks { get; init; } = [];
    public long Lost { get; init; }
    public long StartTimeNs { get; init; }
    public long EndTimeNs { get; init; }
    /// <summary>How the workload ended, e.g. "exit 0", "signal 15", "detached".</summary>
    public string? Outcome { get; init; }
}

public static class TraceSchema
{
    public const int Version = 1;
}
