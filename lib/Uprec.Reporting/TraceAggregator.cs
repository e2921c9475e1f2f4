using Uprec.Trace;

namespace Uprec.Reporting;

/// <summary>Per-probe totals over one or more traces; the raw material of report and diff.</summary>
public sealed class ProbeAggregate(string name)
{
    public string Name { get; } = name;
    public bool IsReturn { get; internal set; }
    public bool Installed { get; internal set; }
    public long Count { get; internal set; }
    public long Lost { get; internal set; }
    public LatencyAccumulator Latency { get; } = new(3);
}

internal sealed class GroupAggregate
{
    public long Count;
    public LatencyAccumulator? Latency;
}

/// <summary>
/// Streams traces row group by row group and aggregates per probe and per (pid, tid, comm, probe).
/// Memory: one row group at a time plus one fixed-size histogram per probe and per group with returns.
/// </summary>
public sealed class TraceAggregator
{
    // Per-group histograms use 2 significant digits (1% error, ~36 KB each) so thousands of tasks stay cheap.
    internal const int GroupDigits = 2;

    private readonly Dictionary<string, ProbeAggregate> _probes = new(StringComparer.Ordinal);
    private readonly List<string> _probeOrder = [];
    internal readonly Dictionary<(int Pid, int Tid, string Comm, string Probe), GroupAggregate> Tasks = new();
    // The comm each process is shown with: its main thread's last comm, else the first seen.
    internal readonly Dictionary<int, string> ProcessComm = new();

    public long RowsRead { get; private set; }
    public long RowsMatched { get; private set; }
    public IReadOnlyList<string> Inputs { get; private set; } = [];

    public IEnumerable<ProbeAggregate> Probes => _probeOrder.Select(n => _probes[n]);

    public ProbeAggregate? Probe(string name) => _probes.GetValueOrDefault(name);

    /// <summary>Aggregates <paramref name="inputs"/> (paths, already expanded) with an optional row filter and window.</summary>
    public static TraceAggregator Run(IReadOnlyList<string> inputs, string? filter = null, long? sinceNs = null,
        long? untilNs = null, IProgress<ReadProgress>? progress = null)
    {
        var readers = new List<TraceReader>();
        try
        {
            foreach (string input in inputs)
            {
                readers.Add(TraceReader.Open(input));
            }
            var aggregator = new TraceAggregator { Inputs = inputs };
            RowFilter? rowFilter = filter is null ? null : RowFilter.Create(filter, readers);
            aggregator.Aggregate(readers, rowFilter, sinceNs, untilNs, progress);
            return aggregator;
        }
        finally
        {
            foreach (TraceReader r in readers)
            {
                r.Dispose();
            }
        }
    }

    private ProbeAggregate GetProbe(string name)
    {
        if (!_probes.TryGetValue(name, out ProbeAggregate? p))
        {
            p = new ProbeAggregate(name);
            _probes[name] = p;
            _probeOrder.Add(name);
        }
        return p;
    }

    private void Aggregate(List<TraceReader> readers, RowFilter? filter, long? sinceNs, long? untilNs, IProgress<ReadProgress>? progress)
    {
        bool windowed = sinceNs is not null || untilNs is not null;
        bool exactCounts = filter is null && !windowed;
        var columns = new HashSet<string>(StringComparer.Ordinal)
        {
            TraceColumns.Pid, TraceColumns.Tid, TraceColumns.Probe, TraceColumns.Kind, TraceColumns.DurationNs, TraceColumns.Comm,
        };
        if (windowed)
        {
            columns.Add(TraceColumns.TimeNs);
        }
        if (filter is not null)
        {
            columns.UnionWith(filter.Fields);
        }
        int groupsTotal = readers.Sum(r => r.RowGroupCount);
        long rowsTotal = readers.Sum(r => r.RowCount);
        int groupsDone = 0;

        foreach (TraceReader reader in readers)
        {
            foreach (ProbeMeta meta in reader.Metadata.Probes)
            {
                ProbeAggregate p = GetProbe(meta.Name);
                p.IsReturn |= meta.IsReturn;
                p.Installed |= meta.Installed;
                p.Lost += meta.Lost;
            }
            foreach (TaskMeta task in reader.Metadata.Tasks.Where(t => t.Pid == t.Tid && t.Comm.Length > 0))
            {
                ProcessComm.TryAdd(task.Pid, task.Comm);
            }

            long lo = long.MinValue, hi = long.MaxValue;
            if (windowed)
            {
                long start = TraceStart(reader);
                lo = sinceNs is long s ? start + s : long.MinValue;
                hi = untilNs is long u ? start + u : long.MaxValue;
            }

            // Entry rows per probe in this file; replaced by the exact counter when the file has one.
            var entries = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (TraceBatch batch in reader.ReadBatches(columns))
            {
                AggregateBatch(batch, filter, windowed, lo, hi, entries);
                RowsRead += batch.Count;
                progress?.Report(new ReadProgress(++groupsDone, groupsTotal, RowsRead, rowsTotal));
            }
            foreach (ProbeMeta meta in reader.Metadata.Probes)
            {
                if (exactCounts && meta.Count >= 0)
                {
                    entries[meta.Name] = meta.Count;
                }
            }
            foreach ((string name, long count) in entries)
            {
                GetProbe(name).Count += count;
            }
        }
    }

