using Uprec.Native;
using Uprec.Probing.Arch;
using Uprec.Symbols;
using static Uprec.Native.Ptrace;
using static Uprec.Native.Signals;
using L = Uprec.Probing.Arch.InProcessLayout;

namespace Uprec.Probing.Engine;

/// <summary>
/// The in-process hit path (DESIGN.md, hit path 1): a site is first placed as an int3 like any other;
/// at a stop where the whole address space can be held still (the first trap in it once the thread
/// has TLS), the int3 becomes a jmp rel32 to a trampoline, and from then on a hit costs no stop. The
/// int3 phase is what makes this safe: patching five bytes needs every thread stopped and none inside
/// them, and a trap is where uprec already holds one thread and can inject the mmaps it needs.
/// </summary>
internal sealed partial class Tracer
{
    public HitPathMode HitPath { get; init; }
    /// <summary>Guards the trace writer: the drain thread and the tracer thread both append.</summary>
    private readonly SinkLock _sinkLock = new();
    private Drainer? _drainer;
    /// <summary>Stops taken while holding an address space still, handled by the main loop afterwards.</summary>
    private readonly Queue<(int Tid, int Status)> _deferred = new();

    private static readonly bool Fsgsbase = (Unistd.getauxval(Unistd.AT_HWCAP2) & 2) != 0;

    private Drainer Drainer => _drainer ??= new Drainer(_sinkLock, _writer);

    /// <summary>Why a probe cannot take the in-process path, or null when it can.</summary>
    private string? InProcessRefusal(Probe p)
    {
        if (HitPath == HitPathMode.Trap) return "trap path requested (--hit-path trap)";
        if (!Fsgsbase) return "this CPU or kernel does not allow rdfsbase (no FSGSBASE in AT_HWCAP2)";
        if (p.Spec.IsReturn && TrampolineFilter(p) is not null) return "return probes with per-hit filters take the trap path";
        if (p.Id >= L.MaxProbes) return $"more than {L.MaxProbes} probes";
        if (p.Spec.Args.Count > 2) return "more than two captures take the trap path";
        if (p.Spec.Args.Any(a => a.Type == ArgType.String)) return "string captures take the trap path";
        if (p.Spec.Args.Any(a => !TrampolineBuilder.CanCapture(a.SourceRegister))) return "a capture of an unsupported register";
        if (p.Filter is Uprec.Filters.Filter f && f.Fields.Any(x => !HitFields.ProcessFields.Contains(x)))
        {
            if (f.Fields.Any(x => HitFields.ProcessFields.Contains(x)))
                return "filters that mix task fields with per-hit fields take the trap path";
            if (!TrampolineBuilder.CanCompile(f.Root, TrampolineFields(p.Spec)))
                return "the filter reads a field the trampoline cannot (tid, strings, globs)";
        }
        return null;
    }

    /// <summary>The per-hit filter the trampoline evaluates, or null when the filter is decided per process (or absent).</summary>
    private static Uprec.Filters.FilterNode? TrampolineFilter(Probe p) =>
        p.Filter is Uprec.Filters.Filter f && f.Fields.Any(x => !HitFields.ProcessFields.Contains(x)) ? f.Root : null;

    /// <summary>The filter fields a trampoline can read: arg1..arg6 as raw registers, and the integer captures as typed.</summary>
    private static IReadOnlyDictionary<string, HitField> TrampolineFields(ProbeSpec spec)
    {
        var fields = new Dictionary<string, HitField>(StringComparer.Ordinal);
        for (int i = 0; i < ArgSpec.AbiArgumentRegisters.Count; i++)
            fields[$"arg{i + 1}"] = new HitField(ArgSpec.AbiArgumentRegisters[i], 64, false);
        foreach (ArgSpec a in spec.Args)
        {
            if (HitFields.Shape(a.Type) is (int bits, bool signed)) fields[a.Name] = new HitField(a.SourceRegister, bits, signed);
            else fields.Remove(a.Name);
        }
        return fields;
    }

