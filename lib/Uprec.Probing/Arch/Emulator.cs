using System.Buffers.Binary;
using Iced.Intel;
using Uprec.Native;

namespace Uprec.Probing.Arch;

/// <summary>
/// Executes in the tracer the instructions that <see cref="TrapPlanner"/> chose to emulate: relative
/// branches (the tracer sets RIP on every hit anyway), plus near calls, indirect jumps and returns as the
/// fallback when their out-of-line copy cannot be encoded.
/// </summary>
public static class Emulator
{
    // EFLAGS bits read by conditions (Intel SDM vol. 1, 3.4.3).
    const ulong CF = 1 << 0, PF = 1 << 2, ZF = 1 << 6, SF = 1 << 7, OF = 1 << 11;

    /// <summary>
    /// Executes <c>plan.Decoded</c> as if at its original address: updates <paramref name="regs"/> (rip,
    /// rsp, rcx...) and <paramref name="memory"/> (a call's pushed return address). The incoming rip is
    /// ignored; on success rip is where the thread continues. On failure nothing was changed, neither
    /// registers nor memory, and <paramref name="error"/> says why.
    /// </summary>
    public static bool TryExecute(EmulatePlan plan, ref user_regs_struct regs, ITargetMemory memory, out string? error)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(memory);
        var instr = plan.Decoded;
        ulong next = instr.NextIP;

        if (instr.IsJmpShortOrNear && instr.Op0Kind == OpKind.NearBranch64)
        {
            regs.rip = instr.NearBranch64;
            error = null;
            return true;
        }
        if (instr.IsJccShortOrNear && instr.Op0Kind == OpKind.NearBranch64)
        {
            regs.rip = IsConditionTrue(instr.ConditionCode, regs.eflags) ? instr.NearBranch64 : next;
            error = null;
            return true;
        }

        switch (instr.Code)
        {
            case Code.Jrcxz_rel8_64:
                regs.rip = regs.rcx == 0 ? instr.NearBranch64 : next;
                error = null;
                return true;
            case Code.Jecxz_rel8_64:
                regs.rip = (uint)regs.rcx == 0 ? instr.NearBranch64 : next;
                error = null;
                return true;

            case Code.Loop_rel8_64_RCX:
            case Code.Loope_rel8_64_RCX:
            case Code.Loopne_rel8_64_RCX:
                regs.rcx--;
                regs.rip = LoopTaken(instr.Mnemonic, regs.rcx, regs.eflags) ? instr.NearBranch64 : next;
                error = null;
                return true;
            case Code.Loop_rel8_64_ECX:
            case Code.Loope_rel8_64_ECX:
            case Code.Loopne_rel8_64_ECX:
                // The 32-bit count is written like any 32-bit register write: zero-extended into rcx.
                regs.rcx = (uint)regs.rcx - 1u;
                regs.rip = LoopTaken(instr.Mnemonic, regs.rcx, regs.eflags) ? instr.NearBranch64 : next;
                error = null;
                return true;

            case Code.Call_rel32_64:
                return TryCall(instr.NearBranch64, next, ref regs, memory, out error);
            case Code.Call_rm64:
                return TryReadOperand(instr, regs, memory, out var callTarget, out error)
                    && TryCall(callTarget, next, ref regs, memory, out error);
            case Code.Jmp_rm64:
                if (!TryReadOperand(instr, regs, memory, out var jumpTarget, out error))
                    return false;
                regs.rip = jumpTarget;
                return true;

            case Code.Retnq:
            case Code.Retnq_imm16:
                Span<byte> returnAddress = stackalloc byte[8];
                if (!memory.TryRead(regs.rsp, returnAddress))
                {
                    error = $"cannot read the return address at rsp={regs.rsp:X}h for '{plan.Instruction}' at {instr.IP:X}h";
                    return false;
                }
                regs.rip = BinaryPrimitives.ReadUInt64LittleEndian(returnAddress);
                regs.rsp += 8 + (instr.Code == Code.Retnq_imm16 ? instr.Immediate16 : 0u);
                error = null;
                return true;
        }

