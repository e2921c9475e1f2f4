using Uprec.Native;
using static Uprec.Native.Ptrace;

namespace Uprec.Probing.Engine;

/// <summary>
/// Throwing wrappers over the ptrace family. The one place errno becomes an exception; messages
/// name the operation, the task and the address. Every method must run on the tracer thread, and
/// the ptrace ones need the task in ptrace-stop.
/// </summary>
internal static unsafe class Sys
{
    private static Exception Fail(string op, int tid, ulong addr = 0)
    {
        int errno = Errno.Last;
        if (errno == Errno.ESRCH) return new TaskGoneException(tid);
        string at = addr != 0 ? $" at 0x{addr:x}" : "";
        return new InvalidOperationException($"{op} on task {tid}{at} failed: {Errno.Describe(errno)}");
    }

    public static void Cont(int tid, int signal = 0)
    {
        if (ptrace(PTRACE_CONT, tid, 0, signal) < 0) throw Fail("PTRACE_CONT", tid);
    }

    public static void SingleStep(int tid)
    {
        if (ptrace(PTRACE_SINGLESTEP, tid, 0, 0) < 0) throw Fail("PTRACE_SINGLESTEP", tid);
    }

    public static void Listen(int tid)
    {
        if (ptrace(PTRACE_LISTEN, tid, 0, 0) < 0) throw Fail("PTRACE_LISTEN", tid);
    }

    public static void Interrupt(int tid)
    {
        if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0) throw Fail("PTRACE_INTERRUPT", tid);
    }

    public static void Detach(int tid, int signal = 0)
    {
        if (ptrace(PTRACE_DETACH, tid, 0, signal) < 0) throw Fail("PTRACE_DETACH", tid);
    }

    /// <summary>PTRACE_SEIZE: unlike ATTACH it sends no SIGSTOP, and group-stops are reported as events.</summary>
    public static int TrySeize(int tid, int options)
    {
        if (ptrace(PTRACE_SEIZE, tid, 0, options) < 0) return Errno.Last;
        return 0;
    }

    public static ulong GetEventMsg(int tid)
    {
        ulong msg = 0;
        if (ptrace(PTRACE_GETEVENTMSG, tid, 0, (nint)(&msg)) < 0) throw Fail("PTRACE_GETEVENTMSG", tid);
        return msg;
    }

    public static user_regs_struct GetRegs(int tid)
    {
        user_regs_struct regs;
        if (ptrace_regs(PTRACE_GETREGS, tid, 0, &regs) < 0) throw Fail("PTRACE_GETREGS", tid);
        return regs;
    }

    public static void SetRegs(int tid, in user_regs_struct regs)
    {
        user_regs_struct copy = regs;
        if (ptrace_regs(PTRACE_SETREGS, tid, 0, &copy) < 0) throw Fail("PTRACE_SETREGS", tid);
    }

    /// <summary>Reads rip alone: one small copy instead of the whole register file on the hit path.</summary>
    public static ulong GetRip(int tid)
    {
        Errno.Clear();
        long v = ptrace(PTRACE_PEEKUSER, tid, USER_RIP_OFFSET, 0);
        if (v == -1 && Errno.Last != 0) throw Fail("PTRACE_PEEKUSER(rip)", tid);
        return (ulong)v;
    }

    public static void SetRip(int tid, ulong rip)
    {
        if (ptrace(PTRACE_POKEUSER, tid, USER_RIP_OFFSET, (nint)rip) < 0) throw Fail("PTRACE_POKEUSER(rip)", tid);
    }

    /// <summary>waitpid(-1 or tid, __WALL), retrying on EINTR. Returns 0 with WNOHANG and nothing ready, -1 on ECHILD.</summary>
    public static int WaitAny(int pid, out int status, bool noHang = false)
    {
        while (true)
        {
            int r = Wait.waitpid(pid, out status, Wait.__WALL | (noHang ? Wait.WNOHANG : 0));
            if (r >= 0) return r;
            int errno = Errno.Last;
            if (errno == Errno.EINTR) continue;
            if (errno == Errno.ECHILD) return -1;
            throw new InvalidOperationException($"waitpid({pid}) failed: {Errno.Describe(errno)}");
        }
    }

    public static long MonotonicNs() => (long)(System.Diagnostics.Stopwatch.GetTimestamp() * TicksToNs);

    private static readonly double TicksToNs = 1e9 / System.Diagnostics.Stopwatch.Frequency;
}
