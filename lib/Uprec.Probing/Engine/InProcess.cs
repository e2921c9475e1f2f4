using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Uprec.Native;
using Uprec.Probing.Arch;
using Uprec.Symbols;
using Uprec.Trace;
using L = Uprec.Probing.Arch.InProcessLayout;

namespace Uprec.Probing.Engine;

/// <summary>
/// A thread's block in the target: its ring and its exact counters. Owned by one thread at a time
/// (the one whose fs base is its key); a later thread with the same fs base (glibc reuses TCBs)
/// inherits it once the first is gone.
/// </summary>
internal sealed class ThreadBlock(ulong address, ulong key, int entry)
{
    public ulong Address { get; } = address;
    public ulong Key { get; } = key;
    /// <summary>Index of its thread-table entry.</summary>
    public int Entry { get; } = entry;
    public volatile TracedTask? Owner;
    /// <summary>The next sequence number to read: everything before it was taken or given up.</summary>
    public ulong Consumed;
    /// <summary>Counters as they were when uprec first saw the block (non-zero in a forked child: the parent's hits).</summary>
    public ulong[] Baseline = new ulong[L.MaxProbes];
    /// <summary>The counters last read; final once the address space is gone.</summary>
    public ulong[] Last = new ulong[L.MaxProbes];
    /// <summary>
    /// The record the drain is waiting for (its thread is writing it), or <see cref="NotStuck"/>; and
    /// since when it has waited for it (Stopwatch ticks).
    /// </summary>
    public ulong StuckAt = NotStuck;
    public long StuckSince;
    public const ulong NotStuck = ulong.MaxValue;
}

/// <summary>
/// The in-process path's memory in one address space: the thread table ("uprec-threads") and the
/// per-thread blocks ("uprec-ring"), all private mappings of memfds so they show by name in
/// /proc/PID/maps and are copied, not shared, by fork.
/// </summary>
internal sealed class InProcessArea(int pid, ulong table)
{
    /// <summary>The process whose memory this is (read with process_vm_readv, which needs no fd that could go stale).</summary>
    public int Pid { get; set; } = pid;
    public ulong Table { get; } = table;
    public List<ThreadBlock> Blocks { get; } = [];
    public Dictionary<ulong, ThreadBlock> ByKey { get; } = [];
    /// <summary>Table entries in use (uprec's own copy: the target's table is never read back).</summary>
    public HashSet<int> UsedEntries { get; } = [];
    public ulong[] SharedBaseline = new ulong[L.MaxProbes];
    public ulong[] SharedLast = new ulong[L.MaxProbes];
    /// <summary>Gone with its address space: its counters are final, nothing more is read.</summary>
    public bool Closed { get; set; }

    /// <summary>
    /// The child's copy after fork, read while the child is stopped and before it runs: everything the
    /// blocks hold (records, counts) is the parent's and stays the parent's to report.
    /// </summary>
    public InProcessArea CopyForChild(int childPid, Drainer drainer)
    {
        var copy = new InProcessArea(childPid, Table);
        foreach (int e in UsedEntries) copy.UsedEntries.Add(e);
        foreach (ThreadBlock b in Blocks)
        {
            var c = new ThreadBlock(b.Address, b.Key, b.Entry);
            c.Consumed = drainer.ReadHead(childPid, b.Address) ?? b.Consumed;
            // The records before the head are the parent's to report: the child's ring starts empty.
            // (Its tail is the parent's; with a ring full at the fork it would drop every sample.)
            Drainer.WriteTail(childPid, c.Address, c.Consumed);
            if (drainer.ReadCounters(childPid, b.Address + L.CountsOffset, c.Baseline)) Array.Copy(c.Baseline, c.Last, L.MaxProbes);
            copy.Blocks.Add(c);
            copy.ByKey[c.Key] = c;
        }
        if (drainer.ReadCounters(childPid, Table + L.SharedCountsOffset, copy.SharedBaseline))
            Array.Copy(copy.SharedBaseline, copy.SharedLast, L.MaxProbes);
        return copy;
    }

    /// <summary>A free table entry for a key (its hash bucket or the next, as the trampoline looks), or -1.</summary>
    public int FreeEntryFor(ulong key)
    {
        int h = (int)L.Hash(key);
        if (!UsedEntries.Contains(h)) return h;
        if (!UsedEntries.Contains(h + 1)) return h + 1;
        return -1;
    }
}

