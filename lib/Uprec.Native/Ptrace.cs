using System.Runtime.InteropServices;

namespace Uprec.Native;

/// <summary>sys/ptrace.h and linux/ptrace.h: requests, options, events. C names kept.</summary>
public static partial class Ptrace
{
    public const int PTRACE_PEEKDATA = 2;
    public const int PTRACE_PEEKUSER = 3;
    public const int PTRACE_POKEDATA = 5;
    public const int PTRACE_POKEUSER = 6;
    public const int PTRACE_CONT = 7;
    public const int PTRACE_KILL = 8;
    public const int PTRACE_SINGLESTEP = 9;
    public const int PTRACE_GETREGS = 12;
    public const int PTRACE_SETREGS = 13;
    public const int PTRACE_ATTACH = 16;
    public const int PTRACE_DETACH = 17;
    public const int PTRACE_SETOPTIONS = 0x4200;
    public const int PTRACE_GETEVENTMSG = 0x4201;
    public const int PTRACE_GETSIGINFO = 0x4202;
    public const int PTRACE_SEIZE = 0x4206;
    public const int PTRACE_INTERRUPT = 0x4207;
    public const int PTRACE_LISTEN = 0x4208;

    public const int PTRACE_O_TRACESYSGOOD = 0x1;
    public const int PTRACE_O_TRACEFORK = 0x2;
    public const int PTRACE_O_TRACEVFORK = 0x4;
    public const int PTRACE_O_TRACECLONE = 0x8;
    public const int PTRACE_O_TRACEEXEC = 0x10;
    public const int PTRACE_O_TRACEVFORKDONE = 0x20;
    public const int PTRACE_O_TRACEEXIT = 0x40;
    public const int PTRACE_O_EXITKILL = 0x100000;

    public const int PTRACE_EVENT_FORK = 1;
    public const int PTRACE_EVENT_VFORK = 2;
    public const int PTRACE_EVENT_CLONE = 3;
    public const int PTRACE_EVENT_EXEC = 4;
    public const int PTRACE_EVENT_VFORK_DONE = 5;
    public const int PTRACE_EVENT_EXIT = 6;
    public const int PTRACE_EVENT_STOP = 128;

    /// <summary>Byte offset of rip inside struct user (user_regs_struct comes first).</summary>
    public const int USER_RIP_OFFSET = 16 * 8;

    // glibc's ptrace is variadic; on x86-64 SysV passing four integer arguments is ABI-compatible.
    [LibraryImport("libc", EntryPoint = "ptrace", SetLastError = true)]
    public static partial long ptrace(long request, int pid, nint addr, nint data);

    [LibraryImport("libc", EntryPoint = "ptrace", SetLastError = true)]
    public static unsafe partial long ptrace_regs(long request, int pid, nint addr, user_regs_struct* data);
}
