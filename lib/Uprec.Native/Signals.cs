using System.Runtime.InteropServices;

namespace Uprec.Native;

/// <summary>signal.h numbers (x86-64) and kill/tgkill.</summary>
public static partial class Signals
{
    public const int SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5, SIGABRT = 6, SIGBUS = 7,
        SIGFPE = 8, SIGKILL = 9, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14,
        SIGTERM = 15, SIGCHLD = 17, SIGCONT = 18, SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int kill(int pid, int sig);

    private const long SYS_tgkill = 234;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall3(long number, long a, long b, long c);

    public static int tgkill(int tgid, int tid, int sig) => (int)syscall3(SYS_tgkill, tgid, tid, sig);
}
