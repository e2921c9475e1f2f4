using Uprec.Filters;
using Uprec.Native;
using Uprec.Probing.Arch;
using Uprec.Symbols;
using Uprec.Trace;
using static Uprec.Native.Signals;

namespace Uprec.Probing.Engine;

/// <summary>The trap hit path and the syscalls injected into the target (the out-of-line area).</summary>
internal sealed partial class Tracer
{
    // ---------------------------------------------------------------- the hit path

    /// <summary>
    /// A SIGTRAP stop. If it is one of our int3s: count the hit, then make the thread execute the
    /// displaced instruction out of line (or emulate it) and continue: one stop per hit, and the
    /// int3 stays in place, so no other thread can run past the site unseen.
    /// </summary>
    private bool OnTrap(TracedTask task)
    {
        ulong rip = Sys.GetRip(task.Tid);
        AddressSpace mm = task.Process.Mm;
        if (rip - 1 == mm.ReturnTrampoline && mm.ReturnTrampoline != 0)
        {
            OnReturn(task, Sys.MonotonicNs(), resume: true);
            return true;
        }
        if (mm.LostReturnTraps.TryGetValue(rip - 1, out ulong returnTrampoline))
        {
            if (!RescueLostReturn(task, returnTrampoline)) return false; // the program gets its SIGTRAP
            Resume(task, 0);
            return true;
        }
        if (mm.HookTraps.TryGetValue(rip - 1, out Site? hook))
        {
            if (hook.Kind == SiteKind.Probe)
            {
                // An entry trampoline whose thread's shadow stack is full asks for room.
                DropAbandonedShadowEntries(task);
                Resume(task, 0);
                return true;
            }
            // A guarded hook's own int3 (the site itself is a jmp now): its event, then on in the trampoline.
            OnHook(task, hook, Sys.GetRegs(task.Tid).rsp + (ulong)TrampolineBuilder.GuardedHookFrame);
            if (hook.IsLoaderEvent && !_ending) ScanMappings(task.Process);
            TryPromote(task, null);
            Resume(task, 0);
            return true;
        }
        if (!mm.Sites.TryGetValue(rip - 1, out Site? site)) return false;
        if (site.Removed)
        {
            // A thread that reached the int3 just before it was removed: run the original instruction.
            Sys.SetRip(task.Tid, site.Address);
            Resume(task, 0);
            return true;
        }
        long now = Sys.MonotonicNs();
        if (site.Probes.Count > 0) RecordEntry(task, site, now);
        OnHook(task, site, Sys.GetRegs(task.Tid).rsp);
        if (site.IsLoaderEvent && !_ending) ScanMappings(task.Process);
        // Before the task moves on: if its own site is patched now, it continues in the trampoline.
        bool moved = !site.Removed && TryPromote(task, site);
        if (site.Removed) Sys.SetRip(task.Tid, site.Address);
        else if (!moved) ContinuePastSite(task, site);
        Resume(task, 0);
        return true;
    }

    /// <summary>What one of uprec's own hooks does at its stop; <paramref name="entryRsp"/> is rsp at the hooked function's entry.</summary>
    private void OnHook(TracedTask task, Site site, ulong entryRsp)
    {
        switch (site.Kind)
        {
            case SiteKind.Unwind: RestoreReturnAddresses(task); break;
            case SiteKind.Catch: RehijackAfterCatch(task, entryRsp); break;
            case SiteKind.Backtrace: OnBacktrace(task, entryRsp); break;
            case SiteKind.Rehijack: OnRehijack(task, site); break;
            case SiteKind.Exec: DrainAddressSpace(task.Process.Mm); break;
        }
    }

