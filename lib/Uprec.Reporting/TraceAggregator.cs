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
        // Probe and comm strings become dense per-worker ids, and each (pid, tid, comm, probe) a slot,
        // so the per-row work is array indexing.
        public readonly NameIds ProbeIds = new();
        public readonly NameIds CommIds = new();
        public ProbeState[] Probes = new ProbeState[8];
        public readonly GroupTable Groups = new();
        public readonly List<(int Pid, int Tid, int Comm, int Probe)> GroupKeys = [];
        public readonly List<GroupAggregate> GroupValues = [];
        // Per slot: entry rows, and the probe it belongs to.
        public long[] SlotEntries = new long[64];
        public ProbeState[] SlotProbes = new ProbeState[64];
        public readonly RowKeyCache Cache = new();
        // Scratch of the current block of rows: its return rows and their slots.
        public const int Block = 4096;
        public readonly int[] ReturnRows = new int[Block];
        public readonly int[] ReturnSlots = new int[Block];
        public long RowsRead;
        public long RowsMatched;

        public ProbeState Probe(int id)
        {
            if (id >= Probes.Length)
            {
                Array.Resize(ref Probes, Probes.Length * 2);
            }
            return Probes[id] ??= new ProbeState();
        }

        /// <summary>The slot of a row's key, creating it when new (the slow path behind <see cref="Cache"/>).</summary>
        public int Slot(int pid, int tid, string probe, string comm)
        {
            int probeId = ProbeIds.Id(probe), commId = CommIds.Id(comm);
            int slot = Groups.GetOrAdd(pid, tid, commId, probeId, out bool added);
            if (added)
            {
                GroupKeys.Add((pid, tid, commId, probeId));
                GroupValues.Add(new GroupAggregate());
                if (slot >= SlotEntries.Length)
                {
                    Array.Resize(ref SlotEntries, SlotEntries.Length * 2);
                    Array.Resize(ref SlotProbes, SlotProbes.Length * 2);
                }
                SlotProbes[slot] = Probe(probeId);
            }
            return slot;
        }
    }

    /// <summary>
    /// A direct-mapped cache from a row's (pid, tid, probe, comm) to its slot. Rows of different tasks
    /// interleave, so "same key as the last row" rarely holds; this cache is indexed by a hash of the
    /// ids and of cheap facts about the strings (length, one character) and confirms a hit by comparing
    /// the string instances, which the reader shares between rows. A collision only costs a slow lookup.
    /// </summary>
    private sealed class RowKeyCache
    {
        public const int Size = 256;
        public readonly int[] Pid = new int[Size];
        public readonly int[] Tid = new int[Size];
        public readonly string?[] Probe = new string?[Size];
        public readonly string?[] Comm = new string?[Size];
        public readonly int[] Slot = new int[Size];

        public static int Index(int pid, int tid, string probe, string comm)
        {
            uint h = unchecked((uint)tid * 0x9E3779B1u + (uint)pid * 0x85EBCA77u
                + (uint)probe.Length * 0xC2B2AE3Du + (probe.Length > 0 ? probe[^1] : 0u) * 0x27D4EB2Fu
                + (uint)comm.Length * 0x165667B1u + (comm.Length > 0 ? comm[^1] : 0u) * 0xD3A2646Cu);
            return (int)(h >> 24);
        }
    }

    private sealed class ProbeState
    {
        public long Entries;
        public bool SawReturn;
        public readonly LatencyAccumulator Latency = new(3);
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
                for (int slot = 0; slot < partial.GroupKeys.Count; slot++)
                {
                    partial.GroupValues[slot].Count = partial.SlotEntries[slot];
                    partial.SlotProbes[slot].Entries += partial.SlotEntries[slot];
                }
                for (int id = 0; id < partial.ProbeIds.Names.Count; id++)
                {
                    string name = partial.ProbeIds.Names[id];
                    ProbeState p = partial.Probes[id];
                    entries[name] = entries.GetValueOrDefault(name) + p.Entries;
                    ProbeAggregate probe = GetProbe(name);
                    probe.IsReturn |= p.SawReturn;
                    probe.Latency.Add(p.Latency);
                }
                for (int slot = 0; slot < partial.GroupKeys.Count; slot++)
                {
                    var (pid, tid, comm, probeId) = partial.GroupKeys[slot];
                    var key = (pid, tid, partial.CommIds.Names[comm], partial.ProbeIds.Names[probeId]);
                    if (!Tasks.TryGetValue(key, out GroupAggregate? existing))
                    {
                        Tasks[key] = existing = new GroupAggregate();
                    }
                    existing.Add(partial.GroupValues[slot]);
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
        int[] pids = b.Pid, tids = b.Tid;
        string[] probes = b.Probe, comms = b.Comm;
        HitKind[] kinds = b.Kind;
        long?[] durations = b.DurationNs;
        int n = b.Count;
        if (pids.Length < n || tids.Length < n || probes.Length < n || comms.Length < n || kinds.Length < n || durations.Length < n)
        {
            throw new InvalidOperationException("the report's columns were not all read");
        }
        int[] returnRows = partial.ReturnRows, returnSlots = partial.ReturnSlots;
        RowKeyCache cache = partial.Cache;
        bool select = windowed || filter is not null;
        long matched = 0;

        // Rows go in blocks, so the list of a block's return rows stays small and in cache.
        for (int start = 0; start < n; start += Partial.Block)
        {
            int end = Math.Min(n, start + Partial.Block);
            int returns = 0;
            // Pass 1, every row: its slot, entry counts, and the list of return rows. Entries and returns
            // interleave at random, so this pass has no branch on the kind (a mispredicted branch per
            // few rows cost more than the work); the return rows are gathered without one too.
            for (int i = start; i < end; i++)
            {
                if (select && ((windowed && (b.TimeNs[i] < lo || b.TimeNs[i] >= hi)) || (filter is not null && !filter.Matches(b, i))))
                {
                    continue;
                }
                matched++;
                string name = probes[i], comm = comms[i];
                int pid = pids[i], tid = tids[i];
                int at = RowKeyCache.Index(pid, tid, name, comm);
                int slot;
                if (cache.Pid[at] == pid && cache.Tid[at] == tid && ReferenceEquals(cache.Probe[at], name) && ReferenceEquals(cache.Comm[at], comm))
                {
                    slot = cache.Slot[at];
                }
                else
                {
                    slot = partial.Slot(pid, tid, name, comm);
                    cache.Pid[at] = pid;
                    cache.Tid[at] = tid;
                    cache.Probe[at] = name;
                    cache.Comm[at] = comm;
                    cache.Slot[at] = slot;
                }
                int isReturn = kinds[i] == HitKind.Return ? 1 : 0;
                partial.SlotEntries[slot] += 1 - isReturn;
                returnRows[returns] = i;
                returnSlots[returns] = slot;
                returns += isReturn;
            }

            // Pass 2, the block's return rows only: latency per probe and per group.
            for (int j = 0; j < returns; j++)
            {
                int slot = returnSlots[j];
                ProbeState probe = partial.SlotProbes[slot];
                probe.SawReturn = true;
                if (durations[returnRows[j]] is long d)
                {
                    probe.Latency.Record(d);
                    GroupAggregate group = partial.GroupValues[slot];
                    (group.Latency ??= new LatencyAccumulator(GroupDigits)).Record(d);
                }
            }
        }
        partial.RowsMatched += matched;
    }
}