    /// <summary>
    /// Decides at install time whether a site can be patched in process: every probe on it must allow it,
    /// and the function's code must (see PatchSiteAnalyzer). Null plan: the trap path, with the reason noted.
    /// </summary>
    private PatchablePlan? PlanPatch(AddressSpace mm, ulong addr, FileSite? fileSite, ElfImage? image, Probe probe, out string? why)
    {
        why = InProcessRefusal(probe);
        if (why is not null) return null;
        if (fileSite is null || image is null || fileSite.FunctionSize == 0)
        {
            why = "the function's size is unknown";
            return null;
        }
        ulong functionStart = addr - (ulong)(fileSite.FileOffset - fileSite.FunctionFileOffset);
        int size = (int)Math.Min(fileSite.FunctionSize, 1 << 20);
        byte[] code = mm.ReadOriginalCode(functionStart, size);
        if (code.Length < size)
        {
            why = "cannot read the whole function";
            return null;
        }
        var related = new List<CodeRange>();
        if (probe.Symbol is string name)
        {
            foreach (string cold in new[] { name + ".cold", name + ".cold.0", name + ".cold.1" })
            {
                foreach (ElfSymbol s in image.FindSymbols(cold))
                {
                    if (image.VaddrToFileOffset(s.Value) is not long off || s.Size == 0 || s.Size > 1 << 20) continue;
                    ulong at = (ulong)((long)addr + (off - fileSite.FileOffset));
                    byte[] c = mm.ReadOriginalCode(at, (int)s.Size);
                    if (c.Length == (int)s.Size) related.Add(new CodeRange(at, c));
                }
            }
        }
        PatchDecision decision;
        try { decision = PatchSiteAnalyzer.Analyze(new CodeRange(functionStart, code), addr, related); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            why = $"cannot analyse the function: {e.Message}";
            return null;
        }
        if (decision is RefusedPatch r)
        {
            why = r.Reason;
            return null;
        }
        return (PatchablePlan)decision;
    }

    /// <summary>
    /// Whether one of uprec's own hooks (the loader, execve, the unwinder's entries) can become a guarded
    /// jmp (see TrampolineBuilder.BuildGuardedHook) instead of a bare int3 that would kill the program
    /// with SIGTRAP if uprec died. Either the
    /// function analysis accepts it (execve: mov eax,59 first), or it is a lone `ret` followed by
    /// alignment padding up to its 16-byte slot (_dl_debug_state), whose bytes 1-4 nothing executes.
    /// Only when uprec is in the program's pid namespace: the guard reads TracerPid, which shows 0 for
    /// a tracer outside it (and falls back to kill(pid, 0), which needs the pid as the program sees it).
    /// </summary>
    private PatchablePlan? PlanHookPatch(AddressSpace mm, ulong addr, byte[] code, ulong size)
    {
        if (HitPath == HitPathMode.Trap || !SamePidNamespace(mm.Memory.Pid) || code.Length < 16) return null;
        var decoder = Iced.Intel.Decoder.Create(64, new Iced.Intel.ByteArrayCodeReader(code), addr);
        decoder.Decode(out Iced.Intel.Instruction first);
        if (first.Mnemonic == Iced.Intel.Mnemonic.Ret && first.Length == 1 && (addr & 15) + PatchSiteAnalyzer.JumpLength <= 16)
        {
            int end = (int)(16 - (addr & 15));
            for (int i = 1; i < end; )
            {
                decoder.IP = addr + (ulong)i;
                decoder.Decode(out Iced.Intel.Instruction pad);
                if (pad.IsInvalid || (pad.Mnemonic != Iced.Intel.Mnemonic.Nop && pad.Mnemonic != Iced.Intel.Mnemonic.Int3)) return null;
                i += pad.Length;
            }
            return new PatchablePlan(1, [first]);
        }
        if (size < (ulong)PatchSiteAnalyzer.JumpLength || size > 1 << 16) return null;
        byte[] function = mm.ReadOriginalCode(addr, (int)size);
        if (function.Length != (int)size) return null;
        return PatchSiteAnalyzer.Analyze(new CodeRange(addr, function), addr, []) as PatchablePlan;
    }

    private readonly Dictionary<int, bool> _samePidNamespace = [];

    private bool SamePidNamespace(int pid)
    {
        if (_samePidNamespace.TryGetValue(pid, out bool same)) return same;
        string? mine = ReadLink("/proc/self/ns/pid");
        same = mine is not null && mine == ReadLink($"/proc/{pid}/ns/pid");
        _samePidNamespace[pid] = same;
        return same;
    }

