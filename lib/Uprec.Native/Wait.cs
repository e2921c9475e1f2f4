using System.Runtime.InteropServices;

namespace Uprec.Native;

/// <summary>sys/wait.h: waitpid and the status macros.</summary>
public static partial class Wait
{
    public const int WNOHANG = 1;
    public const int __WALL = 0x40000000;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int waitpid(int pid, out int status, int options);

    public static bool WIFEXITED(int s) => (s & 0x7f) == 0;
    public static int WEXITSTATUS(int s) => (s >> 8) & 0xff;
    public static bool WIFSIGNALED(int s) => ((sbyte)((s & 0x7f) + 1) >> 1) > 0;
    public static int WTERMSIG(int s) => s & 0x7f;
    public static bool WIFSTOPPED(int s) => (s & 0xff) == 0x7f;
    public static int WSTOPSIG(int s) => (s >> 8) & 0xff;
    /// <summary>The PTRACE_EVENT_* of a ptrace event stop (status >> 16), 0 for other stops.</summary>
    public static int PtraceEvent(int s) => (s >> 16) & 0xff;
}
