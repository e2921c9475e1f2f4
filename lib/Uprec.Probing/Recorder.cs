using Uprec.Probing.Engine;
using Uprec.Symbols;
using Uprec.Trace;

namespace Uprec.Probing;

/// <summary>Why a recording ended.</summary>
public enum StopReason
{
    None,
    Completed,
    Interrupt,
    Terminate,
    Hangup,
    Duration,
    Error,
}

/// <summary>Which hit path probes may take (record --hit-path).</summary>
public enum HitPathMode
{
    /// <summary>In process where the analysis allows, the trap path elsewhere.</summary>
    Auto,
    /// <summary>In process only: a probe that cannot go in process is not placed.</summary>
    InProcess,
    /// <summary>Every probe on the int3 trap path.</summary>
    Trap,
}

/// <summary>Where record's messages go; the engine never touches the console.</summary>
public interface IRecordLog
{
    void Info(string message);
    void Warn(string message);
}

/// <summary>What `uprec record` was asked to do.</summary>
public sealed record RecordRequest
{
    public required IReadOnlyList<ProbeSpec> Probes { get; init; }
    /// <summary>The --filter of each probe (same order as <see cref="Probes"/>; null or missing: none).</summary>
    public IReadOnlyList<Uprec.Filters.Filter?> Filters { get; init; } = [];
    /// <summary>The program and its arguments (launch mode); empty in attach mode.</summary>
    public IReadOnlyList<string> Command { get; init; } = [];
    /// <summary>Processes to attach to (attach mode); empty in launch mode.</summary>
    public IReadOnlyList<int> AttachPids { get; init; } = [];
    /// <summary>Stop after this long (null: until the program exits or a signal).</summary>
    public TimeSpan? Duration { get; init; }
    /// <summary>Which hit path probes may take (--hit-path).</summary>
    public HitPathMode HitPath { get; init; }
    /// <summary>Run the tracer at SCHED_IDLE (cheaper hits on a quiet machine; see Tracer.IdleTracer).</summary>
    public bool IdleTracer { get; init; }
    public required string OutputPath { get; init; }
    /// <summary>uprec's own command line, kept in the trace's metadata.</summary>
    public IReadOnlyList<string> CommandLine { get; init; } = [];
}

/// <summary>How a recording ended and what it holds.</summary>
public sealed record RecordResult(
    int? WorkloadExitCode, int? WorkloadSignal, StopReason StoppedBy, long Rows, IReadOnlyList<ProbeMeta> Probes, string OutputPath);

/// <summary>
/// Runs a recording: resolves probes (errors before anything starts), opens the trace (an unwritable
/// path fails before the program starts), runs the tracer on its own thread, and always finishes
/// the trace file, whichever way the recording ends.
/// </summary>
public static class Recorder
{
    /// <summary>Refuses, with a reason the user can act on, a process that is gone or belongs to someone else.</summary>
    private static void CheckAttachable(int pid)
    {
        if (pid <= 0 || !Directory.Exists($"/proc/{pid}"))
            throw new ProbingException($"no process {pid}");
        var status = ProcStatus.Read(pid) ?? throw new ProbingException($"no process {pid}");
        if (status.Tgid != pid)
            throw new ProbingException($"{pid} is a thread of process {status.Tgid}; give the process id");
        uint me = Native.Unistd.getuid();
        if (me != 0 && status.Uid != me)
            throw new ProbingException($"process {pid} belongs to uid {status.Uid}, not to you (uid {me}); uprec attaches only to your own processes");
        if (pid == Native.Unistd.getpid())
            throw new ProbingException("uprec cannot trace itself");
    }

