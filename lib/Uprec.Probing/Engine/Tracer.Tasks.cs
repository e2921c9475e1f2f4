using Uprec.Trace;
using static Uprec.Native.Ptrace;

namespace Uprec.Probing.Engine;

/// <summary>Tasks and processes: creation on clone/fork/vfork, adoption of early stops, exits.</summary>
internal sealed partial class Tracer
{
    // ---------------------------------------------------------------- tasks

    private TracedTask AddTask(TracedProcess process, int tid)
    {
        var task = new TracedTask(tid, process);
        process.Tasks[tid] = task;
        _tasks[tid] = task;
        return task;
    }

    /// <summary>
    /// A new thread's first stop can come before its creator's clone event, which exit_group may even
    /// swallow: a thread of a known process needs nothing from that event, so take it at once.
    /// </summary>
    private TracedTask? AdoptThread(int tid)
    {
        ProcStatus? status = ProcStatus.Read(tid);
        if (status is null || status.Tgid == tid || !_processes.TryGetValue(status.Tgid, out TracedProcess? process)) return null;
        TracedTask task = AddTask(process, tid);
        task.Comm = ReadComm(tid);
        RememberTask(task, status);
        _adoptedEarly.Add(tid);
        return task;
    }

    /// <summary>Threads adopted before their creator's clone event; the event, when it comes, is then a no-op.</summary>
    private readonly HashSet<int> _adoptedEarly = [];

    /// <summary>
    /// A new process whose parent's fork event never came (the parent died first, or we are ending):
    /// its memory is a copy of its parent's, patches included, so it gets a copy of the parent's sites.
    /// </summary>
    private TracedTask? AdoptOrphan(int tid)
    {
        ProcStatus? status = ProcStatus.Read(tid);
        if (status is null || !_processes.TryGetValue(status.PPid, out TracedProcess? parent)) return null;
        TracedTask? creator = parent.Tasks.Values.FirstOrDefault();
        if (creator is null) return null;
        return CreateChild(new Creation(creator, PTRACE_EVENT_FORK), tid);
    }

    private void OnNewChild(TracedTask parent, int ev)
    {
        int child = (int)Sys.GetEventMsg(parent.Tid);
        if (_adoptedEarly.Remove(child)) return; // a thread taken at its first stop already (maybe gone since)
        var creation = new Creation(parent, ev);
        if (_parked.Remove(child)) FirstStop(CreateChild(creation, child));
        else _expected[child] = creation;
    }

    private TracedTask CreateChild(Creation creation, int tid)
    {
        TracedProcess parentProcess = creation.Parent.Process;
        var status = ProcStatus.Read(tid);
        bool sameProcess = creation.Event == PTRACE_EVENT_CLONE && (status?.Tgid ?? parentProcess.Pid) == parentProcess.Pid;
        TracedTask task;
        if (sameProcess)
        {
            task = AddTask(parentProcess, tid);
        }
        else
        {
            AddressSpace mm;
            if (creation.Event == PTRACE_EVENT_VFORK)
            {
                // vfork: the child runs in the parent's memory until it execs or exits; share the patches.
                mm = parentProcess.Mm;
                mm.Users++;
            }
            else
            {
                // fork: the kernel copied our patched pages and the XOL area into the child, and the
                // rings and counters with the parent's hits in them: the child's count from there.
                mm = parentProcess.Mm.CloneFor(new ProcessMemory(tid));
                if (parentProcess.Mm.Area is InProcessArea area)
                {
                    mm.Area = area.CopyForChild(tid, Drainer);
                    Drainer.Track(mm.Area);
                }
            }
            var process = new TracedProcess(tid, parentProcess.Pid, mm)
            {
                Accepted = parentProcess.Accepted, Exe = parentProcess.Exe, LoaderHooked = parentProcess.LoaderHooked,
            };
            _processes[tid] = process;
            task = AddTask(process, tid);
            // Only after a real fork are the pages the child's own; a clone event may share them.
            if (creation.Event == PTRACE_EVENT_FORK && process.Accepted) DropUnwanted(process);
        }
        task.Comm = creation.Parent.Comm;
        // A forked child returns through the same stack, hijacked slots included.
        if (!sameProcess)
        {
            task.Frames = creation.Parent.Frames.Select(f => f.Copy()).ToList();
            task.RestoredInProcess = [.. creation.Parent.RestoredInProcess];
        }
        RememberTask(task, status);
        return task;
    }

    /// <summary>A new task's first stop: let it run (unless everything is being detached).</summary>
    private void FirstStop(TracedTask task)
    {
        if (_ending)
        {
            task.Stopped = true;
            return;
        }
        RegisterNewThread(task);
        Resume(task, 0);
    }

    private void OnTaskExit(TracedTask task, int status)
    {
        RememberTask(task);
        _tasks.Remove(task.Tid);
        TracedProcess process = task.Process;
        process.Tasks.Remove(task.Tid);
        if (task.Tid == _workloadPid) _workloadStatus = status;
        if (process.Tasks.Count == 0 && _processes.Remove(process.Pid)) ReleaseAddressSpace(process);
    }

    private void RememberTask(TracedTask task, ProcStatus? status = null)
    {
        status ??= _taskMeta.ContainsKey(task.Tid) ? null : ProcStatus.Read(task.Tid);
        _taskMeta.TryGetValue(task.Tid, out TaskMeta? old);
        _taskMeta[task.Tid] = new TaskMeta
        {
            Pid = task.Process.Pid,
            Tid = task.Tid,
            Ppid = task.Process.Ppid,
            Comm = task.Comm ?? old?.Comm ?? ReadComm(task.Tid) ?? "",
            Exe = task.Process.Exe ?? old?.Exe,
            NsPid = status?.NsPid ?? old?.NsPid ?? [],
        };
    }

    private static string? ReadComm(int tid)
    {
        try { return File.ReadAllText($"/proc/{tid}/comm").TrimEnd('\n'); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>
    /// A process is done with its address space (exit or exec). The in-process area was read at the last
    /// chance (thread exit, execve); its pid may now be another image's, so it is never read again,
    /// unless a vfork partner still shares it, which then becomes the one it is read through.
    /// </summary>
    private void ReleaseAddressSpace(TracedProcess process)
    {
        AddressSpace mm = process.Mm;
        if (mm.Area is InProcessArea area)
        {
            TracedProcess? partner = _processes.Values.FirstOrDefault(p => p != process && p.Mm == mm);
            if (mm.Users > 1 && partner is not null) area.Pid = partner.Pid;
            else _drainer?.Close(area);
        }
        mm.Dispose();
    }
}