    /// <summary>
    /// At a trap stop of <paramref name="task"/>: patch every site of its address space that waits for
    /// it. Needs the thread's TLS (its fs base is its identity) and all threads held, none inside the
    /// five bytes; a site that cannot be patched now stays on int3 and is tried again at the next trap.
    /// </summary>
    /// <returns>True when <paramref name="trapped"/> (the site <paramref name="task"/> stopped on) was
    /// patched: the task's hit is already counted, and it now continues in the trampoline's tail.</returns>
    private bool TryPromote(TracedTask task, Site? trapped)
    {
        AddressSpace mm = task.Process.Mm;
        if (_ending || !mm.PatchesMayBePending) return false;
        var pending = mm.Sites.Values.Where(s => s.NeedsPatch).ToList();
        if (pending.Count == 0)
        {
            mm.PatchesMayBePending = false;
            return false;
        }
        user_regs_struct own = Sys.GetRegs(task.Tid);
        if (own.fs_base == 0) return false; // before the thread has TLS: the next trap after it will do
        if (mm.Area is null)
        {
            ulong table = MapNamed(task, "uprec-threads", (ulong)L.ThreadsMappingSize);
            if (table == 0)
            {
                foreach (Site s in mm.Sites.Values.Where(s => s.Patch is not null)) GiveUpPatch(s, "cannot map the thread table in the target");
                return false;
            }
            mm.Area = new InProcessArea(task.Process.Pid, table);
            Drainer.Track(mm.Area);
        }
        List<TracedTask>? held = HoldAddressSpace(mm, task);
        if (held is null) return false;
        bool moved = false;
        try
        {
            var stopped = _tasks.Values.Where(t => t.Process.Mm == mm && t.Stopped && !t.Exiting).ToList();
            var rips = new List<ulong>();
            foreach (TracedTask t in stopped)
            {
                user_regs_struct regs = t == task ? own : Sys.GetRegs(t.Tid);
                // The trapped task stands before its site, not inside it: it is moved past it below.
                if (t != task || trapped is null || regs.rip != trapped.Address + 1) rips.Add(regs.rip);
                RegisterThread(t, regs.fs_base, task);
            }
            foreach (Site site in pending)
            {
                // A thread inside the five bytes, or in the site's out-of-line copy (which jumps back to
                // the second instruction), would land in the middle of the jmp: try again later.
                if (rips.Any(r => (r > site.Address && r < site.Address + PatchSiteAnalyzer.JumpLength)
                                  || (site.Slot != 0 && r >= site.Slot && r < site.Slot + TrapPlanner.SlotSize))) continue;
                if (Patch(task, site) is ulong tail && site == trapped)
                {
                    Sys.SetRip(task.Tid, tail);
                    moved = true;
                }
            }
        }
        finally
        {
            foreach (TracedTask t in held)
            {
                try { Resume(t, 0); }
                catch (TaskGoneException) { }
            }
        }
        return moved;
    }

    private void GiveUpPatch(Site site, string why)
    {
        site.Patch = null;
        foreach (Probe p in site.Probes) p.Note = why;
    }

