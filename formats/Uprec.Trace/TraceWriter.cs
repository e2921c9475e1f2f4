using System.Runtime.CompilerServices;
using Uprec.Trace.ParquetEncoding;

namespace Uprec.Trace;

public sealed record TraceWriterOptions
{
    /// <summary>Rows per Parquet row group; the writer's memory is bounded by one row group.</summary>
    public int RowGroupSize { get; init; } = 1 << 20;

    /// <summary>
    /// The probes whose hits will be appended, indexed by <see cref="ProbeMeta.Id"/>. They must be known
    /// up front: the probe column stores each hit's probe name, and the schema needs one column per
    /// captured-argument name before the first row group is written. A hit with an id not listed here is
    /// written under the name "#ID" and its arguments are dropped.
    /// </summary>
    public IReadOnlyList<ProbeMeta> Probes { get; init; } = [];
}

/// <summary>
/// Writes a trace file row group by row group. Rows go to a temporary file next to the target path,
/// which is renamed over the target only by <see cref="Complete"/>, so the target is always either
/// absent, the previous file, or a complete trace. Not thread-safe: one thread appends.
/// A full row group is encoded on a background thread while appends fill a second buffer, so the
/// appending thread (the tracer) does not stall for the encoding; memory is two row groups. With
/// <see cref="Reserve"/>, two more are prepared until they are used or a full row group is handed
/// over without them, and a third can be held until the next hand-off after they are used.
/// </summary>
public sealed class TraceWriter : IDisposable
{
    private readonly string _path;
    private readonly string _tempPath;
    private readonly int _rowGroupSize;
    private readonly FileStream _stream;
    private readonly TraceParquetEncoder _encoder;
    private readonly IReadOnlyList<ArgColumn> _argColumns;
    // Per probe id: its slot in the probe dictionary, and for each of its arguments the arg column it lands in.
    private readonly Dictionary<int, (int Slot, int[] ArgColumn)> _probes = new();
    // Names of the probe and comm columns by slot: rows store slots, so no string is hashed per row.
    // A row group's dictionary page holds every probe name (a handful) and the comms it uses.
    private readonly List<string> _probeNames = [];
    private readonly List<string> _commNames = [];
    private readonly Dictionary<string, int> _commSlots = new(StringComparer.Ordinal);
    private string? _lastComm;
    private int _lastCommSlot;
    private static readonly string[] KindNames = [TraceColumns.KindEntry, TraceColumns.KindReturn];

    private Rows _filling;
    private Rows? _spare;
    // Memory of two full row groups, allocated and touched in the background after Reserve(); the
    // second waits here until a row group is handed to the encoder.
    private Task<(Rows, Rows)>? _reserved;
    private Rows? _standby;
    // The row group being encoded in the background; at most one at a time (the encoder is sequential).
    private Task? _pending;

    // Scratch of the encoding side for optional columns: values, definition flags, dictionary indices.
    private long[] _scratchValues = [];
    private byte[] _scratchDefined = [];
    private int[] _scratchIndices = [];
    private int[] _scratchRuns = [];

    private long _rowsWritten;
    private bool _completed;
    private bool _disposed;

    /// <summary>Column buffers of one row group; they grow on demand up to the row group size.</summary>
    private sealed class Rows(int argColumns)
    {
        public long[] Time = [];
        public int[] Probe = [];
        public long[] Duration = [];
        /// <summary>String argument columns (null = not captured); integer columns leave theirs empty.</summary>
        public object?[][] Args = Enumerable.Range(0, argColumns).Select(_ => Array.Empty<object?>()).ToArray();
        /// <summary>Integer argument columns, unboxed: the value, and 1 where the row has one.</summary>
        public long[][] ArgValues = Enumerable.Range(0, argColumns).Select(_ => Array.Empty<long>()).ToArray();
        public byte[][] ArgDefined = Enumerable.Range(0, argColumns).Select(_ => Array.Empty<byte>()).ToArray();
        public int Count;