/// <summary>
/// Moves samples from the targets' rings into the trace. A background thread drains every area about
/// once a millisecond; the tracer thread drains an area synchronously before its memory goes away
/// (thread exit, execve, detach). Both go through one lock, which also guards the trace writer.
/// Everything read from a target is untrusted: indices are bounded by the ring size, probe ids by the
/// known probes, and a record that fails its commit word is skipped, never trusted.
/// The per-record loops here and in the trace writer are marked AggressiveOptimization: a burst of
/// samples is over in a fraction of a second, before tiered compilation would leave its first tier
/// (JIT build: 28 -> 38 M samples kept/s over 10M calls; the Native AOT build is compiled ahead anyway).
/// </summary>
internal sealed unsafe class Drainer : IDisposable
{
    private const int ChunkRecords = 16384;
    private readonly SinkLock _lock;
    private readonly TraceWriter _writer;
    private readonly TscClock _clock = new();
    private readonly List<InProcessArea> _areas = [];
    private readonly Probe?[] _probes = new Probe?[L.MaxProbes];
    private readonly byte[] _buffer = new byte[ChunkRecords * L.RecordSize];
    private readonly Thread _thread;
    private volatile bool _stop;
    /// <summary>Every area ever drained, closed ones included: their last counters are part of the totals.</summary>
    private readonly HashSet<InProcessArea> _seen = [];
    /// <summary>The last pass took a sixteenth of a ring or more from some block.</summary>
    private bool _busy;

    public Drainer(SinkLock sinkLock, TraceWriter writer)
    {
        _lock = sinkLock;
        _writer = writer;
        // Samples can come at tens of millions a second from here on: have the row memory ready
        // (the recorder started on it before the program ran).
        using (_lock.Enter()) _writer.UseReserved();
        _thread = new Thread(Run) { Name = "uprec-drain", IsBackground = true };
        _thread.Start();
    }

    public void AddProbe(Probe p)
    {
        using (_lock.Enter())
        {
            _probes[p.Id] = p;
            _shapes[p.Id] = Shape.Known | (p.Spec.Args.Count > 0 ? Shape.Captures : 0) | (p.Spec.IsReturn ? Shape.Return : 0);
        }
    }

    /// <summary>What the per-record loop needs to know of a probe, without a call per record.</summary>
    [Flags]
    private enum Shape : byte { Unknown = 0, Known = 1, Captures = 2, Return = 4 }

    private readonly Shape[] _shapes = new Shape[L.MaxProbes];
    /// <summary>Entry rows written per probe id, added to the probes' InProcessRows when the drain ends.</summary>
    private readonly long[] _rows = new long[L.MaxProbes];

    /// <summary>Entry rows written per probe so far (call once nothing drains any more).</summary>
    public long RowsOf(int probeId) => probeId < L.MaxProbes ? _rows[probeId] : 0;

    /// <summary>Why the background drain stopped early (the trace could not be written); null while it runs.</summary>
    public Exception? Failure { get; private set; }

    private void Run()
    {
        try
        {
            while (!_stop)
            {
                using (_lock.EnterAfterOthers())
                {
                    _clock.Refresh();
                    foreach (InProcessArea a in _areas)
                    {
                        if (!a.Closed) DrainArea(a, final: false, readCounters: false);
                    }
                }
                // A block that gave a sixteenth of a ring in one pass is being filled fast: go round
                // again at once. Otherwise sleep, about 1.1 ms (up to 2.3 measured): at 100 M
                // samples/s a sixteenth left behind plus a sleep's worth still fits in the ring.
                if (_busy) _busy = false;
                else Thread.Sleep(1);
            }
        }
        catch (Exception e)
        {
            // An exception escaping a thread would end uprec with the program still patched. Stop
            // draining instead: the counters stay exact, and the tracer's own write meets the same error.
            Failure = e;
        }
    }

    /// <summary>
    /// Drains every block of an area and reads its counters; with <paramref name="close"/>, the last time.
    /// The block of an <paramref name="exiting"/> thread is drained for the last time too.
    /// </summary>
    public void DrainNow(InProcessArea area, bool close, TracedTask? exiting = null)
    {
        using (_lock.Enter())
        {
            if (area.Closed) return;
            _clock.Refresh();
            DrainArea(area, final: close, readCounters: true, exiting);
            if (close)
            {
                area.Closed = true;
                _areas.Remove(area);
            }
        }
    }

