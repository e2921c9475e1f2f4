using System.Text;
using Uprec.Native;

namespace Uprec.Probing.Engine;

/// <summary>
/// Starts processes with posix_spawn (never System.Diagnostics.Process: the runtime reaps its own
/// children and would swallow ptrace stops). The workload is started through a gate shell that
/// waits on a pipe, so uprec can seize it before the first instruction of the real program runs.
/// The child keeps our stdin/stdout/stderr, process group and terminal, and gets default signal
/// dispositions and an empty mask (the .NET runtime ignores SIGPIPE; the program must not inherit that).
/// </summary>
internal static unsafe class Launcher
{
    public const string GateShell = "/bin/sh";

    /// <summary>`read` consumes the release byte; closing fd 3 before exec leaves the program no trace of the gate.</summary>
    public const string GateScript = "read -r _ <&3; exec 3<&-; exec \"$0\" \"$@\"";
    private const int GateFd = 3;

    /// <summary>Spawns `sh -c 'read gate; exec "$0" "$@"' CMD ARGS` with fd 3 reading the gate pipe.</summary>
    public static (int Pid, int GateWriteFd) SpawnGated(IReadOnlyList<string> command)
    {
        int* fds = stackalloc int[2];
        if (Unistd.pipe2(fds, Unistd.O_CLOEXEC) != 0)
            throw new InvalidOperationException($"pipe2 failed: {Errno.Describe(Errno.Last)}");
        var argv = new List<string> { GateShell, "-c", GateScript };
        argv.AddRange(command);
        int pid = StartProcess(argv[0], argv, gateReadFd: fds[0]);
        Unistd.close(fds[0]);
        return (pid, fds[1]);
    }

    /// <summary>Lets the gate shell go on to exec the program.</summary>
    public static void Release(int gateWriteFd)
    {
        byte nl = (byte)'\n';
        Unistd.write(gateWriteFd, &nl, 1);
        Unistd.close(gateWriteFd);
    }

    /// <summary>A child that exits after a second: its exit wakes the tracer's waitpid once a second.</summary>
    public static int SpawnTicker() => StartProcess("/bin/sleep", ["/bin/sleep", "1"], gateReadFd: -1, quiet: true);

    /// <summary>
    /// Spawns the tracer's waker: a shell blocked reading a pipe whose only writer is uprec. Closing
    /// the write end makes it exit, which wakes the tracer's waitpid; if uprec dies, the pipe closes
    /// and the waker goes too. Its output goes to /dev/null so it never holds the user's pipes open.
    /// </summary>
    public static (int Pid, int WriteFd) SpawnWaker()
    {
        int* fds = stackalloc int[2];
        if (Unistd.pipe2(fds, Unistd.O_CLOEXEC) != 0)
            throw new InvalidOperationException($"pipe2 failed: {Errno.Describe(Errno.Last)}");
        int pid = StartProcess(GateShell, [GateShell, "-c", $"read -r _ <&{GateFd}"], gateReadFd: fds[0], quiet: true);
        Unistd.close(fds[0]);
        return (pid, fds[1]);
    }

    private static int StartProcess(string file, IReadOnlyList<string> argv, int gateReadFd, bool quiet = false)
    {
        byte* attr = stackalloc byte[Spawn.AttrSize];
        byte* actions = stackalloc byte[Spawn.FileActionsSize];
        byte* all = stackalloc byte[Spawn.SigsetSize];
        byte* none = stackalloc byte[Spawn.SigsetSize];
        Spawn.posix_spawnattr_init(attr);
        Spawn.posix_spawn_file_actions_init(actions);
        Spawn.sigfillset(all);
        Spawn.sigemptyset(none);
        Spawn.posix_spawnattr_setsigdefault(attr, all);
        Spawn.posix_spawnattr_setsigmask(attr, none);
        short flags = Spawn.POSIX_SPAWN_SETSIGDEF | Spawn.POSIX_SPAWN_SETSIGMASK;
        if (quiet)
        {
            // The waker gets a process group of its own: Ctrl-C on the terminal must not kill it.
            flags |= Spawn.POSIX_SPAWN_SETPGROUP;
            Spawn.posix_spawnattr_setpgroup(attr, 0);
        }
        Spawn.posix_spawnattr_setflags(attr, flags);
        if (gateReadFd >= 0) Spawn.posix_spawn_file_actions_adddup2(actions, gateReadFd, GateFd);
        if (quiet)
        {
            byte* devnull = stackalloc byte[] { (byte)'/', (byte)'d', (byte)'e', (byte)'v', (byte)'/', (byte)'n', (byte)'u', (byte)'l', (byte)'l', 0 };
            Spawn.posix_spawn_file_actions_addopen(actions, 0, devnull, Unistd.O_RDONLY, 0);
            Spawn.posix_spawn_file_actions_addopen(actions, 1, devnull, Unistd.O_WRONLY, 0);
            Spawn.posix_spawn_file_actions_addopen(actions, 2, devnull, Unistd.O_WRONLY, 0);
        }

        var handles = new List<nint>();
        try
        {
            byte** cargv = stackalloc byte*[argv.Count + 1];
            for (int i = 0; i < argv.Count; i++) cargv[i] = Utf8(argv[i], handles);
            cargv[argv.Count] = null;
            byte* cfile = Utf8(file, handles);
            int pid;
            int err = Spawn.posix_spawnp(&pid, cfile, actions, attr, cargv, Spawn.Environ());
            if (err != 0)
                throw new ProbingException($"cannot start '{file}': {Errno.Describe(err)}");
            return pid;
        }
        finally
        {
            foreach (nint h in handles) System.Runtime.InteropServices.Marshal.FreeHGlobal(h);
            Spawn.posix_spawn_file_actions_destroy(actions);
            Spawn.posix_spawnattr_destroy(attr);
        }
    }

    private static byte* Utf8(string s, List<nint> handles)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        nint h = System.Runtime.InteropServices.Marshal.AllocHGlobal(bytes.Length + 1);
        handles.Add(h);
        var p = (byte*)h;
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        p[bytes.Length] = 0;
        return p;
    }
}
