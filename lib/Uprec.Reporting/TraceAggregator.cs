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

    public void Add(GroupAggregate other)
    {
        Count += other.Count;
        if (other.Latency is not null)
        {
            (Latency ??= new LatencyAccumulator(TraceAggregator.GroupDigits)).Add(other.Latency);
        }
    }
}

/// <summary>
/// Streams traces and aggregates per probe and per (pid, tid, comm, probe). Row groups are decoded
/// and aggregated in parallel (one reader per worker, partial results merged at the end), because
/// Parquet decoding, not aggregation, is the cost. Memory: one row group per worker plus fixed-size
/// histograms per probe and per group with returns, whatever the length of the trace.
/// </summary>
public sealed class TraceAggregator
{
    // Per-group histograms use 2 significant digits (1% error, ~36 KB each) so thousands of tasks stay cheap.
    internal const int GroupDigits = 2;

    private readonly Dictionary<string, ProbeAggregate> _probes = new(StringComparer.Ordinal);
    private readonly List<string> _probeOrder = [];
    internal readonly Dictionary<(int Pid, int Tid, string Comm, string Probe), GroupAggregate> Tasks = new();
    // Process comm from the trace's task table (the main thread's comm), which wins over what rows show.
    private readonly Dictionary<int, string> _metaProcessComm = new();

    public long RowsRead { get; private set; }
    public long RowsMatched { get; private set; }
    public IReadOnlyList<string> Inputs { get; private set; } = [];
    /// <summary>Workers decoding row groups; defaults to the number of CPUs.</summary>
    public static int Workers { get; set; } = Environment.ProcessorCount;

    public IEnumerable<ProbeAggregate> Probes => _probeOrder.Select(n => _probes[n]);

    public ProbeAggregate? Probe(string name) => _probes.GetValueOrDefault(name);

    /// <summary>
    /// The comm a process is shown with: its main thread's comm in the trace's task table; else, from
    /// the rows, the ordinal-smallest comm its main thread had (or any of its threads), so the choice
    /// does not depend on which worker saw which row first.
    /// </summary>
    internal string ProcessComm(int pid)
    {
        if (_metaProcessComm.TryGetValue(pid, out string? comm))
        {
            return comm;
        }
        var keys = Tasks.Keys.Where(k => k.Pid == pid).ToList();
        var main = keys.Where(k => k.Tid == pid).ToList();
        return (main.Count > 0 ? main : keys).Select(k => k.Comm).Order(StringComparer.Ordinal).FirstOrDefault() ?? "";
    }

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

    /// <summary>What one worker accumulates from the row groups it decoded.</summary>
    private sealed class Partial
    {
        public readonly Dictionary<string, (long Entries, bool SawReturn, LatencyAccumulator Latency)> Probes = new(StringComparer.Ordinal);
        public readonly Dictionary<(int, int, string, string), GroupAggregate> Tasks = new();
        public long RowsRead;
        public long RowsMatched;
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
        long rowsDone = 0;
        object progressLock = new();

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
                _metaProcessComm.TryAdd(task.Pid, task.Comm);
            }

            long lo = long.MinValue, hi = long.MaxValue;
            if (windowed)
            {
                long start = TraceStart(reader);
                lo = sinceNs is long s ? start + s : long.MinValue;
                hi = untilNs is long u ? start + u : long.MaxValue;
            }