    public static RecordResult Run(RecordRequest request, IRecordLog log, StopControl stop)
    {
        bool attach = request.AttachPids.Count > 0;
        if (attach == (request.Command.Count > 0))
            throw new ProbingException("give either a program to run (after '--') or -p PID, not both and not neither");
        string? program = null;
        if (attach)
        {
            foreach (int pid in request.AttachPids) CheckAttachable(pid);
            program = new FileInfo($"/proc/{request.AttachPids[0]}/exe").LinkTarget;
        }
        else
        {
            program = BinaryLocator.ResolveProgram(request.Command[0])
                ?? throw new ProbingException($"cannot find program '{request.Command[0]}' (not a file, and not on PATH)");
        }
        Catalog catalog = Catalog.Build(request.Probes, request.Filters, program);
        using var writer = new TraceWriter(request.OutputPath, new TraceWriterOptions
        {
            Probes = catalog.Probes.Select(p => p.ToMeta()).ToList(),
        });
        catalog.ProbeAdded += probe => writer.DeclareProbe(probe.ToMeta());
        var tracer = new Tracer(catalog, writer, log) { IdleTracer = request.IdleTracer, HitPath = request.HitPath };
        // Probes in process can keep tens of millions of samples a second: map the row memory for them
        // while the program starts, not while its first samples arrive.
        if (tracer.MayGoInProcess) writer.Reserve();
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                if (attach) tracer.RunAttached(request.AttachPids);
                else tracer.RunLaunched(request.Command);
            }
            catch (Exception e)
            {
                failure = e;
                try
                {
                    tracer.EndTracing(StopReason.Error);
                    // The program was the user's before it was ours: tell them now, then let it finish.
                    if (!attach)
                    {
                        log.Warn($"stopped tracing after an error ({e.Message}); waiting for the program to end");
                        tracer.FinishWorkload();
                    }
                }
                catch (Exception cleanup) { log.Warn($"cleanup after error failed: {cleanup.Message}"); }
            }
        }) { Name = "uprec-tracer", IsBackground = true };
        stop.Bind(tracer.RequestStop);
        using var timer = request.Duration is TimeSpan d
            ? new Timer(_ => tracer.RequestStop(StopReason.Duration), null, d, Timeout.InfiniteTimeSpan)
            : null;
        thread.Start();
        thread.Join();
        stop.Bind(null);
        tracer.StopWaker();
        tracer.FinishInProcess();

        int? status = tracer.WorkloadStatus;
        int? exitCode = status is int s && Native.Wait.WIFEXITED(s) ? Native.Wait.WEXITSTATUS(s) : null;
        int? signal = status is int t && Native.Wait.WIFSIGNALED(t) ? Native.Wait.WTERMSIG(t) : null;
        var probes = catalog.Probes.Select(p => p.ToMeta()).ToList();
        var metadata = new TraceMetadata
        {
            CommandLine = request.CommandLine,
            Probes = probes,
            Tasks = tracer.Tasks.OrderBy(t => t.Pid).ThenBy(t => t.Tid).ToList(),
            StartTimeNs = tracer.StartTimeNs,
            EndTimeNs = Engine.Sys.MonotonicNs(),
            Outcome = failure is not null ? $"error: {failure.Message}"
                : exitCode is int c ? $"exit {c}" : signal is int g ? $"signal {g}" : "detached",
        };
        writer.Complete(metadata);
        if (failure is ProbingException or SymbolException or Uprec.Filters.FilterException) throw failure;
        if (failure is not null) throw new InvalidOperationException($"internal error while tracing: {failure.Message}", failure);
        return new RecordResult(exitCode, signal, tracer.StoppedBy, writer.RowsWritten, probes, request.OutputPath);
    }
}

/// <summary>
/// How another thread (the CLI's signal handlers) ends a recording. A request made before the tracer
/// started is delivered as soon as it binds.
/// </summary>
public sealed class StopControl
{
    private readonly object _gate = new();
    private Action<StopReason>? _target;
    private StopReason _pending;

    public void Request(StopReason reason)
    {
        lock (_gate)
        {
            if (_pending == StopReason.None) _pending = reason;
            _target?.Invoke(reason);
        }
    }

    internal void Bind(Action<StopReason>? target)
    {
        lock (_gate)
        {
            _target = target;
            if (target is not null && _pending != StopReason.None) target(_pending);
        }
    }
}