    /// <summary>The area's memory is gone (or is another image's now): keep its last counters, read nothing more.</summary>
    public void Close(InProcessArea area)
    {
        using (_lock.Enter())
        {
            area.Closed = true;
            _areas.Remove(area);
        }
    }

    /// <summary>Exact per-probe totals over every area seen: counters since each block's baseline.</summary>
    public long[] Totals()
    {
        var totals = new long[L.MaxProbes];
        using (_lock.Enter())
        {
            foreach (InProcessArea a in _seen)
            {
                for (int i = 0; i < L.MaxProbes; i++) totals[i] += (long)(a.SharedLast[i] - a.SharedBaseline[i]);
                foreach (ThreadBlock b in a.Blocks)
                    for (int i = 0; i < L.MaxProbes; i++) totals[i] += (long)(b.Last[i] - b.Baseline[i]);
            }
        }
        return totals;
    }

    public void Track(InProcessArea area)
    {
        using (_lock.Enter())
        {
            _seen.Add(area);
            if (!_areas.Contains(area)) _areas.Add(area);
        }
    }

    private void DrainArea(InProcessArea area, bool final, bool readCounters, TracedTask? exiting = null)
    {
        foreach (ThreadBlock b in area.Blocks) DrainBlock(area.Pid, b, final || (exiting is not null && b.Owner == exiting));
        if (!readCounters) return;
        foreach (ThreadBlock b in area.Blocks) ReadCounters(area.Pid, b.Address + L.CountsOffset, b.Last);
        ReadCounters(area.Pid, area.Table + L.SharedCountsOffset, area.SharedLast);
    }

    private void DrainBlock(int pid, ThreadBlock b, bool final)
    {
        if (ReadHead(pid, b.Address) is not ulong head) return;
        if (head - b.Consumed > L.RingRecords && head > b.Consumed)
            b.Consumed = head - L.RingRecords; // overwritten or scribbled: what is gone is lost (Count - rows)
        if (head < b.Consumed) b.Consumed = head; // a scribbled head: start again from it
        ulong start = b.Consumed;
        while (b.Consumed < head)
        {
            ulong seq = b.Consumed;
            int index = (int)(seq & (L.RingRecords - 1));
            int n = (int)Math.Min(Math.Min(head - seq, (ulong)(L.RingRecords - index)), ChunkRecords);
            if (!Read(pid, b.Address + L.RingOffset + (ulong)index * L.RecordSize, _buffer.AsSpan(0, n * L.RecordSize))) return;
            if (!ConfirmNearHead(pid, b, seq, n, head)) return;
            int taken = Consume(b, seq, n, head, final, out bool anyValid);
            b.Consumed += (ulong)taken;
            // Give the room back chunk by chunk: the thread keeps writing while the rest is converted.
            // Only after a chunk with a valid record in it: between an exec and uprec hearing of it,
            // this pid's memory is another image's, and a write there must never happen. No memory
            // but a live ring holds commit words that match their sequence numbers.
            if (taken > 0 && anyValid) WriteTail(pid, b.Address, b.Consumed);
            if (taken < n) break; // a record being written: its thread is writing it now
        }
        // Measured by what was taken, not by how full the ring is: a block waiting on a record being
        // written would otherwise spin the drain.
        if (b.Consumed - start >= L.RingRecords / 16) _busy = true;
    }

    private readonly long[] _times = new long[ChunkRecords];
    private readonly int[] _ids = new int[ChunkRecords];
    private readonly long[] _returnTimes = new long[ChunkRecords], _returnDurations = new long[ChunkRecords], _returnValues = new long[ChunkRecords];
    private readonly int[] _returnIds = new int[ChunkRecords];