    /// <summary>
    /// Writes the trampoline and the jmp over the int3 (or re-points the jmp at a new trampoline).
    /// Runs on the tracer thread: its tid is what the guards compare TracerPid with (the kernel names
    /// the tracing thread there, not uprec's process).
    /// Returns the address of the trampoline's tail (the displaced instructions), or null on failure.
    /// </summary>
    private ulong? Patch(TracedTask injector, Site site)
    {
        AddressSpace mm = injector.Process.Mm;
        PatchablePlan plan = site.Patch!;
        var probes = site.Probes.Select(p => new TrampolineProbe(p.Id, p.Spec.Args.Select(a => a.SourceRegister).ToList(),
            TrampolineFilter(p), TrampolineFields(p.Spec))).ToList();
        var returnIds = site.Probes.Where(p => p.Spec.IsReturn).Select(p => p.Id).ToList();
        ReturnHijack? hijack = null;
        if (site.Kind == SiteKind.Probe && returnIds.Count > 0)
        {
            // The site's own return trampoline, reached by ret: it needs no nearness, only room.
            int returnRoom = 320 + 128 * returnIds.Count;
            ulong returnAt = TakeTrampolineSpace(injector, site, returnRoom);
            if (returnAt == 0) return null;
            var (returnCode, lostOffset) = TrampolineBuilder.BuildReturn(returnAt, mm.Area!.Table, returnIds);
            if (returnCode.Length > returnRoom || !mm.Memory.TryWrite(returnAt, returnCode))
            {
                GiveUpPatch(site, "cannot write the return trampoline");
                return null;
            }
            hijack = new ReturnHijack(returnAt, SamePidNamespace(mm.Memory.Pid) ? Unistd.gettid() : 0);
            mm.InProcessReturnTrampolines.Add(returnAt);
            mm.LostReturnTraps[returnAt + (ulong)lostOffset] = returnAt;
        }
        // Generous bounds on the generated code (checked below): the hijack and the guards carry a
        // /proc/self/status reader for their rare stops.
        int room = site.Kind == SiteKind.Probe ? 512 + 160 * probes.Count + (hijack is null ? 0 : 480) : 1024;
        ulong at = TakeTrampolineSpace(injector, site, room);
        if (at == 0) return null;
        byte[] code;
        int tailOffset, trapOffset = -1;
        try
        {
            if (site.Kind == SiteKind.Probe)
                (code, tailOffset, trapOffset) = TrampolineBuilder.Build(at, mm.Area!.Table, saveFlags: site.FlagsLive, probes,
                    tail => PatchSiteAnalyzer.Relocate(plan, site.Address, tail), hijack);
            else
                (code, trapOffset, tailOffset) = TrampolineBuilder.BuildGuardedHook(at, Unistd.gettid(),
                    tail => PatchSiteAnalyzer.Relocate(plan, site.Address, tail),
                    site.Kind is SiteKind.Unwind or SiteKind.Backtrace ? mm.Area!.Table : 0);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            GiveUpPatch(site, $"cannot build the trampoline: {e.Message}");
            return null;
        }
        if (code.Length > room || !mm.Memory.TryWrite(at, code))
        {
            GiveUpPatch(site, "cannot write the trampoline");
            return null;
        }
        var jmp = new byte[PatchSiteAnalyzer.JumpLength];
        jmp[0] = 0xE9;
        BitConverter.TryWriteBytes(jmp.AsSpan(1), (int)((long)at - (long)(site.Address + 5)));
        // Bytes 1..4 first: until byte 0 turns from int3 into jmp, a thread that somehow got here still traps.
        if (!mm.Memory.TryWrite(site.Address + 1, jmp.AsSpan(1)) || !mm.Memory.TryWrite(site.Address, jmp.AsSpan(0, 1)))
        {
            mm.Memory.TryWrite(site.Address, [0xCC, .. site.Original.AsSpan(1, 4)]);
            GiveUpPatch(site, "cannot write the jump");
            return null;
        }
        site.Promoted = true;
        site.Stale = false;
        if (trapOffset >= 0) mm.HookTraps[at + (ulong)trapOffset] = site;
        foreach (Probe p in site.Probes)
        {
            p.HitPath = "inprocess";
            p.Note = null;
            Drainer.AddProbe(p);
        }
        return at + (ulong)tailOffset;
    }

    /// <summary>Room for a trampoline in the out-of-line area within reach of the site (mapping more if needed); 0 when there is none.</summary>
    private ulong TakeTrampolineSpace(TracedTask injector, Site site, int room)
    {
        AddressSpace mm = injector.Process.Mm;
        ulong at = mm.TryTakeSpace(site.Address, room);
        if (at != 0) return at;
        try { MapXolRegion(injector, site.Address); }
        catch (ProbingException e)
        {
            GiveUpPatch(site, e.Message);
            return 0;
        }
        return mm.TryTakeSpace(site.Address, room);
    }

    /// <summary>
    /// Stops every other running task of the address space (PTRACE_INTERRUPT) and waits for each. Stops
    /// other than our interrupt (a trap, a signal, an exit) are queued for the main loop, which handles
    /// them as if they had come later. Null when a task would not stop: then nothing is patched now.
    /// </summary>
    private List<TracedTask>? HoldAddressSpace(AddressSpace mm, TracedTask except)
    {
        var others = _tasks.Values.Where(t => t.Process.Mm == mm && t != except && !t.Stopped && !t.Exiting && !t.InVfork).ToList();
        var interrupted = new List<TracedTask>();
        foreach (TracedTask t in others)
        {
            try { Sys.Interrupt(t.Tid); interrupted.Add(t); }
            catch (TaskGoneException) { }
        }
        var held = new List<TracedTask>();
        bool complete = true;
        long giveUp = Sys.MonotonicNs() + 1_000_000_000;
        foreach (TracedTask t in interrupted)
        {
            while (true)
            {
                int r = Sys.WaitAny(t.Tid, out int status, noHang: true);
                if (r == 0)
                {
                    if (Sys.MonotonicNs() > giveUp) { complete = false; break; }
                    Thread.Yield();
                    continue;
                }
                if (r != t.Tid) break;
                if (!Wait.WIFSTOPPED(status))
                {
                    _deferred.Enqueue((t.Tid, status));
                    break;
                }
                t.Stopped = true;
                int sig = Wait.WSTOPSIG(status);
                if (Wait.PtraceEvent(status) == PTRACE_EVENT_STOP && sig is not (SIGSTOP or SIGTSTP or SIGTTIN or SIGTTOU))
                    held.Add(t);
                else
                    _deferred.Enqueue((t.Tid, status)); // its own stop; the interrupt stop follows later, harmlessly
                break;
            }
        }
        if (complete) return held;
        foreach (TracedTask t in held)
        {
            try { Resume(t, 0); }
            catch (TaskGoneException) { }
        }
        return null;
    }

