namespace Uprec.Probing.Engine;

/// <summary>A traced thread.</summary>
internal sealed class TracedTask(int tid, TracedProcess process)
{
    public int Tid { get; } = tid;
    public TracedProcess Process { get; set; } = process;
    /// <summary>Read on first need (threads are often named after they start), refreshed at exit.</summary>
    public string? Comm { get; set; }
    /// <summary>In ptrace-stop and held by uprec: set when a stop is taken, cleared on resume.</summary>
    public bool Stopped { get; set; }
    /// <summary>Past PTRACE_EVENT_EXIT: it will not stop again (a leader may linger as a zombie).</summary>
    public bool Exiting { get; set; }
    /// <summary>A vfork parent until the child execs or exits: it cannot be stopped meanwhile.</summary>
    public bool InVfork { get; set; }
    /// <summary>While in a backtrace: the address it returns to, where hijacked frames are hijacked again.</summary>
    public ulong RehijackAt { get; set; }
    /// <summary>The shadow stack of %return calls in flight, oldest first.</summary>
    public List<ReturnFrame> Frames { get; set; } = [];
    /// <summary>In-process shadow entries whose original return addresses were put back for an unwinder, oldest first.</summary>
    public List<ShadowEntry> RestoredInProcess { get; set; } = [];
    /// <summary>A signal that arrived while uprec held the task; delivered when it is resumed or detached.</summary>
    public int PendingSignal { get; set; }
}

/// <summary>A traced process (thread group).</summary>
internal sealed class TracedProcess(int pid, int ppid, AddressSpace mm)
{
    public int Pid { get; } = pid;
    public int Ppid { get; } = ppid;
    public AddressSpace Mm { get; set; } = mm;
    public Dictionary<int, TracedTask> Tasks { get; } = [];
    /// <summary>
    /// False for the gate shell before it execs the workload: probes (even on libc) must not count the
    /// shell's own calls. Children inherit it; every exec after the workload's is followed.
    /// </summary>
    public bool Accepted { get; set; }
    public string? Exe { get; set; }
    /// <summary>Loader breakpoint placed (the interpreter's _dl_debug_state), once per image.</summary>
    public bool LoaderHooked { get; set; }
    public uint Uid { get; set; }
    /// <summary>wants_probe per probe id for this process's current image: No means never patched here.</summary>
    public Dictionary<int, Uprec.Filters.FilterDecision> Wants { get; } = [];
    /// <summary>The comm the current wants_probe decisions saw.</summary>
    public string? DecidedComm { get; set; }
}

/// <summary>Why a new task appeared: the parent's ptrace event, kept until the child's first stop.</summary>
internal readonly record struct Creation(TracedTask Parent, int Event);