    /// <summary>
    /// Converts the records read into rows: argument-less entries and all returns in batches per chunk
    /// (the common case, and the rate that decides whether the drain keeps up), captures one by one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int Consume(ThreadBlock b, ulong seq, int n, ulong head, bool final, out bool anyValid)
    {
        anyValid = false;
        TracedTask? owner = b.Owner;
        int pid = owner?.Process.Pid ?? 0, tid = owner?.Tid ?? 0;
        string comm = owner?.Comm ?? "";
        Span<ulong> words = MemoryMarshal.Cast<byte, ulong>(_buffer.AsSpan(0, n * L.RecordSize));
        int batch = 0, returns = 0;
        int taken = n;
        TscClock.Map clock = _clock.Current;
        int countedId = 0;
        long counted = 0;
        for (int i = 0; i < n; i++, seq++)
        {
            ulong commit = words[i * 4 + 3];
            int id = (int)(commit & 0xffff & ~(ulong)L.ReturnBit);
            if ((commit >> 16) != seq + 1 || id >= L.MaxProbes || _shapes[id] == Shape.Unknown)
            {
                // Reserved and still being written (its thread descheduled, or a signal handler's records
                // after it): wait for it while its thread can finish it, for at most StuckLimit without a
                // valid record. Anything else is garbage the program wrote: skip it. (This waited three
                // passes once, which a busy drain makes in microseconds: a loaded CI run lost a row of
                // a thread that was preempted mid-record.)
                if (!final && BeingWritten(commit, seq) && Wait(b, seq, tid)) { taken = i; break; }
                continue;
            }
            b.StuckAt = ThreadBlock.NotStuck;
            anyValid = true;
            long ns = clock.ToNs(words[i * 4]);
            Shape shape = _shapes[id];
            if ((commit & L.ReturnBit) != 0)
            {
                // A return: the entry's TSC and rax. Only rows of a %return probe's own trampoline count;
                // the duration is never negative, whatever the program wrote over its ring.
                if ((shape & Shape.Return) == 0) continue;
                _returnTimes[returns] = ns;
                _returnIds[returns] = id;
                _returnDurations[returns] = Math.Max(0, ns - clock.ToNs(words[i * 4 + 1]));
                _returnValues[returns++] = (long)words[i * 4 + 2];
                continue;
            }
            // Counted in a register while the id repeats: an increment in memory per record would
            // wait for the previous one's store.
            if (id != countedId)
            {
                _rows[countedId] += counted;
                countedId = id;
                counted = 0;
            }
            counted++;
            if ((shape & Shape.Captures) == 0)
            {
                _times[batch] = ns;
                _ids[batch++] = id;
                continue;
            }
            FlushBatch(ref batch, pid, tid, comm);
            Probe probe = _probes[id]!;
            var hit = new HitRecord
            {
                TimeNs = ns, Pid = pid, Tid = tid, Kind = HitKind.Entry, DurationNs = -1, Comm = comm, ProbeId = id,
                Args = HitFields.FromRaw(probe.Spec, words[i * 4 + 1], words[i * 4 + 2]),
            };
            _writer.Append(in hit);
        }
        _rows[countedId] += counted;
        FlushBatch(ref batch, pid, tid, comm);
        if (returns > 0)
        {
            _writer.AppendReturns(_returnTimes.AsSpan(0, returns), _returnIds.AsSpan(0, returns), _returnDurations.AsSpan(0, returns),
                _returnValues.AsSpan(0, returns), pid, tid, comm);
        }
        return taken;
    }

    /// <summary>
    /// How long a block waits for a record being written while its thread runs. A thread that exits
    /// mid-record is drained for the last time at its exit, and a stopped one (Ctrl-Z, a debugger) is
    /// waited for as long as it stays stopped; so this bounds a program that forges the pattern or
    /// zeroes its ring, and one that longjmps out of a signal handler that interrupted a trampoline.
    /// </summary>
    private static readonly long StuckLimit = 2 * Stopwatch.Frequency;

    /// <summary>Whether to keep waiting for record <paramref name="seq"/>, which its thread is writing.</summary>
    private static bool Wait(ThreadBlock b, ulong seq, int tid)
    {
        long now = Stopwatch.GetTimestamp();
        if (b.StuckAt != seq) { b.StuckAt = seq; b.StuckSince = now; }
        if (now - b.StuckSince < StuckLimit) return true;
        // A stopped thread (state T, or t in a ptrace stop) finishes its record when it runs again.
        if (tid != 0 && ProcStatus.Read(tid)?.State is 'T' or 't') { b.StuckSince = now; return true; }
        b.StuckAt = ThreadBlock.NotStuck; // given up: the next record gets a budget of its own
        return false;
    }