            var partials = new List<Partial>();
            int workers = Math.Max(1, Math.Min(Workers, reader.RowGroupCount));
            int nextGroup = -1;
            // Each worker has its own reader: a Parquet reader's stream position is not shareable.
            Exception? failure = null;
            var threads = Enumerable.Range(0, workers).Select(w => new Thread(() =>
            {
                var partial = new Partial();
                RowFilter? localFilter = filter?.Clone();
                try
                {
                    using TraceReader own = w == 0 ? null! : TraceReader.Open(reader.Path);
                    TraceReader source = w == 0 ? reader : own;
                    int g;
                    TraceBatch? previous = null;
                    while ((g = Interlocked.Increment(ref nextGroup)) < reader.RowGroupCount && Volatile.Read(ref failure) is null)
                    {
                        TraceBatch batch = source.ReadRowGroup(g, columns, previous);
                        previous = batch;
                        AggregateBatch(partial, batch, localFilter, windowed, lo, hi);
                        partial.RowsRead += batch.Count;
                        if (progress is not null)
                        {
                            lock (progressLock)
                            {
                                rowsDone += batch.Count;
                                progress.Report(new ReadProgress(++groupsDone, groupsTotal, rowsDone, rowsTotal));
                            }
                        }
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
                lock (partials)
                {
                    partials.Add(partial);
                }
            }) { IsBackground = true, Name = $"uprec-report-{w}" }).ToList();
            // Worker 0 runs on this thread; the others on their own.
            foreach (Thread t in threads.Skip(1))
            {
                t.Start();
            }
            threads[0].Start();
            foreach (Thread t in threads)
            {
                t.Join();
            }
            if (failure is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
            }

            // Entry rows per probe in this file; replaced by the exact counter when the file has one.
            var entries = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (Partial partial in partials)
            {
                RowsRead += partial.RowsRead;
                RowsMatched += partial.RowsMatched;
                foreach ((string name, var p) in partial.Probes)
                {
                    entries[name] = entries.GetValueOrDefault(name) + p.Entries;
                    ProbeAggregate probe = GetProbe(name);
                    probe.IsReturn |= p.SawReturn;
                    probe.Latency.Add(p.Latency);
                }
                foreach (var (key, group) in partial.Tasks)
                {
                    if (!Tasks.TryGetValue(key, out GroupAggregate? existing))
                    {
                        Tasks[key] = existing = new GroupAggregate();
                    }
                    existing.Add(group);
                }
            }
            foreach (ProbeMeta meta in reader.Metadata.Probes)
            {
                if (exactCounts && meta.Count >= 0)
                {
                    entries[meta.Name] = meta.Count;
                }
            }
            // Probes appear in the order of the first file's metadata, then of their rows (by name).
            foreach ((string name, long count) in entries.OrderBy(e => e.Key, StringComparer.Ordinal))
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

    private static void AggregateBatch(Partial partial, TraceBatch b, RowFilter? filter, bool windowed, long lo, long hi)
    {
        // Consecutive rows often repeat a probe and a task, so the last lookups are cached; the reader
        // hands out one string instance per distinct value, so reference checks usually decide.
        string? probeName = null;
        long entries = 0;
        bool sawReturn = false;
        LatencyAccumulator? latency = null;
        (int, int, string, string) lastKey = default;
        GroupAggregate? group = null;
        long matched = 0;

        void FlushProbe()
        {
            if (probeName is null)
            {
                return;
            }
            var p = partial.Probes[probeName];
            partial.Probes[probeName] = (p.Entries + entries, p.SawReturn | sawReturn, p.Latency);
        }

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
            string name = b.Probe[i];
            if (!ReferenceEquals(name, probeName) && !string.Equals(name, probeName, StringComparison.Ordinal))
            {
                FlushProbe();
                if (!partial.Probes.TryGetValue(name, out var p))
                {
                    p = (0, false, new LatencyAccumulator(3));
                    partial.Probes[name] = p;
                }
                probeName = name;
                latency = p.Latency;
                entries = 0;
                sawReturn = false;
            }
            var key = (b.Pid[i], b.Tid[i], b.Comm[i], probeName!);
            if (group is null || key.Item1 != lastKey.Item1 || key.Item2 != lastKey.Item2
                || !ReferenceEquals(key.Item3, lastKey.Item3) || !ReferenceEquals(key.Item4, lastKey.Item4))
            {
                if (!partial.Tasks.TryGetValue(key, out group))
                {
                    group = new GroupAggregate();
                    partial.Tasks[key] = group;
                }
                lastKey = key;
            }
            if (b.Kind[i] == HitKind.Entry)
            {
                entries++;
                group.Count++;
            }
            else
            {
                sawReturn = true;
                if (b.DurationNs[i] is long d)
                {
                    latency!.Record(d);
                    (group.Latency ??= new LatencyAccumulator(GroupDigits)).Record(d);
                }
            }
        }
        FlushProbe();
        partial.RowsMatched += matched;
    }
}
