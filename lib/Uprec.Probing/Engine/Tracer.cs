using System.Diagnostics;
using Uprec.Filters;
using Uprec.Native;
using Uprec.Probing.Arch;
using Uprec.Symbols;
using Uprec.Trace;
using static Uprec.Native.Ptrace;
using static Uprec.Native.Signals;

namespace Uprec.Probing.Engine;

/// <summary>
/// The tracer: owns every ptrace and waitpid call, so all of it runs on one long-lived thread (the
/// kernel binds a tracee to the thread that attached; a stop consumed by another thread's waitpid
/// is lost). Nothing here awaits. Other threads talk to it only through <see cref="RequestStop"/>,
/// which wakes the blocking waitpid by killing a sleeping helper child (the "waker").
/// </summary>
internal sealed partial class Tracer
{
    private const int TraceOptions = PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK
        | PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT | PTRACE_O_TRACEVFORKDONE;

    private readonly Catalog _catalog;
    private readonly TraceWriter _writer;
    private readonly IRecordLog _log;
    private readonly Dictionary<int, TracedTask> _tasks = [];
    private readonly Dictionary<int, TracedProcess> _processes = [];
    /// <summary>New tasks whose first stop came before their parent's clone/fork event.</summary>
    private readonly Dictionary<int, int> _parked = [];
    /// <summary>New tasks announced by their parent's event whose first stop has not come yet.</summary>
    private readonly Dictionary<int, Creation> _expected = [];
    private readonly Dictionary<int, TaskMeta> _taskMeta = [];
    private readonly Dictionary<FileKey, ElfImage?> _interpreters = [];

    private volatile StopReason _stopRequest;
    private volatile int _wakerPid;
    private int _wakerFd = -1;
    private bool _ending;
    private int _workloadPid;
    private int? _workloadStatus;
    private long _lastFlush = Stopwatch.GetTimestamp();

    public Tracer(Catalog catalog, TraceWriter writer, IRecordLog log)
    {
        _catalog = catalog;
        _writer = writer;
        _log = log;
    }

    public long StartTimeNs { get; private set; }
    public IReadOnlyCollection<TaskMeta> Tasks => _taskMeta.Values;
    /// <summary>The workload's wait status (launch mode), null if it was left running.</summary>
    public int? WorkloadStatus => _workloadStatus;
    public StopReason StoppedBy { get; private set; }

    /// <summary>Asks the tracer thread to end the recording; callable from any thread.</summary>
    public void RequestStop(StopReason reason)
    {
        if (_stopRequest == StopReason.None) _stopRequest = reason;
        int fd = Interlocked.Exchange(ref _wakerFd, -1);
        if (fd >= 0) Unistd.close(fd);
    }

    // ---------------------------------------------------------------- launch

    /// <summary>Launch mode: spawn the gated workload, seize it, release the gate, trace until every traced task is gone.</summary>
    public void RunLaunched(IReadOnlyList<string> command)
    {
        StartWaker();
        var (pid, gate) = Launcher.SpawnGated(command);
        _workloadPid = pid;
        int err = Sys.TrySeize(pid, TraceOptions | PTRACE_O_EXITKILL);
        if (err != 0)
        {
            Signals.kill(pid, SIGKILL);
            Sys.WaitAny(pid, out _);
            throw new ProbingException($"cannot trace the program (ptrace: {Errno.Describe(err)}); " +
                "check /proc/sys/kernel/yama/ptrace_scope and that no debugger is attached");
        }
        var process = new TracedProcess(pid, Unistd.getpid(), new AddressSpace(new ProcessMemory(pid)));
        _processes[pid] = process;
        AddTask(process, pid);
        StartTimeNs = Sys.MonotonicNs();
        Launcher.Release(gate);
        Loop();
        FinishWorkload();
    }

    // ---------------------------------------------------------------- attach