        // The task columns (pid, tid, comm slot) and the kind, as runs: rows come in batches of one
        // task and kind, so a run is stored once (from its first row to the next run's), not per row.
        public int[] RunStart = new int[16];
        public int[] RunPid = new int[16];
        public int[] RunTid = new int[16];
        public int[] RunComm = new int[16];
        public int[] RunKind = new int[16];
        public int Runs;

        /// <summary>The rows from <see cref="Count"/> on belong to this task and kind (a new run unless the last one is the same).</summary>
        public void Mark(int pid, int tid, int comm, int kind)
        {
            int last = Runs - 1;
            if (last >= 0 && RunPid[last] == pid && RunTid[last] == tid && RunComm[last] == comm && RunKind[last] == kind)
            {
                return;
            }
            if (last >= 0 && RunStart[last] == Count)
            {
                Runs--; // the last run got no rows: replace it
            }
            if (Runs == RunStart.Length)
            {
                int size = Runs * 2;
                Array.Resize(ref RunStart, size);
                Array.Resize(ref RunPid, size);
                Array.Resize(ref RunTid, size);
                Array.Resize(ref RunComm, size);
                Array.Resize(ref RunKind, size);
            }
            RunStart[Runs] = Count;
            RunPid[Runs] = pid;
            RunTid[Runs] = tid;
            RunComm[Runs] = comm;
            RunKind[Runs] = kind;
            Runs++;
        }

        /// <summary>Rows in run <paramref name="r"/>.</summary>
        public int RunLength(int r) => (r + 1 < Runs ? RunStart[r + 1] : Count) - RunStart[r];

        /// <summary>Doubles the room, from 1024 rows up to <paramref name="limit"/>.</summary>
        public void Grow(int limit) => Resize(Math.Min(limit, Math.Max(1024, Time.Length * 2)));

        private void Resize(int size)
        {
            Array.Resize(ref Time, size);
            Array.Resize(ref Probe, size);
            Array.Resize(ref Duration, size);
            for (int i = 0; i < Args.Length; i++)
            {
                Array.Resize(ref Args[i], size);
                Array.Resize(ref ArgValues[i], size);
                Array.Resize(ref ArgDefined[i], size);
            }
        }

        /// <summary>A buffer of a whole row group whose fixed columns (time, probe, duration) are already written once, so their pages are mapped.</summary>
        public static Rows Touched(int argColumns, int size)
        {
            var rows = new Rows(argColumns);
            rows.Resize(size);
            rows.Time.AsSpan().Clear();
            rows.Probe.AsSpan().Clear();
            rows.Duration.AsSpan().Clear();
            return rows;
        }

        /// <summary>Takes over the rows buffered in <paramref name="other"/> (which has no more than this one holds).</summary>
        public void CopyFrom(Rows other)
        {
            int n = other.Count;
            other.Time.AsSpan(0, n).CopyTo(Time);
            other.Probe.AsSpan(0, n).CopyTo(Probe);
            other.Duration.AsSpan(0, n).CopyTo(Duration);
            for (int i = 0; i < Args.Length; i++)
            {
                other.Args[i].AsSpan(0, n).CopyTo(Args[i]);
                other.ArgValues[i].AsSpan(0, n).CopyTo(ArgValues[i]);
                other.ArgDefined[i].AsSpan(0, n).CopyTo(ArgDefined[i]);
            }
            RunStart = (int[])other.RunStart.Clone();
            RunPid = (int[])other.RunPid.Clone();
            RunTid = (int[])other.RunTid.Clone();
            RunComm = (int[])other.RunComm.Clone();
            RunKind = (int[])other.RunKind.Clone();
            Runs = other.Runs;
            Count = n;
        }
    }

