using System.Runtime.InteropServices;

namespace Uprec.Native;

/// <summary>struct user_regs_struct from sys/user.h (x86-64), as PTRACE_GETREGS fills it.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct user_regs_struct
{
    public ulong r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax;
    public ulong rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs;
}