    /// <summary>
    /// Attach mode: seize every thread of each process (listing /proc/PID/task until no new thread
    /// shows up: threads started by a not-yet-seized thread are not auto-attached), place the probes
    /// while the threads run (an int3 is one byte, written atomically), and trace until the duration
    /// ends, a signal, or the processes exit. Nothing is ever done to processes that were not named.
    /// </summary>
    public void RunAttached(IReadOnlyList<int> pids)
    {
        StartWaker();
        StartTimeNs = Sys.MonotonicNs();
        foreach (int pid in pids)
        {
            var process = new TracedProcess(pid, ProcStatus.Read(pid)?.PPid ?? 0, new AddressSpace(new ProcessMemory(pid)))
            {
                Accepted = true,
                Exe = ReadLink($"/proc/{pid}/exe"),
            };
            _processes[pid] = process;
            bool grew = true;
            while (grew)
            {
                grew = false;
                foreach (int tid in ListThreads(pid))
                {
                    if (_tasks.ContainsKey(tid)) continue;
                    int err = Sys.TrySeize(tid, TraceOptions);
                    if (err == Errno.ESRCH) continue; // exited meanwhile
                    if (err != 0)
                        throw new ProbingException($"cannot attach to process {pid} (thread {tid}): {Errno.Describe(err)}");
                    TracedTask task = AddTask(process, tid);
                    task.Comm = ReadComm(tid);
                    RememberTask(task);
                    grew = true;
                }
            }
            if (process.Tasks.Count == 0) throw new ProbingException($"process {pid} exited before uprec could attach");
            ScanMappings(process);
        }
        Loop();
    }

    private static IEnumerable<int> ListThreads(int pid)
    {
        string[] entries;
        try { entries = Directory.GetDirectories($"/proc/{pid}/task"); }
        catch (DirectoryNotFoundException) { return []; }
        return entries.Select(e => int.TryParse(Path.GetFileName(e), out int t) ? t : 0).Where(t => t > 0).Order().ToList();
    }

    public void FinishWorkload()
    {
        if (_workloadStatus is not null || _workloadPid == 0) return;
        // Detached before the workload ended. A signal to uprec alone ends the workload too, as perf
        // record does; give a program that got the same Ctrl-C a moment to finish on its own first.
        if (StoppedBy is StopReason.Interrupt or StopReason.Terminate or StopReason.Hangup)
        {
            for (int i = 0; i < 50 && _workloadStatus is null; i++)
            {
                if (Sys.WaitAny(_workloadPid, out int s, noHang: true) == _workloadPid) _workloadStatus = s;
                else Thread.Sleep(10);
            }
            if (_workloadStatus is null) Signals.kill(_workloadPid, SIGTERM);
        }
        if (_workloadStatus is null && Sys.WaitAny(_workloadPid, out int status) == _workloadPid)
            _workloadStatus = status;
    }

    private void StartWaker()
    {
        var (pid, fd) = Launcher.SpawnWaker();
        _wakerPid = pid;
        _wakerFd = fd;
        // A stop requested before the waker existed must still wake the loop (it checks the flag first).
    }

    /// <summary>Ends the waker if it is still there, and reaps it.</summary>
    public void StopWaker()
    {
        int ticker = _tickerPid;
        _tickerPid = 0;
        if (ticker > 0)
        {
            Signals.kill(ticker, SIGKILL);
            Sys.WaitAny(ticker, out _);
        }
        int fd = Interlocked.Exchange(ref _wakerFd, -1);
        if (fd >= 0) Unistd.close(fd);
        int pid = _wakerPid;
        _wakerPid = 0;
        if (pid > 0) Sys.WaitAny(pid, out _);
    }

    // ---------------------------------------------------------------- main loop

    /// <summary>
    /// Runs the tracer thread at SCHED_IDLE. A CPU running only SCHED_IDLE work counts as idle when the
    /// kernel places a waking task, so PTRACE_CONT wakes the program on the tracer's own CPU and the
    /// stop wakes the tracer there too: no cross-CPU wake-up per hit (about 10 us per hit here instead of
    /// 10-50 us depending on placement). The price: on a busy machine the tracer only gets leftover CPU,
    /// and an unprivileged process cannot undo SCHED_IDLE, hence opt-in.
    /// </summary>
    public bool IdleTracer { get; init; }

    private unsafe void ApplySchedulingPolicy()
    {
        if (!IdleTracer) return;
        int param = 0;
        if (Unistd.sched_setscheduler(0, Unistd.SCHED_IDLE, &param) != 0)
            _log.Warn($"cannot run the tracer at SCHED_IDLE: {Errno.Describe(Errno.Last)}");
    }