    private void RecordEntry(TracedTask task, Site site, long now)
    {
        task.Comm ??= ReadComm(task.Tid) ?? "";
        var hit = new HitRecord
        {
            TimeNs = now, Pid = task.Process.Pid, Tid = task.Tid, Kind = HitKind.Entry, DurationNs = -1, Comm = task.Comm,
        };
        user_regs_struct regs = default;
        bool haveRegs = false;
        List<Probe>? returning = null;
        foreach (Probe p in site.Probes)
        {
            FilterDecision wants = Wants(task.Process, p);
            if (wants == FilterDecision.No) continue;
            object?[]? captured = null;
            if (p.NeedsRegisters || p.Spec.IsReturn)
            {
                if (!haveRegs) { regs = Sys.GetRegs(task.Tid); haveRegs = true; }
                if (p.Spec.Args.Count > 0) captured = HitFields.Capture(p.Spec, regs, task.Process.Mm.Memory);
            }
            if (wants == FilterDecision.Maybe && !p.Filter!.Evaluate(HitFields.ForHit(task, p.Spec, regs, captured))) continue;
            p.Count++;
            hit.ProbeId = p.Id;
            hit.Args = captured;
            using (_sinkLock.Enter()) _writer.Append(in hit);
            if (p.Spec.IsReturn) (returning ??= []).Add(p);
        }
        if (returning is not null && !_ending) HijackReturn(task, site, returning, regs.rsp, now);
    }

    private void ContinuePastSite(TracedTask task, Site site)
    {
        TrapPlan plan = site.Plan ?? PlanSite(task, site);
        switch (plan)
        {
            case OutOfLinePlan:
                Sys.SetRip(task.Tid, site.Slot);
                break;
            case EmulatePlan e:
                user_regs_struct regs = Sys.GetRegs(task.Tid);
                regs.rip = site.Address;
                if (!Emulator.TryExecute(e, ref regs, task.Process.Mm.Memory, out string? error))
                {
                    RemoveSite(task.Process.Mm, site, $"cannot emulate '{plan.Instruction}': {error}");
                    regs.rip = site.Address;
                }
                Sys.SetRegs(task.Tid, regs);
                break;
            default:
                RemoveSite(task.Process.Mm, site, (plan as UnsupportedPlan)?.Reason ?? "unsupported");
                Sys.SetRip(task.Tid, site.Address);
                break;
        }
    }

    private void RemoveSite(AddressSpace mm, Site site, string why)
    {
        mm.Memory.TryWrite(site.Address, site.Original.AsSpan(0, site.PatchedLength));
        site.Removed = true;
        foreach (Probe p in site.Probes) p.Note = why;
        _log.Warn($"probe at 0x{site.Address:x} removed: {why}");
    }

    /// <summary>First hit of a site in this address space: take an out-of-line slot near it and write the copy.</summary>
    private TrapPlan PlanSite(TracedTask task, Site site)
    {
        AddressSpace mm = task.Process.Mm;
        ulong slot = mm.TryTakeSlot(site.Address);
        if (slot == 0)
        {
            try { MapXolRegion(task, site.Address); }
            catch (ProbingException e)
            {
                // This site cannot run out of line; the others can still be recorded.
                return new UnsupportedPlan(0, "", e.Message);
            }
            slot = mm.TryTakeSlot(site.Address);
        }
        TrapPlan plan = TrapPlanner.Plan(site.Original, site.Address, slot);
        if (plan is OutOfLinePlan ool) mm.Memory.Write(slot, ool.SlotCode);
        site.Plan = plan;
        site.Slot = slot;
        return plan;
    }

    // ---------------------------------------------------------------- injected syscalls

    private const ulong SYS_mmap = 9;
    private const ulong PROT_READ = 1, PROT_EXEC = 4;
    private const ulong MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_FIXED_NOREPLACE = 0x100000;