        error = $"'{plan.Instruction}' at {instr.IP:X}h is not an instruction the emulator executes";
        return false;
    }

    /// <summary>Intel SDM's condition table (Jcc, "Description" column), indexed by Iced's condition code.</summary>
    public static bool IsConditionTrue(ConditionCode condition, ulong eflags)
    {
        bool cf = (eflags & CF) != 0, pf = (eflags & PF) != 0, zf = (eflags & ZF) != 0;
        bool sf = (eflags & SF) != 0, of = (eflags & OF) != 0;
        return condition switch
        {
            ConditionCode.o => of,
            ConditionCode.no => !of,
            ConditionCode.b => cf,
            ConditionCode.ae => !cf,
            ConditionCode.e => zf,
            ConditionCode.ne => !zf,
            ConditionCode.be => cf || zf,
            ConditionCode.a => !cf && !zf,
            ConditionCode.s => sf,
            ConditionCode.ns => !sf,
            ConditionCode.p => pf,
            ConditionCode.np => !pf,
            ConditionCode.l => sf != of,
            ConditionCode.ge => sf == of,
            ConditionCode.le => zf || sf != of,
            ConditionCode.g => !zf && sf == of,
            _ => throw new ArgumentOutOfRangeException(nameof(condition), condition, "not a jcc condition"),
        };
    }

    static bool LoopTaken(Mnemonic mnemonic, ulong count, ulong eflags) => mnemonic switch
    {
        Mnemonic.Loope => count != 0 && (eflags & ZF) != 0,
        Mnemonic.Loopne => count != 0 && (eflags & ZF) == 0,
        _ => count != 0,
    };

    // A call writes its return address at rsp-8 like the real instruction: that slot is below the stack
    // pointer, never in use by the thread (the red zone belongs to a leaf function, and a caller is not a leaf).
    static bool TryCall(ulong target, ulong returnAddress, ref user_regs_struct regs, ITargetMemory memory, out string? error)
    {
        Span<byte> pushed = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(pushed, returnAddress);
        ulong newRsp = regs.rsp - 8;
        if (!memory.TryWrite(newRsp, pushed))
        {
            error = $"cannot push the return address at {newRsp:X}h (rsp={regs.rsp:X}h)";
            return false;
        }
        regs.rsp = newRsp;
        regs.rip = target;
        error = null;
        return true;
    }

    // The r/m64 operand of call/jmp, evaluated with the registers as they were at the site (before any push).
    static bool TryReadOperand(in Instruction instr, user_regs_struct regs, ITargetMemory memory, out ulong value, out string? error)
    {
        if (instr.Op0Kind == OpKind.Register)
        {
            if (TryGetRegister(regs, instr.Op0Register, out value))
            {
                error = null;
                return true;
            }
            error = $"register {instr.Op0Register} is not available to the emulator";
            return false;
        }

        if (!instr.TryGetVirtualAddress(0, 0, out ulong address,
                (Register register, int _, int _, out ulong v) => TryGetRegister(regs, register, out v)))
        {
            value = 0;
            error = $"cannot compute the operand address of the instruction at {instr.IP:X}h";
            return false;
        }
        Span<byte> pointer = stackalloc byte[8];
        if (!memory.TryRead(address, pointer))
        {
            value = 0;
            error = $"cannot read the branch target at {address:X}h for the instruction at {instr.IP:X}h";
            return false;
        }
        value = BinaryPrimitives.ReadUInt64LittleEndian(pointer);
        error = null;
        return true;
    }

    /// <summary>
    /// A general-purpose register's value as an operand of that size (eax is the low half of rax, ah bits
    /// 8..15), or a segment register's base (fs/gs from the thread's bases; the flat ones are 0).
    /// </summary>
    public static bool TryGetRegister(in user_regs_struct regs, Register register, out ulong value)
    {
        switch (register)
        {
            case Register.ES or Register.CS or Register.SS or Register.DS:
                value = 0;
                return true;
            case Register.FS:
                value = regs.fs_base;
                return true;
            case Register.GS:
                value = regs.gs_base;
                return true;
        }
        if (!register.IsGPR())
        {
            value = 0;
            return false;
        }

        ulong full = register.GetFullRegister() switch
        {
            Register.RAX => regs.rax, Register.RCX => regs.rcx, Register.RDX => regs.rdx, Register.RBX => regs.rbx,
            Register.RSP => regs.rsp, Register.RBP => regs.rbp, Register.RSI => regs.rsi, Register.RDI => regs.rdi,
            Register.R8 => regs.r8, Register.R9 => regs.r9, Register.R10 => regs.r10, Register.R11 => regs.r11,
            Register.R12 => regs.r12, Register.R13 => regs.r13, Register.R14 => regs.r14, Register.R15 => regs.r15,
            _ => throw new InvalidOperationException($"unexpected full register {register.GetFullRegister()}"),
        };
        value = register switch
        {
            Register.AH or Register.CH or Register.DH or Register.BH => (full >> 8) & 0xFF,
            _ => register.GetSize() switch
            {
                1 => full & 0xFF,
                2 => full & 0xFFFF,
                4 => full & 0xFFFF_FFFF,
                _ => full,
            },
        };
        return true;
    }
}