    private void Loop()
    {
        ApplySchedulingPolicy();
        if (_catalog.Probes.Any(p => p.Filter?.Fields.Contains("comm") == true)) _tickerPid = Launcher.SpawnTicker();
        while (_tasks.Count > 0 || _parked.Count > 0 || _expected.Count > 0)
        {
            if (_tasks.Count == 0) AdoptOrDropLeftovers();
            if (_stopRequest != StopReason.None)
            {
                if (_stopRequest == StopReason.Interrupt && CtrlCWasForTheProgram())
                {
                    // The terminal sent SIGINT to the whole foreground group: the program got it too
                    // and decides for itself, exactly as without uprec. Keep recording.
                    _stopRequest = StopReason.None;
                    StartWaker();
                    continue;
                }
                EndTracing(_stopRequest);
                return;
            }
            int tid = Sys.WaitAny(-1, out int status);
            if (tid < 0) break;
            if (tid == _wakerPid)
            {
                _wakerPid = 0;
                continue;
            }
            if (tid == _tickerPid)
            {
                _tickerPid = 0;
                RecheckComms();
                continue;
            }
            try
            {
                Dispatch(tid, status);
            }
            catch (TaskGoneException)
            {
                // Killed between its stop and our call; its exit notification follows.
            }
            MaybeFlush();
        }
        StoppedBy = StopReason.Completed;
    }

    private long _workloadSigintNs = long.MinValue / 2;

    /// <summary>
    /// Whether the SIGINT uprec got also reached the workload (a Ctrl-C on the terminal goes to the
    /// whole foreground process group) rather than uprec alone. The program's own signal stop comes
    /// within moments of ours, so events are handled for up to 100 ms while waiting for it.
    /// </summary>
    private bool CtrlCWasForTheProgram()
    {
        if (_workloadPid == 0) return false;
        const long window = 200_000_000, grace = 100_000_000;
        long asked = Sys.MonotonicNs();
        while (true)
        {
            if (_workloadSigintNs >= asked - window) return true;
            if (Sys.MonotonicNs() - asked > grace) return false;
            int tid = Sys.WaitAny(-1, out int status, noHang: true);
            if (tid < 0) return false;
            if (tid == 0) { Thread.Sleep(1); continue; }
            if (tid == _wakerPid) { _wakerPid = 0; continue; }
            if (tid == _tickerPid) { _tickerPid = 0; RecheckComms(); continue; }
            try { Dispatch(tid, status); }
            catch (TaskGoneException) { }
        }
    }

    /// <summary>
    /// Every known task is gone but new ones were announced or stopped without their creator's event
    /// (an exit_group raced with fork/clone): adopt what can be adopted, forget what never came.
    /// </summary>
    private void AdoptOrDropLeftovers()
    {
        foreach (int tid in _parked.Keys.ToList())
        {
            _parked.Remove(tid);
            TracedTask? task = AdoptThread(tid) ?? AdoptOrphan(tid);
            if (task is not null) FirstStop(task);
            else
            {
                try { Sys.Detach(tid, 0); }
                catch (TaskGoneException) { }
            }
        }
        foreach (int tid in _expected.Keys.ToList())
        {
            if (!Directory.Exists($"/proc/{tid}")) _expected.Remove(tid);
        }
    }

    private int _tickerPid;

    /// <summary>
    /// Filters over comm are decided per process image; a program that renames itself (prctl
    /// PR_SET_NAME) changes the answer. No ptrace event reports that, so when some filter reads comm,
    /// uprec looks once a second and re-decides: newly wanted probes are placed, unwanted ones removed.
    /// </summary>
    private void RecheckComms()
    {
        if (_ending || !_catalog.Probes.Any(p => p.Filter?.Fields.Contains("comm") == true)) return;
        foreach (TracedProcess process in _processes.Values.ToList())
        {
            if (!process.Accepted || process.DecidedComm is null) continue;
            string? comm = ReadComm(process.Pid);
            if (comm is null || comm == process.DecidedComm) continue;
            process.DecidedComm = comm;
            foreach (TracedTask t in process.Tasks.Values) t.Comm = ReadComm(t.Tid) ?? t.Comm;
            var affected = _catalog.Probes.Where(p => p.Filter?.Fields.Contains("comm") == true).Select(p => p.Id).ToHashSet();
            foreach (int id in affected) process.Wants.Remove(id);
            // A vfork child shares its parent's pages: its own wishes cannot be applied to them alone.
            if (process.Mm.Users == 1) DropUnwanted(process);
            process.Mm.Scanned.Clear();
            ScanMappings(process);
        }
        _tickerPid = Launcher.SpawnTicker();
    }