    /// <summary>
    /// Gives a thread its block: a table entry keyed by its fs base pointing at a fresh ring. A thread
    /// whose fs base is already known inherits that block (glibc reuses the TCBs of finished threads);
    /// one that finds both table ways taken counts in the shared counters, without samples.
    /// </summary>
    private void RegisterThread(TracedTask task, ulong fsBase, TracedTask injector)
    {
        InProcessArea? area = task.Process.Mm.Area;
        if (area is null || fsBase == 0) return;
        if (area.ByKey.TryGetValue(fsBase, out ThreadBlock? known))
        {
            TracedTask? owner = known.Owner;
            if (owner is null || !_tasks.ContainsKey(owner.Tid) || owner.Exiting || owner.Process.Mm != task.Process.Mm)
            {
                // A finished thread's calls in flight never return: its successor starts with an empty
                // shadow stack. (A forked child's block has no owner yet and keeps its entries: its
                // stack is a copy of the parent's, hijacked slots included.)
                if (owner is not null && owner != task && owner.Process.Mm == task.Process.Mm)
                    task.Process.Mm.Memory.TryWrite(known.Address + L.ShadowDepthOffset, new byte[8]);
                known.Owner = task;
                known.StuckAt = ThreadBlock.NotStuck;
            }
            return;
        }
        int entry = area.FreeEntryFor(fsBase);
        if (entry < 0) return;
        ulong block = MapNamed(injector, "uprec-ring", (ulong)L.BlockSize);
        if (block == 0) return;
        AddressSpace mm = task.Process.Mm;
        ulong entryAddress = area.Table + (ulong)entry * L.TableEntrySize;
        // The block first, then the key: a thread that matches the key must find a valid block.
        if (!mm.Memory.TryWrite(entryAddress + 8, BitConverter.GetBytes(block))
            || !mm.Memory.TryWrite(entryAddress, BitConverter.GetBytes(fsBase))) return;
        var b = new ThreadBlock(block, fsBase, entry) { Owner = task };
        using (_sinkLock.Enter())
        {
            area.UsedEntries.Add(entry);
            area.ByKey[fsBase] = b;
            area.Blocks.Add(b);
        }
    }

    /// <summary>A new thread's first stop: give it a block before it runs any probed code.</summary>
    private void RegisterNewThread(TracedTask task)
    {
        if (task.Process.Mm.Area is null) return;
        try { RegisterThread(task, Sys.GetRegs(task.Tid).fs_base, task); }
        catch (ProbingException e) { _log.Warn($"thread {task.Tid}: {e.Message}; its hits are counted without samples"); }
    }

    private const ulong SYS_close = 3, SYS_ftruncate = 77, SYS_memfd_create = 319;
    private const ulong PROT_WRITE = 2, MAP_NORESERVE = 0x4000, MFD_CLOEXEC = 1;