    public TraceWriter(string path, TraceWriterOptions? options = null)
    {
        options ??= new TraceWriterOptions();
        if (options.RowGroupSize <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "RowGroupSize must be positive");
        }
        _path = Path.GetFullPath(path);
        _rowGroupSize = options.RowGroupSize;
        _argColumns = ArgColumn.FromProbes(options.Probes);
        var argIndex = _argColumns.Select((c, i) => (c.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);
        foreach (ProbeMeta probe in options.Probes)
        {
            _probes[probe.Id] = (_probeNames.Count, probe.Args.Select(a => argIndex[a.Name]).ToArray());
            _probeNames.Add(probe.Name);
        }
        _filling = new Rows(_argColumns.Count);

        string directory = Path.GetDirectoryName(_path) ?? ".";
        // A hidden name in the same directory: the final rename must stay on one filesystem to be atomic.
        _tempPath = Path.Combine(directory, $".{Path.GetFileName(_path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            _stream = new FileStream(_tempPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20);
        }
        catch (DirectoryNotFoundException)
        {
            throw new TraceFormatException($"cannot write trace '{path}': directory '{directory}' does not exist");
        }
        catch (UnauthorizedAccessException)
        {
            throw new TraceFormatException($"cannot write trace '{path}': permission denied in directory '{directory}'");
        }
        catch (IOException e)
        {
            throw new TraceFormatException($"cannot write trace '{path}': {e.Message}", e);
        }

        var columns = new List<ColumnDef>
        {
            new(TraceColumns.TimeNs, ColumnKind.DeltaInt64),
            new(TraceColumns.Pid, ColumnKind.DictionaryInt32),
            new(TraceColumns.Tid, ColumnKind.DictionaryInt32),
            new(TraceColumns.Probe, ColumnKind.DictionaryString),
            new(TraceColumns.Kind, ColumnKind.DictionaryString),
            new(TraceColumns.DurationNs, ColumnKind.OptionalInt64),
            new(TraceColumns.Comm, ColumnKind.DictionaryString),
        };
        columns.AddRange(_argColumns.Select(c => new ColumnDef(c.Name, c.Type switch
        {
            ArgColumnType.Int64 => ColumnKind.OptionalInt64,
            ArgColumnType.UInt64 => ColumnKind.OptionalUInt64,
            _ => ColumnKind.OptionalDictionaryString,
        })));
        try
        {
            _encoder = new TraceParquetEncoder(_stream, columns);
        }
        catch
        {
            _stream.Dispose();
            File.Delete(_tempPath);
            throw;
        }
    }

    /// <summary>Rows encoded into the file so far (a row group being encoded in the background counts once it is done).</summary>
    public long RowsWritten => Interlocked.Read(ref _rowsWritten);