    private void MaybeFlush()
    {
        long now = Stopwatch.GetTimestamp();
        if (now - _lastFlush < Stopwatch.Frequency) return;
        _lastFlush = now;
        _writer.Flush();
    }

    private void Dispatch(int tid, int status)
    {
        if (!_tasks.TryGetValue(tid, out TracedTask? task))
        {
            if (!Wait.WIFSTOPPED(status))
            {
                // A task we dropped (e.g. at exec), or a new one that died before its first stop.
                _parked.Remove(tid);
                _expected.Remove(tid);
                return;
            }
            if (_expected.Remove(tid, out Creation creation)) FirstStop(CreateChild(creation, tid));
            else if (AdoptThread(tid) is TracedTask thread) FirstStop(thread);
            else _parked[tid] = status;
            return;
        }
        if (Wait.WIFEXITED(status) || Wait.WIFSIGNALED(status))
        {
            OnTaskExit(task, status);
            return;
        }
        // Held until resumed: if handling this stop fails, the ending path must not wait for another.
        task.Stopped = true;
        int sig = Wait.WSTOPSIG(status);
        switch (Wait.PtraceEvent(status))
        {
            case 0:
                if (sig == SIGTRAP && OnTrap(task)) return;
                if (sig == SIGINT && task.Process.Pid == _workloadPid) _workloadSigintNs = Sys.MonotonicNs();
                Resume(task, sig);
                return;
            case PTRACE_EVENT_CLONE:
            case PTRACE_EVENT_FORK:
            case PTRACE_EVENT_VFORK:
                OnNewChild(task, Wait.PtraceEvent(status));
                Resume(task, 0);
                if (Wait.PtraceEvent(status) == PTRACE_EVENT_VFORK) task.InVfork = true;
                return;
            case PTRACE_EVENT_VFORK_DONE:
                task.InVfork = false;
                Resume(task, 0);
                return;
            case PTRACE_EVENT_EXEC:
                OnExec(task);
                Resume(task, 0);
                return;
            case PTRACE_EVENT_EXIT:
                task.Comm = ReadComm(task.Tid) ?? task.Comm;
                RememberTask(task);
                Resume(task, 0);
                task.Exiting = true;
                return;
            case PTRACE_EVENT_STOP:
                if (sig is SIGSTOP or SIGTSTP or SIGTTIN or SIGTTOU)
                {
                    Sys.Listen(task.Tid); // a group-stop: stay stopped as the program asked, until SIGCONT
                    task.Stopped = false;
                }
                else
                {
                    Resume(task, 0);
                }
                return;
            default:
                Resume(task, 0);
                return;
        }
    }

    private void Resume(TracedTask task, int signal)
    {
        if (signal == 0)
        {
            signal = task.PendingSignal;
            task.PendingSignal = 0;
        }
        Sys.Cont(task.Tid, signal);
        task.Stopped = false;
    }