    /// <summary>The trace's start: the recorded start time, else its earliest hit.</summary>
    private static long TraceStart(TraceReader reader)
    {
        if (reader.Metadata.StartTimeNs > 0)
        {
            return reader.Metadata.StartTimeNs;
        }
        long min = long.MaxValue;
        foreach (TraceBatch b in reader.ReadBatches(new HashSet<string> { TraceColumns.TimeNs }))
        {
            foreach (long t in b.TimeNs)
            {
                min = Math.Min(min, t);
            }
        }
        return min == long.MaxValue ? 0 : min;
    }

    private void AggregateBatch(TraceBatch b, RowFilter? filter, bool windowed, long lo, long hi, Dictionary<string, long> entries)
    {
        // Consecutive rows mostly repeat a probe and a task, so the last lookups are cached.
        string? lastProbeName = null;
        ProbeAggregate? lastProbe = null;
        long lastProbeEntries = 0;
        (int, int, string, string) lastKey = default;
        GroupAggregate? lastGroup = null;
        long matched = 0;

        for (int i = 0; i < b.Count; i++)
        {
            if (windowed && (b.TimeNs[i] < lo || b.TimeNs[i] >= hi))
            {
                continue;
            }
            if (filter is not null && !filter.Matches(b, i))
            {
                continue;
            }
            matched++;
            string probeName = b.Probe[i];
            if (!ReferenceEquals(probeName, lastProbeName) && probeName != lastProbeName)
            {
                if (lastProbeName is not null)
                {
                    entries[lastProbeName] = entries.GetValueOrDefault(lastProbeName) + lastProbeEntries;
                }
                lastProbeName = probeName;
                lastProbe = GetProbe(probeName);
                lastProbeEntries = 0;
            }
            var key = (b.Pid[i], b.Tid[i], b.Comm[i], lastProbe!.Name);
            if (lastGroup is null || key.Item1 != lastKey.Item1 || key.Item2 != lastKey.Item2
                || !string.Equals(key.Item3, lastKey.Item3, StringComparison.Ordinal) || !ReferenceEquals(key.Item4, lastKey.Item4))
            {
                if (!Tasks.TryGetValue(key, out lastGroup))
                {
                    lastGroup = new GroupAggregate();
                    Tasks[key] = lastGroup;
                    ProcessComm.TryAdd(key.Item1, key.Item3);
                }
                lastKey = key;
            }
            if (b.Kind[i] == HitKind.Entry)
            {
                lastProbeEntries++;
                lastGroup.Count++;
            }
            else if (b.DurationNs[i] is long d)
            {
                lastProbe.IsReturn = true;
                lastProbe.Latency.Record(d);
                (lastGroup.Latency ??= new LatencyAccumulator(GroupDigits)).Record(d);
            }
            else
            {
                lastProbe.IsReturn = true;
            }
        }
        if (lastProbeName is not null)
        {
            entries[lastProbeName] = entries.GetValueOrDefault(lastProbeName) + lastProbeEntries;
        }
        RowsMatched += matched;
    }
}
