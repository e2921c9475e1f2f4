using System.Diagnostics;
using Uprec.Native;
using Uprec.Symbols;
using Uprec.Trace;
using static Uprec.Native.Ptrace;
using static Uprec.Native.Signals;

namespace Uprec.Probing.Engine;

/// <summary>
/// The tracer: owns every ptrace and waitpid call, so all of it runs on one long-lived thread (the
/// kernel binds a tracee to the thread that attached; a stop consumed by another thread's waitpid
/// is lost). Nothing here awaits. Other threads talk to it only through <see cref="RequestStop"/>,
/// which wakes the blocking waitpid by closing the pipe a helper child (the "waker") is blocked on.
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
        while (_tasks.Count > 0 || _parked.Count > 0 || _expected.Count > 0 || _deferred.Count > 0)
        {
            if (_tasks.Count == 0 && _deferred.Count == 0) AdoptOrDropLeftovers();
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
            int tid, status;
            if (_deferred.Count > 0) (tid, status) = _deferred.Dequeue();
            else tid = Sys.WaitAny(-1, out status);
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
        using (_sinkLock.Enter()) _writer.Flush();
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
                // The last moment the thread's memory is there: take its ring and the counters now.
                DrainAtExit(task);
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
}

/// <summary>The fields of /proc/TID/status uprec uses; State is its one-letter state (T: stopped, t: in a ptrace stop).</summary>
internal sealed record ProcStatus(int Tgid, int PPid, uint Uid, IReadOnlyList<int> NsPid, char State)
{
    public static ProcStatus? Read(int tid)
    {
        string text;
        try { text = File.ReadAllText($"/proc/{tid}/status"); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
        int tgid = 0, ppid = 0;
        uint uid = 0;
        char state = '?';
        IReadOnlyList<int> nspid = [];
        foreach (string line in text.Split('\n'))
        {
            int colon = line.IndexOf(':');
            if (colon < 0) continue;
            string key = line[..colon];
            string value = line[(colon + 1)..].Trim();
            switch (key)
            {
                case "State": if (value.Length > 0) state = value[0]; break;
                case "Tgid": int.TryParse(value, out tgid); break;
                case "PPid": int.TryParse(value, out ppid); break;
                case "Uid": uint.TryParse(value.Split('\t', ' ')[0], out uid); break;
                case "NSpid":
                    nspid = value.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries)
                        .Select(s => int.TryParse(s, out int v) ? v : 0).ToList();
                    break;
            }
        }
        return new ProcStatus(tgid, ppid, uid, nspid, state);
    }
}