    /// <summary>Holds a signal that arrived while uprec had the task; one more than it can hold is re-sent.</summary>
    private static void HoldSignal(TracedTask task, int signal)
    {
        if (task.PendingSignal == 0) task.PendingSignal = signal;
        else if (task.PendingSignal != signal) Signals.tgkill(task.Process.Pid, task.Tid, signal);
    }

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
                // fork: the kernel copied our patched pages and the XOL area into the child.
                mm = parentProcess.Mm.CloneFor(new ProcessMemory(tid));
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
        if (!sameProcess) task.Frames = creation.Parent.Frames.Select(f => f.Copy()).ToList();
        RememberTask(task, status);
        return task;
    }

    /// <summary>A new task's first stop: let it run (unless everything is being detached).</summary>
    private void FirstStop(TracedTask task)
    {
        if (_ending) task.Stopped = true;
        else Resume(task, 0);
    }

    private void OnTaskExit(TracedTask task, int status)
    {
        RememberTask(task);
        _tasks.Remove(task.Tid);
        TracedProcess process = task.Process;
        process.Tasks.Remove(task.Tid);
        if (task.Tid == _workloadPid) _workloadStatus = status;
        if (process.Tasks.Count == 0 && _processes.Remove(process.Pid)) process.Mm.Dispose();
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

    // ---------------------------------------------------------------- exec and mappings

    private void OnExec(TracedTask task)
    {
        TracedProcess process = task.Process;
        int former = (int)Sys.GetEventMsg(task.Tid);
        // After exec only the thread group leader is left; the others vanish without a further report
        // we can rely on, so forget them now (their late exit notifications are ignored).
        foreach (TracedTask other in process.Tasks.Values.ToList())
        {
            if (other.Tid == process.Pid) continue;
            RememberTask(other);
            process.Tasks.Remove(other.Tid);
            _tasks.Remove(other.Tid);
        }
        if (former != process.Pid && !_tasks.ContainsKey(process.Pid))
        {
            _tasks.Remove(former);
            AddTask(process, process.Pid);
        }
        process.Mm.Dispose();
        process.Mm = new AddressSpace(new ProcessMemory(process.Pid));
        process.LoaderHooked = false;
        process.Wants.Clear();
        process.DecidedComm = null;
        process.Exe = ReadLink($"/proc/{process.Pid}/exe");
        if (_tasks.TryGetValue(process.Pid, out TracedTask? leader))
        {
            leader.Frames.Clear();
            leader.Comm = ReadComm(process.Pid);
            RememberTask(leader);
        }
        if (!process.Accepted) process.Accepted = IsWorkloadImage(process);
        if (process.Accepted && !_ending) ScanMappings(process);
    }

    /// <summary>
    /// The first exec may be the gate shell's own (posix_spawn can return before it): the workload is
    /// the image that is the program, or anything that is not the shell, or the second exec in any case.
    /// </summary>
    /// <summary>
    /// Whether an exec is the workload's rather than the gate shell's own. posix_spawn may return, and
    /// uprec seize the child, before or after the shell's exec is reported, so neither counting execs
    /// nor the image helps (a #!/bin/sh workload runs /bin/sh too); the new image's argv does: the gate
    /// runs with the gate script as its -c argument, which no workload has.
    /// </summary>
    private static bool IsWorkloadImage(TracedProcess process)
    {
        try
        {
            string cmdline = File.ReadAllText($"/proc/{process.Pid}/cmdline");
            return !cmdline.Contains(Launcher.GateScript, StringComparison.Ordinal);
        }
        catch (IOException) { return true; }
    }

    private static string? ReadLink(string path)
    {
        try { return new FileInfo(path).LinkTarget; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Places the probes of every newly mapped probed file, and the loader hook.</summary>
    private void ScanMappings(TracedProcess process)
    {
        IReadOnlyList<MapEntry> maps = ReadMaps(process);
        if (maps.Count == 0) return; // unreadable now: never take that for "everything was unmapped"
        AddressSpace mm = process.Mm;
        ForgetUnmapped(mm, maps);
        foreach (MapEntry m in maps)
        {
            if (!m.Executable || m.Path is null || m.Inode == 0) continue;
            var key = FileKey.Of(m);
            if (!mm.Scanned.Add((key, m.Start))) continue;
            FileProbes? file = _catalog.ForMapping(m);
            if (file is not null)
            {
                foreach (FileSite fs in file.Sites)
                {
                    if (fs.FileOffset < (long)m.Offset || fs.FileOffset >= (long)m.Offset + (long)(m.End - m.Start)) continue;
                    ulong addr = m.Start + (ulong)(fs.FileOffset - (long)m.Offset);
                    if (Wants(process, fs.Probe) == FilterDecision.No) continue;
                    Install(mm, addr, key, fs.FileOffset, file.Image, fs.Probe, SiteKind.Probe);
                }
            }
            if (HasReturnProbes) HookUnwinder(mm, m, key);
            if (!process.LoaderHooked && IsInterpreter(process, key, m.Path, out ElfImage? ld))
            {
                ElfSymbol? hook = ld!.FindSymbol("_dl_debug_state");
                long? off = hook is null ? null : ld.VaddrToFileOffset(hook.Value);
                if (off is long o && o >= (long)m.Offset && o < (long)m.Offset + (long)(m.End - m.Start))
                {
                    Install(mm, m.Start + (ulong)(o - (long)m.Offset), key, o, ld, null, SiteKind.Loader);
                    process.LoaderHooked = true;
                }
            }
        }
    }

    /// <summary>wants_probe: whether this process's image should carry the probe at all, decided once per image.</summary>
    private static FilterDecision Wants(TracedProcess process, Probe probe)
    {
        if (probe.Filter is null) return FilterDecision.Yes;
        if (process.Wants.TryGetValue(probe.Id, out FilterDecision d)) return d;
        ProcStatus? status = ProcStatus.Read(process.Pid);
        if (status is not null) process.Uid = status.Uid;
        process.DecidedComm ??= ReadComm(process.Pid);
        d = HitFields.DecideForProcess(probe.Filter, process, status, process.DecidedComm);
        process.Wants[probe.Id] = d;
        if (d == FilterDecision.No && !probe.Installed) probe.Note = "no traced process matched its filter";
        return d;
    }

    /// <summary>
    /// A forked child inherited every patch of its parent; those of probes the child does not want
    /// are taken out of the child alone (its pages are its own copy).
    /// </summary>
    private static void DropUnwanted(TracedProcess child)
    {
        foreach (Site site in child.Mm.Sites.Values)
        {
            if (site.Removed || site.Kind != SiteKind.Probe || site.Probes.Count == 0) continue;
            site.Probes.RemoveAll(p => Wants(child, p) == FilterDecision.No);
            if (site.Probes.Count > 0) continue;
            child.Mm.Memory.TryWrite(site.Address, site.Original.AsSpan(0, 1));
            site.Removed = true;
        }
    }

    /// <summary>
    /// After dlclose the library's pages are gone, and with them our patches: forget those sites (there
    /// is nothing to restore), so that a later load, at the same address or another, is patched afresh.
    /// </summary>
    private static void ForgetUnmapped(AddressSpace mm, IReadOnlyList<MapEntry> maps)
    {
        var live = maps.Where(m => m.Executable && m.Inode != 0).ToList();
        mm.Scanned.RemoveWhere(k => !live.Any(m => FileKey.Of(m) == k.Item1 && m.Start == k.Item2));
        foreach (Site site in mm.Sites.Values.ToList())
        {
            if (site.Removed || site.Kind == SiteKind.Loader) continue;
            bool mapped = live.Any(m => FileKey.Of(m) == site.File && site.Address >= m.Start && site.Address < m.End);
            if (!mapped) mm.Sites.Remove(site.Address);
        }
    }

    private bool IsInterpreter(TracedProcess process, FileKey key, string path, out ElfImage? image)
    {
        if (!_interpreters.TryGetValue(key, out image))
        {
            image = null;
            // The dynamic loader is the only mapped file that is its own interpreter target: ld-linux*.
            if (Path.GetFileName(path).StartsWith("ld-", StringComparison.Ordinal))
            {
                try { image = ElfImage.Load(path); }
                catch (SymbolException) { image = null; }
            }
            _interpreters[key] = image;
        }
        return image is not null;
    }

    /// <summary>
    /// The maps through a live thread: /proc/PID/maps of a leader that called pthread_exit reads as
    /// empty while its other threads run on.
    /// </summary>
    private static IReadOnlyList<MapEntry> ReadMaps(TracedProcess process)
    {
        foreach (int tid in process.Tasks.Keys.Prepend(process.Pid).Distinct())
        {
            try
            {
                var maps = ProcMaps.Parse(File.ReadAllText($"/proc/{process.Pid}/task/{tid}/maps"));
                if (maps.Count > 0) return maps;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return [];
    }

    /// <summary>Writes int3 at a site (or adds a consumer to the one already there).</summary>
    private void Install(AddressSpace mm, ulong addr, FileKey key, long fileOffset, ElfImage image, Probe? probe, SiteKind kind)
    {
        if (mm.Sites.TryGetValue(addr, out Site? existing))
        {
            if (!existing.Removed)
            {
                if (probe is not null && !existing.Probes.Contains(probe)) existing.Probes.Add(probe);
                return;
            }
            mm.Sites.Remove(addr); // taken out earlier (a filter said no); placed afresh below
        }
        byte[] code = mm.ReadOriginalCode(addr, 16);
        byte[] fileBytes = image.ReadBytes(fileOffset, Math.Min(code.Length, 16));
        if (code.Length == 0 || !code.AsSpan(0, fileBytes.Length).SequenceEqual(fileBytes))
        {
            // Someone else (a debugger, a self-modifying program) changed this code: never patch over it.
            if (probe is not null) probe.Note = $"code at 0x{addr:x} differs from the file; not patched";
            return;
        }
        // Decide now whether the trap path can handle the instruction; the real slot comes at the first hit.
        TrapPlan plan = TrapPlanner.Plan(code, addr, addr);
        if (plan is UnsupportedPlan u)
        {
            if (probe is not null) probe.Note = $"cannot probe '{plan.Instruction}': {u.Reason}";
            return;
        }
        if (!mm.Memory.TryWrite(addr, [0xCC]))
        {
            if (probe is not null) probe.Note = $"cannot write at 0x{addr:x}: {Errno.Describe(Errno.Last)}";
            return;
        }
        var site = new Site
        {
            Address = addr, Original = code, File = key, FileOffset = fileOffset, Kind = kind,
            Plan = plan is EmulatePlan ? plan : null,
        };
        if (probe is not null)
        {
            site.Probes.Add(probe);
            probe.Installed = true;
            probe.HitPath = "trap";
        }
        mm.Sites[addr] = site;
    }

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
        if (site.Kind == SiteKind.Unwind) RestoreReturnAddresses(task);
        else if (site.Kind == SiteKind.Catch) RehijackAfterCatch(task);
        ContinuePastSite(task, site);
        if (site.IsLoaderEvent && !_ending) ScanMappings(task.Process);
        Resume(task, 0);
        return true;
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
            if (HitFields.NeedsRegisters(p) || p.Spec.IsReturn)
            {
                if (!haveRegs) { regs = Sys.GetRegs(task.Tid); haveRegs = true; }
                if (p.Spec.Args.Count > 0) captured = HitFields.Capture(p.Spec, regs, task.Process.Mm.Memory);
            }
            if (wants == FilterDecision.Maybe && !p.Filter!.Evaluate(HitFields.ForHit(task, p.Spec, regs, captured))) continue;
            p.Count++;
            hit.ProbeId = p.Id;
            hit.Args = captured;
            _writer.Append(in hit);
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
        mm.Memory.TryWrite(site.Address, site.Original.AsSpan(0, 1));
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
            foreach (Site site in mm.Sites.Values)
            {
                if (site.Removed) continue;
                mm.Memory.TryWrite(site.Address, site.Original.AsSpan(0, 1));
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

/// <summary>The fields of /proc/TID/status uprec uses.</summary>
internal sealed record ProcStatus(int Tgid, int PPid, uint Uid, IReadOnlyList<int> NsPid)
{
    public static ProcStatus? Read(int tid)
    {
        string text;
        try { text = File.ReadAllText($"/proc/{tid}/status"); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
        int tgid = 0, ppid = 0;
        uint uid = 0;
        IReadOnlyList<int> nspid = [];
        foreach (string line in text.Split('\n'))
        {
            int colon = line.IndexOf(':');
            if (colon < 0) continue;
            string key = line[..colon];
            string value = line[(colon + 1)..].Trim();
            switch (key)
            {
                case "Tgid": int.TryParse(value, out tgid); break;
                case "PPid": int.TryParse(value, out ppid); break;
                case "Uid": uint.TryParse(value.Split('\t', ' ')[0], out uid); break;
                case "NSpid":
                    nspid = value.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries)
                        .Select(s => int.TryParse(s, out int v) ? v : 0).ToList();
                    break;
            }
        }
        return new ProcStatus(tgid, ppid, uid, nspid);
    }
}