    /// <summary>
    /// Maps <paramref name="size"/> bytes of zeroed, private memory in the stopped task's process, backed by
    /// a memfd named <paramref name="name"/> so /proc/PID/maps shows what it is. 0 on failure.
    /// </summary>
    private ulong MapNamed(TracedTask task, string name, ulong size)
    {
        user_regs_struct regs = Sys.GetRegs(task.Tid);
        // The name goes below the red zone of the stopped thread's stack, which nothing uses meanwhile.
        ulong nameAt = (regs.rsp - 512) & ~15UL;
        byte[] bytes = [.. System.Text.Encoding.ASCII.GetBytes(name), 0];
        byte[] saved = new byte[bytes.Length];
        if (!task.Process.Mm.Memory.TryRead(nameAt, saved) || !task.Process.Mm.Memory.TryWrite(nameAt, bytes)) return 0;
        try
        {
            ulong fd = InjectSyscall(task, SYS_memfd_create, nameAt, MFD_CLOEXEC, 0, 0, 0, 0);
            if ((long)fd < 0) return 0;
            ulong addr = 0;
            if ((long)InjectSyscall(task, SYS_ftruncate, fd, size, 0, 0, 0, 0) == 0)
            {
                addr = InjectSyscall(task, SYS_mmap, 0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
                if ((long)addr is < 0 and >= -4095) addr = 0;
            }
            InjectSyscall(task, SYS_close, fd, 0, 0, 0, 0, 0);
            return addr;
        }
        finally
        {
            task.Process.Mm.Memory.TryWrite(nameAt, saved);
        }
    }

    /// <summary>Drains an address space's rings and reads its counters (thread exit, execve, detach).</summary>
    private void DrainAddressSpace(AddressSpace mm, bool close = false, TracedTask? exiting = null)
    {
        if (mm.Area is InProcessArea area) _drainer?.DrainNow(area, close, exiting);
    }

    /// <summary>
    /// A thread at its exit stop: its memory is still there, so the area is read through it; afterwards
    /// through a thread that is not exiting (a zombie leader's pid no longer reaches the memory).
    /// </summary>
    private void DrainAtExit(TracedTask task)
    {
        AddressSpace mm = task.Process.Mm;
        if (mm.Area is not InProcessArea area) return;
        area.Pid = task.Tid;
        // Its own block is drained for the last time: a record it left half-written stays so.
        DrainAddressSpace(mm, exiting: task);
        TracedTask? live = _tasks.Values.FirstOrDefault(t => t != task && t.Process.Mm == mm && !t.Exiting);
        if (live is not null) area.Pid = live.Tid;
    }

    /// <summary>
    /// execve replaces the address space before uprec hears of it (PTRACE_EVENT_EXEC comes after), so
    /// libc's exec entries get an internal breakpoint where the rings and counters are read one last time.
    /// </summary>
    private static readonly string[] ExecEntries = ["execve", "execveat", "fexecve"];

    private void HookExec(AddressSpace mm, MapEntry m, FileKey key)
    {
        if (!Path.GetFileName(m.Path!).StartsWith("libc.so", StringComparison.Ordinal)) return;
        if (HookImage(key, m.Path!) is not ElfImage image) return;
        foreach (string symbol in ExecEntries)
        {
            ElfSymbol? sym = image.FindSymbol(symbol);
            long? off = sym is null ? null : image.VaddrToFileOffset(sym.Value);
            if (off is not long o || o < (long)m.Offset || o >= (long)m.Offset + (long)(m.End - m.Start)) continue;
            Install(mm, m.Start + (ulong)(o - (long)m.Offset), key, o, image, null, SiteKind.Exec, hookSize: sym!.Size);
        }
    }

    /// <summary>Whether any probe could go in process (then libc's execve gets uprec's hook). Asked for every
    /// mapping of every process, so decided once per size of the catalog (globs add probes while tracing).</summary>
    private bool InProcessPossible
    {
        get
        {
            if (_inProcessPossibleFor != _catalog.Probes.Count)
            {
                _inProcessPossible = HitPath != HitPathMode.Trap && Fsgsbase && _catalog.Probes.Any(p => InProcessRefusal(p) is null);
                _inProcessPossibleFor = _catalog.Probes.Count;
            }
            return _inProcessPossible;
        }
    }

    private bool _inProcessPossible;
    private int _inProcessPossibleFor = -1;

    /// <summary>Whether any probe of the catalog as it is now could go in process (the recorder then reserves row memory).</summary>
    public bool MayGoInProcess => InProcessPossible;

    /// <summary>The exact in-process counts, once nothing runs any more: added to each probe's total.</summary>
    public void FinishInProcess()
    {
        if (_drainer is null) return;
        _drainer.Dispose();
        if (_drainer.Failure is Exception e) _log.Warn($"draining the in-process rings stopped early: {e.Message}; counts are exact, samples after it are lost");
        long[] totals = _drainer.Totals();
        foreach (Probe p in _catalog.Probes)
        {
            if (p.Id >= totals.Length) continue;
            p.InProcessRows = _drainer.RowsOf(p.Id);
            p.InProcessCount = Math.Max(0, totals[p.Id]);
            // Every row was a counted hit: fewer counts than rows means the program wrote over its
            // counters (they live in its memory). Report what is certain, and say so.
            if (p.InProcessCount < p.InProcessRows)
            {
                _log.Warn($"{p.Name}: the program overwrote uprec's counters in its memory; its count is at least the {p.InProcessRows} samples kept");
                p.InProcessCount = p.InProcessRows;
            }
        }
    }
}
