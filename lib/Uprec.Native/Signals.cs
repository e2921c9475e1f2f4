using System.Runtime.InteropServices;

namespace Uprec.Native;

/// <summary>signal.h numbers (x86-64) and kill/tgkill.</summary>
public static partial class Signals
{
    public const int SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5, SIGABRT = 6, SIGBUS = 7,
        SIGFPE = 8, SIGKILL = 9, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14,
        SIGTERM = 15, SIGCHLD = 17, SIGCONT = 18, SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22;

    /// <summary>si_code of a SIGTRAP raised by int3 (the kernel reports SI_KERNEL).</summary>
    public const int SI_KERNEL = 0x80;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int kill(int pid, int sig);

    private const long SYS_tgkill = 234;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall3(long number, long a, long b, long c);

    public static int tgkill(int tgid, int tid, int sig) => (int)syscall3(SYS_tgkill, tgid, tid, sig);
}

/// <summary>The first fields of siginfo_t (128 bytes in all) that uprec reads.</summary>
[StructLayout(LayoutKind.Explicit, Size = 128)]
public struct siginfo_t
{
    [FieldOffset(0)] public int si_signo;
    [FieldOffset(4)] public int si_errno;
    [FieldOffset(8)] public int si_code;
    [FieldOffset(16)] public int si_pid;
    [FieldOffset(20)] public int si_uid;
    [FieldOffset(16)] public ulong si_addr;
}
