using Uprec.Native;
using static Uprec.Native.Ptrace;
using static Uprec.Native.Signals;

namespace Uprec.Probing.Engine;

/// <summary>The one way out: stop every task, restore every byte and return address, detach.</summary>
internal sealed partial class Tracer
{
    // ---------------------------------------------------------------- ending

    /// <summary>
    /// The one way out for signals and errors: stop every task, put every original byte back, move
    /// threads caught on an int3 back to the site, and detach. The XOL areas stay mapped, so a thread
    /// that is inside a slot finishes its instruction and jumps back into the program.
    /// </summary>
    public void EndTracing(StopReason reason)
    {
        StoppedBy = reason;
        _ending = true;
        while (_deferred.Count > 0)
        {
            var (tid, status) = _deferred.Dequeue();
            try { CollectStop(tid, status); }
            catch (TaskGoneException) { }
        }
        foreach (TracedTask t in _tasks.Values)
        {
            if (t.Stopped || t.Exiting) continue;
            try { Sys.Interrupt(t.Tid); }
            catch (TaskGoneException) { }
        }
        // Tasks that cannot stop are not waited for: a zombie leader (its exit is reported only with
        // the last thread's) and a vfork parent (asleep until its child execs; it shares the child's
        // memory, which is restored below). Neither runs program code until it is detached.
        long giveUp = Sys.MonotonicNs() + 2_000_000_000;
        while ((_tasks.Values.Any(t => !t.Stopped && !t.Exiting && !t.InVfork) || _expected.Count > 0)
               && Sys.MonotonicNs() < giveUp)
        {
            int tid = Sys.WaitAny(-1, out int status, noHang: true);
            if (tid < 0) break;
            if (tid == 0) { Thread.Sleep(1); continue; }
            if (tid == _wakerPid) { _wakerPid = 0; continue; }
            try { CollectStop(tid, status); }
            catch (TaskGoneException) { }
        }
        // New processes stopped before their parent's event: copies of the parent's memory, patches
        // included. Adopt them so they are restored and detached like the rest.
        foreach (int tid in _parked.Keys.ToList())
        {
            _parked.Remove(tid);
            TracedTask? child = AdoptThread(tid) ?? AdoptOrphan(tid);
            if (child is not null) child.Stopped = true;
        }
        RestoreAllReturnAddresses(_tasks.Values.Where(t => t.Stopped));
        foreach (AddressSpace mm in _processes.Values.Select(p => p.Mm).Distinct())
        {
            // Everything is held: the counters are final and the rings hold the last samples. The
            // trampolines stay mapped and inert, so a thread inside one finishes and jumps back.
            DrainAddressSpace(mm, close: true);
            // A thread still inside a guarded hook's trampoline must not meet its int3 once uprec is
            // gone from it (uprec may still be alive then, so the guard would let it trap): nop it.
            foreach (ulong trap in mm.HookTraps.Keys) mm.Memory.TryWrite(trap, [0x90]);
            foreach (Site site in mm.Sites.Values)
            {
                if (site.Removed) continue;
                mm.Memory.TryWrite(site.Address, site.Original.AsSpan(0, site.PatchedLength));
                site.Removed = true;
            }
        }
        foreach (TracedTask t in _tasks.Values.ToList())
        {
            RememberTask(t);
            if (!t.Stopped) continue; // detached by the kernel when uprec exits
            try { Sys.Detach(t.Tid, t.PendingSignal); }
            catch (TaskGoneException) { }
            catch (InvalidOperationException e) { _log.Warn(e.Message); }
        }
        _tasks.Clear();
        foreach (TracedProcess p in _processes.Values) p.Mm.Dispose();
        _processes.Clear();
    }

    /// <summary>A stop while ending: hold the task, keeping what the stop means for the program.</summary>
    private void CollectStop(int tid, int status)
    {
        if (!_tasks.TryGetValue(tid, out TracedTask? task))
        {
            if (Wait.WIFSTOPPED(status) && _expected.Remove(tid, out Creation c)) CreateChild(c, tid).Stopped = true;
            else if (Wait.WIFSTOPPED(status)) _parked[tid] = status;
            return;
        }
        if (!Wait.WIFSTOPPED(status))
        {
            OnTaskExit(task, status);
            return;
        }
        task.Stopped = true;
        int sig = Wait.WSTOPSIG(status);
        switch (Wait.PtraceEvent(status))
        {
            case 0 when sig == SIGTRAP:
                ulong rip = Sys.GetRip(tid);
                if (rip - 1 == task.Process.Mm.ReturnTrampoline && task.Process.Mm.ReturnTrampoline != 0)
                {
                    OnReturn(task, Sys.MonotonicNs(), resume: false);
                }
                else if (task.Process.Mm.LostReturnTraps.TryGetValue(rip - 1, out ulong returnTrampoline))
                {
                    if (!RescueLostReturn(task, returnTrampoline)) HoldSignal(task, sig);
                }
                else if (task.Process.Mm.HookTraps.ContainsKey(rip - 1))
                {
                    // A guarded hook's int3: nothing to do now; the thread goes on in the trampoline.
                }
                else if (task.Process.Mm.Sites.TryGetValue(rip - 1, out Site? site))
                {
                    // Count it, then let the original instruction run once the byte is restored.
                    if (site.Probes.Count > 0) RecordEntry(task, site, Sys.MonotonicNs());
                    Sys.SetRip(tid, site.Address);
                }
                else HoldSignal(task, sig);
                break;
            case 0:
                HoldSignal(task, sig);
                break;
            case PTRACE_EVENT_VFORK_DONE:
                task.InVfork = false;
                break;
            case PTRACE_EVENT_CLONE:
            case PTRACE_EVENT_FORK:
            case PTRACE_EVENT_VFORK:
                int child = (int)Sys.GetEventMsg(tid);
                var creation = new Creation(task, Wait.PtraceEvent(status));
                if (_parked.Remove(child)) CreateChild(creation, child).Stopped = true;
                else _expected[child] = creation;
                break;
            case PTRACE_EVENT_EXEC:
                OnExec(task);
                break;
        }
    }
}