    /// <summary>Maps an XOL region within +-2 GB of <paramref name="near"/> by making the stopped task call mmap.</summary>
    private void MapXolRegion(TracedTask task, ulong near)
    {
        AddressSpace mm = task.Process.Mm;
        IReadOnlyList<MapEntry> maps = ReadMaps(task.Process);
        int tries = 0;
        foreach (ulong candidate in AddressSpace.CandidateXolAddresses(maps, near))
        {
            if (++tries > 16) break;
            ulong r = InjectSyscall(task, SYS_mmap, candidate, AddressSpace.XolRegionSize, PROT_READ | PROT_EXEC,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, ulong.MaxValue, 0);
            if (r == candidate)
            {
                mm.Xol.Add(new XolRegion(candidate, AddressSpace.XolRegionSize));
                return;
            }
            if ((long)r is < 0 and >= -4095 && (long)r != -Errno.EEXIST)
                throw new ProbingException($"cannot map the out-of-line area in process {task.Process.Pid}: {Errno.Describe((int)-(long)r)}");
        }
        throw new ProbingException($"no free address range within 2 GB of 0x{near:x} in process {task.Process.Pid} for the out-of-line area");
    }

    /// <summary>
    /// Makes a stopped task execute one system call: its registers are saved, set up for the call with
    /// RIP on an existing `syscall` instruction of the target, single-stepped once, and restored. No
    /// code is written, so other threads running the same code are unaffected.
    /// Must run on the tracer thread with the task in a signal-delivery-stop (not inside a syscall).
    /// </summary>
    private ulong InjectSyscall(TracedTask task, ulong nr, ulong a0, ulong a1, ulong a2, ulong a3, ulong a4, ulong a5)
    {
        AddressSpace mm = task.Process.Mm;
        if (mm.SyscallInstruction == 0) mm.SyscallInstruction = FindSyscallInstruction(task.Process);
        user_regs_struct saved = Sys.GetRegs(task.Tid);
        user_regs_struct regs = saved;
        regs.rax = nr;
        regs.orig_rax = ulong.MaxValue;
        regs.rdi = a0; regs.rsi = a1; regs.rdx = a2; regs.r10 = a3; regs.r8 = a4; regs.r9 = a5;
        regs.rip = mm.SyscallInstruction;
        Sys.SetRegs(task.Tid, regs);
        while (true)
        {
            Sys.SingleStep(task.Tid);
            int r = Sys.WaitAny(task.Tid, out int status);
            if (r != task.Tid || !Wait.WIFSTOPPED(status)) throw new TaskGoneException(task.Tid);
            int sig = Wait.WSTOPSIG(status);
            if (Wait.PtraceEvent(status) == 0 && sig == SIGTRAP) break;
            // A signal arrived first: hold it for the next resume; the step has not happened yet.
            if (Wait.PtraceEvent(status) == 0) HoldSignal(task, sig);
        }
        ulong result = Sys.GetRegs(task.Tid).rax;
        Sys.SetRegs(task.Tid, saved);
        return result;
    }

    /// <summary>Any `0f 05` byte pair in an executable mapping executes as syscall when RIP points at it.</summary>
    private static ulong FindSyscallInstruction(TracedProcess process)
    {
        IReadOnlyList<MapEntry> maps = ReadMaps(process);
        var ordered = maps.Where(m => m.Executable).OrderBy(m => m.Path == "[vdso]" ? 0 : 1);
        var buffer = new byte[64 * 1024];
        foreach (MapEntry m in ordered)
        {
            if (m.Path == "[vsyscall]") continue;
            for (ulong at = m.Start; at < m.End; at += (ulong)buffer.Length - 1)
            {
                int len = (int)Math.Min((ulong)buffer.Length, m.End - at);
                if (!process.Mm.Memory.TryRead(at, buffer.AsSpan(0, len))) break;
                int i = buffer.AsSpan(0, len).IndexOf((ReadOnlySpan<byte>)[0x0f, 0x05]);
                if (i >= 0) return at + (ulong)i;
            }
        }
        throw new ProbingException($"no syscall instruction found in process {process.Pid} to map the out-of-line area");
    }
}