    /// <summary>
    /// Starts allocating two full row groups of memory in the background and writing it once, for a
    /// source that may append tens of millions of rows a second (the in-process drain); <see
    /// cref="UseReserved"/> puts it to use. Without it the first million rows grow their arrays ten
    /// times and fault in their pages as they land (about 2 us a page on this VM), which halved the
    /// rows a short burst could keep. Costs about 20 MB, plus 17 MB per argument column, twice.
    /// </summary>
    public void Reserve()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_reserved is not null || _standby is not null || _filling.Time.Length >= _rowGroupSize)
        {
            return;
        }
        int columns = _argColumns.Count, size = _rowGroupSize;
        _reserved = Task.Run(() => (Rows.Touched(columns, size), Rows.Touched(columns, size)));
    }

    /// <summary>
    /// Waits for the memory <see cref="Reserve"/> started on and appends into it from now on (the rows
    /// buffered so far move over). Nothing happens without a reservation, or once it was used.
    /// </summary>
    public void UseReserved()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Task<(Rows, Rows)>? reserved = _reserved;
        _reserved = null; // used or not, it is not held on to
        if (reserved is null || _filling.Time.Length >= _rowGroupSize)
        {
            return;
        }
        try
        {
            (Rows full, Rows second) = reserved.GetAwaiter().GetResult();
            full.CopyFrom(_filling);
            _filling = full;
            _standby = second;
        }
        catch (OutOfMemoryException)
        {
            // Appends grow their buffers as without a reservation.
        }
    }

    /// <summary>The filling buffer, grown if it has no room for another row.</summary>
    private Rows Room()
    {
        Rows rows = _filling;
        if (rows.Count == rows.Time.Length)
        {
            rows.Grow(_rowGroupSize);
        }
        return rows;
    }

    /// <summary>The argument columns this writer's schema has, in column order.</summary>
    public IReadOnlyList<ArgColumn> ArgColumns => _argColumns;

    /// <summary>
    /// Declares a probe found after the writer started (a glob over a library loaded later), so its
    /// rows carry its name. The columns were fixed by the first row group: a capture whose name has no
    /// column yet is not stored (the footer's metadata still lists it). Call it from the appending thread.
    /// </summary>
    public void DeclareProbe(ProbeMeta probe)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_probes.ContainsKey(probe.Id))
        {
            return;
        }
        int[] columns = probe.Args.Select(a => IndexOfArgColumn(a.Name)).ToArray();
        _probes[probe.Id] = (_probeNames.Count, columns);
        _probeNames.Add(probe.Name);
    }

    private int IndexOfArgColumn(string name)
    {
        for (int i = 0; i < _argColumns.Count; i++)
        {
            if (_argColumns[i].Name == name)
            {
                return i;
            }
        }
        return -1;
    }

    public void Append(in HitRecord hit)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException("the trace is already complete");
        }
        Rows rows = Room();
        int row = rows.Count;
        rows.Mark(hit.Pid, hit.Tid, CommSlot(hit.Comm ?? ""), hit.Kind == HitKind.Return ? 1 : 0);
        rows.Time[row] = hit.TimeNs;
        rows.Duration[row] = hit.Kind == HitKind.Return ? hit.DurationNs : -1;
        if (_probes.TryGetValue(hit.ProbeId, out var probe))
        {
            rows.Probe[row] = probe.Slot;
            object?[]? args = hit.Args;
            if (args is not null)
            {
                int n = Math.Min(args.Length, probe.ArgColumn.Length);
                for (int i = 0; i < n; i++)
                {
                    int column = probe.ArgColumn[i];
                    if (column < 0)
                    {
                        continue;
                    }
                    if (_argColumns[column].Type == ArgColumnType.String)
                    {
                        rows.Args[column][row] = args[i];
                    }
                    else if (ToInt64(args[i]) is long v)
                    {
                        // A string captured into a column other probes type as integer cannot be stored there.
                        rows.ArgValues[column][row] = v;
                        rows.ArgDefined[column][row] = 1;
                    }
                }
            }
        }
        else
        {
            // Unknown ids become probes named "#ID" (with no argument columns).
            _probes[hit.ProbeId] = (_probeNames.Count, []);
            rows.Probe[row] = _probeNames.Count;
            _probeNames.Add("#" + hit.ProbeId);
        }
        rows.Count = row + 1;
        if (rows.Count == _rowGroupSize)
        {
            StartRowGroup();
        }
    }

    /// <summary>
    /// Entry hits of one task without arguments, many at once: what the in-process path's drain
    /// produces. Same rows as <see cref="Append"/> would write, without its per-row lookups.
    /// </summary>
    public void AppendEntries(ReadOnlySpan<long> times, ReadOnlySpan<int> probeIds, int pid, int tid, string comm)
    {
        if (times.Length != probeIds.Length)
        {
            throw new ArgumentException("one probe id per time is needed", nameof(probeIds));
        }
        AppendBatch(times, probeIds, default, default, pid, tid, comm, returns: false);
    }

    /// <summary>
    /// Return hits of one task, many at once (the in-process drain): each with its duration and the
    /// return value, which goes to the probe's last argument column when that is
    /// <see cref="TraceColumns.ReturnValue"/>, as <see cref="Append"/> would write it from a HitRecord
    /// whose last argument is the return value.
    /// </summary>
    public void AppendReturns(ReadOnlySpan<long> times, ReadOnlySpan<int> probeIds, ReadOnlySpan<long> durations,
        ReadOnlySpan<long> returnValues, int pid, int tid, string comm)
    {
        if (times.Length != probeIds.Length || times.Length != durations.Length || times.Length != returnValues.Length)
        {
            throw new ArgumentException("one probe id, duration and return value per time is needed", nameof(probeIds));
        }
        AppendBatch(times, probeIds, durations, returnValues, pid, tid, comm, returns: true);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AppendBatch(ReadOnlySpan<long> times, ReadOnlySpan<int> probeIds, ReadOnlySpan<long> durations,
        ReadOnlySpan<long> returnValues, int pid, int tid, string comm, bool returns)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException("the trace is already complete");
        }
        int commSlot = CommSlot(comm);
        int lastId = -1, lastSlot = 0, lastColumn = -1;
        int done = 0;
        while (done < times.Length)
        {
            Rows rows = Room();
            int n = Math.Min(times.Length - done, rows.Time.Length - rows.Count);
            int at = rows.Count;
            rows.Mark(pid, tid, commSlot, returns ? 1 : 0);
            times.Slice(done, n).CopyTo(rows.Time.AsSpan(at, n));
            if (returns)
            {
                durations.Slice(done, n).CopyTo(rows.Duration.AsSpan(at, n));
            }
            else
            {
                rows.Duration.AsSpan(at, n).Fill(-1);
            }
            // Argument columns need nothing for entries: they are cleared after each encode (not captured).
            // A run of one probe's rows at a time: a batch is usually one run.
            ReadOnlySpan<int> ids = probeIds.Slice(done, n);
            for (int i = 0; i < n; )
            {
                int id = ids[i];
                int run = ids[i..].IndexOfAnyExcept(id);
                if (run < 0)
                {
                    run = n - i;
                }
                if (id != lastId)
                {
                    lastSlot = ProbeSlot(id);
                    lastColumn = returns ? ReturnValueColumn(id) : -1;
                    lastId = id;
                }
                rows.Probe.AsSpan(at + i, run).Fill(lastSlot);
                if (lastColumn >= 0)
                {
                    returnValues.Slice(done + i, run).CopyTo(rows.ArgValues[lastColumn].AsSpan(at + i, run));
                    rows.ArgDefined[lastColumn].AsSpan(at + i, run).Fill(1);
                }
                i += run;
            }
            rows.Count = at + n;
            done += n;
            if (rows.Count == _rowGroupSize)
            {
                StartRowGroup();
            }
        }
    }

    /// <summary>The column a probe's return value goes to: its last argument column if that is an integer retval, else -1.</summary>
    private int ReturnValueColumn(int probeId)
    {
        int[] columns = _probes[probeId].ArgColumn;
        int column = columns.Length == 0 ? -1 : columns[^1];
        return column >= 0 && _argColumns[column].Name == TraceColumns.ReturnValue && _argColumns[column].Type != ArgColumnType.String
            ? column : -1;
    }

    private int ProbeSlot(int probeId)
    {
        if (_probes.TryGetValue(probeId, out var probe))
        {
            return probe.Slot;
        }
        _probes[probeId] = (_probeNames.Count, []);
        _probeNames.Add("#" + probeId);
        return _probeNames.Count - 1;
    }

    private int CommSlot(string comm)
    {
        // The engine keeps one string per task, so the reference check nearly always answers.
        if (ReferenceEquals(comm, _lastComm))
        {
            return _lastCommSlot;
        }
        if (!_commSlots.TryGetValue(comm, out int slot))
        {
            slot = _commNames.Count;
            _commNames.Add(comm);
            _commSlots[comm] = slot;
        }
        _lastComm = comm;
        _lastCommSlot = slot;
        return slot;
    }

    /// <summary>Hands the filled buffer to a background encode (after the previous one finished) and swaps buffers.</summary>
    private void StartRowGroup()
    {
        WaitPending();
        Rows full = _filling;
        if (full.Count == 0)
        {
            return;
        }
        // Snapshots: appends may add names while the encoder writes the dictionary pages.
        string[] probeNames = [.. _probeNames];
        string[] commNames = [.. _commNames];
        // A million rows came without the reservation being used: nothing is draining samples that fast.
        if (full.Count == _rowGroupSize)
        {
            _reserved = null;
        }
        // The reserved second buffer first, while the spare is one that grew before the reservation was ready.
        if (_standby is not null && (_spare is null || _spare.Time.Length < _standby.Time.Length))
        {
            _spare = _standby;
        }
        _standby = null;
        _filling = _spare ?? new Rows(_argColumns.Count);
        _spare = null;
        _pending = Task.Run(() =>
        {
            EncodeRowGroup(full, probeNames, commNames);
            _spare = full;
        });
    }

    /// <summary>Waits for the background encode; its failure surfaces here as a TraceFormatException.</summary>
    private void WaitPending()
    {
        Task? pending = _pending;
        if (pending is null)
        {
            return;
        }
        _pending = null;
        try
        {
            pending.GetAwaiter().GetResult();
        }
        catch (IOException e)
        {
            // Disk full, I/O error: the engine gets one typed error naming the trace, not a raw IOException.
            throw new TraceFormatException($"cannot write trace '{_path}': {e.Message}", e);
        }
    }

    /// <summary>Writes the buffered rows as a row group now (nothing when none are buffered) and waits until it is in the file.</summary>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            return;
        }
        StartRowGroup();
        WaitPending();
        _stream.Flush();
    }

    /// <summary>
    /// Writes the remaining rows and the footer (schema version and <paramref name="metadata"/> as JSON),
    /// syncs the file and renames it over the target path. After this the writer only accepts Dispose.
    /// </summary>
    public void Complete(TraceMetadata metadata)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException("the trace is already complete");
        }
        _reserved = null;
        _standby = null;
        StartRowGroup();
        WaitPending();
        try
        {
            _encoder.Finish(new Dictionary<string, string>
            {
                [TraceColumns.SchemaVersionKey] = TraceSchema.Version.ToString(System.Globalization.CultureInfo.InvariantCulture),
                [TraceColumns.MetadataKey] = TraceMetadataJson.Serialize(metadata with { SchemaVersion = TraceSchema.Version }),
            }, "uprec trace writer");
            _stream.Flush(flushToDisk: true);
        }
        catch (IOException e)
        {
            throw new TraceFormatException($"cannot write trace '{_path}': {e.Message}", e);
        }
        _stream.Dispose();
        try
        {
            File.Move(_tempPath, _path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            File.Delete(_tempPath);
            _disposed = true;
            throw new TraceFormatException($"cannot write trace '{_path}': {e.Message}", e);
        }
        _completed = true;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (_completed)
        {
            return;
        }
        try
        {
            _pending?.Wait();
        }
        catch (AggregateException)
        {
            // The file is abandoned either way.
        }
        _stream.Dispose();
        File.Delete(_tempPath);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void EncodeRowGroup(Rows rows, string[] probeNames, string[] commNames)
    {
        int n = rows.Count;
        if (_scratchValues.Length < n)
        {
            _scratchValues = new long[n];
            _scratchDefined = new byte[n];
            _scratchIndices = new int[n];
        }
        _encoder.BeginRowGroup(n);
        _encoder.WriteInt64Delta(rows.Time.AsSpan(0, n));
        // The task columns and the kind go out as the runs they are kept in.
        int runs = rows.Runs;
        if (_scratchRuns.Length < runs)
        {
            _scratchRuns = new int[rows.RunStart.Length];
        }
        Span<int> lengths = _scratchRuns.AsSpan(0, runs);
        for (int r = 0; r < runs; r++)
        {
            lengths[r] = rows.RunLength(r);
        }
        _encoder.WriteInt32DictionaryRuns(rows.RunPid.AsSpan(0, runs), lengths);
        _encoder.WriteInt32DictionaryRuns(rows.RunTid.AsSpan(0, runs), lengths);
        _encoder.WriteDictionary(rows.Probe.AsSpan(0, n), probeNames, optional: false);
        _encoder.WriteDictionaryRuns(rows.RunKind.AsSpan(0, runs), lengths, KindNames);
        Span<byte> defined = _scratchDefined.AsSpan(0, n);
        for (int i = 0; i < n; i++)
        {
            defined[i] = (byte)(~(ulong)rows.Duration[i] >> 63); // 1 where the duration is not negative, without a branch
        }
        _encoder.WriteOptionalInt64(rows.Duration.AsSpan(0, n), defined, unsigned: false);
        // Only the comms this row group uses: a fork-heavy workload can see thousands over a long run.
        int[] remap = new int[commNames.Length];
        Array.Fill(remap, -1);
        var used = new List<string>();
        Span<int> commIndices = _scratchIndices.AsSpan(0, runs);
        for (int r = 0; r < runs; r++)
        {
            int slot = rows.RunComm[r];
            if (remap[slot] < 0)
            {
                remap[slot] = used.Count;
                used.Add(commNames[slot]);
            }
            commIndices[r] = remap[slot];
        }
        _encoder.WriteDictionaryRuns(commIndices, lengths, used);
        for (int c = 0; c < _argColumns.Count; c++)
        {
            WriteArgColumn(rows, c, n);
        }
        _encoder.EndRowGroup();
        foreach (object?[] column in rows.Args)
        {
            Array.Clear(column, 0, Math.Min(n, column.Length));
        }
        foreach (byte[] column in rows.ArgDefined)
        {
            Array.Clear(column, 0, Math.Min(n, column.Length));
        }
        rows.Count = 0;
        rows.Runs = 0;
        Interlocked.Add(ref _rowsWritten, n);
    }

    private void WriteArgColumn(Rows rows, int c, int n)
    {
        object?[] values = rows.Args[c];
        if (_argColumns[c].Type != ArgColumnType.String)
        {
            _encoder.WriteOptionalInt64(rows.ArgValues[c].AsSpan(0, n), rows.ArgDefined[c].AsSpan(0, n),
                unsigned: _argColumns[c].Type == ArgColumnType.UInt64);
            return;
        }
        // String arguments (paths, names) repeat less predictably: a dictionary per row group.
        var dictionary = new List<string>();
        var slots = new Dictionary<string, int>(StringComparer.Ordinal);
        Span<int> indices = _scratchIndices.AsSpan(0, n);
        for (int i = 0; i < n; i++)
        {
            string? text = values[i] switch
            {
                null => null,
                string s => s,
                byte[] b => System.Text.Encoding.UTF8.GetString(b),
                object o => Convert.ToString(o, System.Globalization.CultureInfo.InvariantCulture),
            };
            if (text is null)
            {
                indices[i] = -1;
                continue;
            }
            if (!slots.TryGetValue(text, out int slot))
            {
                slot = dictionary.Count;
                dictionary.Add(text);
                slots[text] = slot;
            }
            indices[i] = slot;
        }
        _encoder.WriteDictionary(indices, dictionary, optional: true);
    }

    private static long? ToInt64(object? value) => value switch
    {
        null => null,
        long v => v,
        ulong v => unchecked((long)v),
        int v => v,
        uint v => v,
        short v => v,
        ushort v => v,
        sbyte v => v,
        byte v => v,
        nint v => v,
        nuint v => unchecked((long)v),
        // A string captured into a column other probes type as integer cannot be stored there.
        _ => null,
    };

}