    /// <summary>
    /// Records this close to the head may be committed while they are copied. The copy reads a
    /// record's commit word after its data, so it could pair a new commit word with an old timestamp:
    /// those records are read a second time and kept only if their commit word was already there the
    /// first time (the data, written before it, is then in the second copy). The thread's own record
    /// and those of signal handlers that interrupted it are usually within this distance; one further
    /// down (a handler that hit more probes) is read twice once it has been seen being written, and
    /// could tear only if its thread finished it in the instant the first copy passed over it.
    /// </summary>
    private const ulong MaxInFlight = 256;

    private readonly ulong[] _firstCommits = new ulong[ChunkRecords];

    /// <summary>
    /// Reads again the records of the chunk just read that are near the head (or from a record being
    /// waited for); a commit word that appeared between the two reads is put back to the first read's,
    /// so that record waits for the next pass. False if the memory could not be read.
    /// </summary>
    private bool ConfirmNearHead(int pid, ThreadBlock b, ulong seq, int n, ulong head)
    {
        ulong from = Math.Max(seq, head > MaxInFlight ? head - MaxInFlight : 0);
        if (b.StuckAt >= seq && b.StuckAt < from) from = b.StuckAt;
        ulong end = seq + (ulong)n;
        if (from >= end) return true;
        int first = (int)(from - seq), count = (int)(end - from);
        Span<ulong> words = MemoryMarshal.Cast<byte, ulong>(_buffer.AsSpan(0, n * L.RecordSize));
        for (int k = 0; k < count; k++) _firstCommits[k] = words[(first + k) * 4 + 3];
        ulong at = b.Address + L.RingOffset + (from & (L.RingRecords - 1)) * L.RecordSize;
        if (!Read(pid, at, _buffer.AsSpan(first * L.RecordSize, count * L.RecordSize))) return false;
        for (int k = 0; k < count; k++)
        {
            if (_firstCommits[k] >> 16 != from + (ulong)k + 1) words[(first + k) * 4 + 3] = _firstCommits[k];
        }
        return true;
    }

    /// <summary>
    /// Whether a record's commit word says its slot was reserved and not yet written: the thread writes
    /// the commit word last, so until then the slot holds the previous lap's (zero on the first lap).
    /// </summary>
    internal static bool BeingWritten(ulong commit, ulong seq) =>
        seq < L.RingRecords ? commit == 0 : (commit >> 16) == seq + 1 - L.RingRecords;

    private void FlushBatch(ref int batch, int pid, int tid, string comm)
    {
        if (batch == 0) return;
        _writer.AppendEntries(_times.AsSpan(0, batch), _ids.AsSpan(0, batch), pid, tid, comm);
        batch = 0;
    }

    public ulong? ReadHead(int pid, ulong block)
    {
        ulong head;
        return Read(pid, block + L.HeadOffset, new Span<byte>(&head, 8)) ? head : null;
    }

    public bool ReadCounters(int pid, ulong address, ulong[] into)
    {
        var tmp = new ulong[L.MaxProbes];
        if (!Read(pid, address, MemoryMarshal.AsBytes(tmp.AsSpan()))) return false;
        tmp.CopyTo(into, 0);
        return true;
    }

    /// <summary>Gives the ring's room up to <paramref name="consumed"/> back to its thread.</summary>
    internal static void WriteTail(int pid, ulong block, ulong consumed)
    {
        var local = new Unistd.iovec { iov_base = &consumed, iov_len = 8 };
        var remote = new Unistd.iovec { iov_base = (void*)(block + L.TailOffset), iov_len = 8 };
        Unistd.process_vm_writev(pid, &local, 1, &remote, 1, 0);
    }

    private static bool Read(int pid, ulong address, Span<byte> into)
    {
        fixed (byte* p = into)
        {
            var local = new Unistd.iovec { iov_base = p, iov_len = into.Length };
            var remote = new Unistd.iovec { iov_base = (void*)address, iov_len = into.Length };
            return Unistd.process_vm_readv(pid, &local, 1, &remote, 1, 0) == into.Length;
        }
    }

    public void Dispose()
    {
        _stop = true;
        _thread.Join();
    }
}
