using Iced.Intel;

namespace Uprec.Probing.Arch;

/// <summary>
/// Decides, once per probe site, how a thread stopped on the site's int3 executes the displaced
/// instruction without the original byte ever being put back (restore/single-step/re-insert lets other
/// threads run through the unpatched site and lose hits).
/// </summary>
/// <remarks>
/// A slot is written once and shared by every thread of the process, so slot code is position-fixed,
/// reentrant and uses no scratch memory: every sequence below keeps its state in registers it restores
/// or on the thread's own stack.
/// </remarks>
public static class TrapPlanner
{
    /// <summary>Bytes reserved per probe site in the out-of-line area.</summary>
    public const int SlotSize = 64;

    /// <summary>The architectural limit; longer input is never part of the first instruction.</summary>
    public const int MaxInstructionLength = 15;

    /// <summary>How a class of instructions is executed when its site traps.</summary>
    public enum Handling
    {
        /// <summary>Copy (relocated) into the slot followed by a jmp back to the next original instruction.</summary>
        CopyAndJumpBack,
        /// <summary>Copy (relocated) into the slot; it transfers control itself, so nothing follows it.</summary>
        CopyBranch,
        /// <summary>Push the site's return address in the slot, then jmp to the call's target.</summary>
        CallOutOfLine,
        /// <summary>Change registers/memory in the tracer; no slot.</summary>
        Emulate,
        /// <summary>Refuse the site.</summary>
        Unsupported,
    }

    /// <summary>One row of the instruction-class table: the first row whose predicate matches decides.</summary>
    public sealed record InstructionClass(string Name, Func<Instruction, bool> Matches, Handling Handling, string Why);

    /// <summary>
    /// The instruction-class table, in the spirit of arch/x86/kernel/uprobes.c's opcode tables: each row
    /// says why that class runs where it runs. Order matters: the first match wins, and the last row
    /// catches every instruction whose control flow simply falls through.
    /// </summary>
    public static readonly IReadOnlyList<InstructionClass> Table =
    [
        new("int3", i => i.Mnemonic == Mnemonic.Int3, Handling.Unsupported,
            "int3 is already a breakpoint (a debugger's, or the program trapping on purpose); displacing it would hide that trap"),
        new("int1", i => i.Mnemonic == Mnemonic.Int1, Handling.Unsupported,
            "int1 raises SIGTRAP on purpose; the signal would report the slot's address instead of the site's"),
        new("int n / into", i => i.Mnemonic is Mnemonic.Int or Mnemonic.Into, Handling.Unsupported,
            "a software interrupt raises a signal that would report the slot's address instead of the site's"),
        new("syscall", i => i.Mnemonic == Mnemonic.Syscall, Handling.CopyAndJumpBack,
            "the kernel returns to the next instruction, the slot's jmp back; a restarted syscall rewinds RIP by 2 onto the slot's own copy; rcx/r11 are clobbered exactly as at the site"),
        new("other system entries", i => i.FlowControl == FlowControl.Interrupt || i.Mnemonic is Mnemonic.Sysenter, Handling.Unsupported,
            "sysenter and similar entries return to kernel-chosen addresses, not to the slot's jmp back"),
        new("ud0/ud1/ud2", i => i.FlowControl == FlowControl.Exception, Handling.Unsupported,
            "an undefined instruction raises SIGILL on purpose; the handler would see the slot's address instead of the site's"),
        new("privileged", i => i.IsPrivileged, Handling.Unsupported,
            "a privileged (CPL 0 or IOPL) instruction faults in user mode and the fault would report the slot's address"),
        new("far call/jmp", i => i.IsCallFar || i.IsCallFarIndirect || i.IsJmpFar || i.IsJmpFarIndirect, Handling.Unsupported,
            "a far call/jmp loads CS; compilers never emit it in 64-bit user code and it is not relocated"),
        new("xbegin/xabort/xend", i => i.Mnemonic is Mnemonic.Xbegin or Mnemonic.Xabort or Mnemonic.Xend, Handling.Unsupported,
            "xbegin's abort target is relative to the site and is not relocated; besides, int3 aborts a hardware transaction, so a probe on RTM code never sees transactional runs"),
        new("jmp rel8/rel32", i => i.IsJmpShortOrNear, Handling.Emulate,
            "the tracer sets RIP on every hit anyway: setting it to the target costs nothing and needs no slot"),
        new("jcc rel8/rel32", i => i.IsJccShortOrNear, Handling.Emulate,
            "the condition is evaluated from the stopped thread's EFLAGS; a rel8 copy in the slot could not reach the target"),
        new("jrcxz/jecxz", i => i.Mnemonic is Mnemonic.Jrcxz or Mnemonic.Jecxz, Handling.Emulate,
            "rel8 only, so a copy in the slot could not reach the target; the tracer tests rcx (ecx with 67h)"),
        new("loop/loope/loopne", i => i.Mnemonic is Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne, Handling.Emulate,
            "rel8 only, like jrcxz; the tracer decrements rcx (ecx with 67h) and tests ZF"),
        new("call rel32", i => i.Code == Code.Call_rel32_64, Handling.CallOutOfLine,
            "the slot pushes the site's own return address, then jumps to the target: unwinders and the callee's ret must see the original return address, never a slot address"),
        new("call r/m64", i => i.Code == Code.Call_rm64, Handling.CallOutOfLine,
            "the same push, then jmp through the same operand (an rsp-based displacement grows by 8 for the push, a rip-relative one is relocated); emulated when that cannot be encoded"),
        new("jmp r/m64", i => i.Code == Code.Jmp_rm64, Handling.CopyBranch,
            "independent of its own address except a rip-relative operand, which is relocated; emulated when that is out of range of the slot"),
        new("ret / ret imm16", i => i.FlowControl == FlowControl.Return, Handling.CopyBranch,
            "pops its target, so it runs the same anywhere; nothing follows it in the slot"),
        new("other control flow", i => i.FlowControl != FlowControl.Next, Handling.Unsupported,
            "a control transfer that this table does not know how to relocate"),
        new("everything else", _ => true, Handling.CopyAndJumpBack,
            "push/pop, endbr64, nops, ALU, mov, SSE/AVX...: runs the same in the slot; rip-relative operands (legacy, VEX, EVEX) are re-encoded by Iced's BlockEncoder for the slot's address, and a jmp returns to the next original instruction"),
    ];

    /// <summary>
    /// Plans the trap path for the instruction at <paramref name="ip"/>. Never throws on bad input:
    /// undecodable or truncated bytes give an <see cref="UnsupportedPlan"/>.
    /// </summary>
    /// <param name="code">The original bytes starting at the probed instruction (up to 16; fewer near the end of a mapping).</param>
    /// <param name="ip">The instruction's address in the target.</param>
    /// <param name="slot">The address of this site's <see cref="SlotSize"/>-byte slot in the target.</param>
    public static TrapPlan Plan(ReadOnlySpan<byte> code, ulong ip, ulong slot)
    {
        if (code.IsEmpty)
            return new UnsupportedPlan(0, "", $"no bytes could be read at {ip:X}h");

        var bytes = code.Length > MaxInstructionLength ? code[..MaxInstructionLength].ToArray() : code.ToArray();
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(bytes), ip, DecoderOptions.None);
        decoder.Decode(out var instr);
        if (decoder.LastError == DecoderError.NoMoreBytes)
            return new UnsupportedPlan(0, Hex(bytes),
                $"truncated instruction at {ip:X}h: only {bytes.Length} byte(s) readable before the end of the mapping");
        if (instr.Code == Code.INVALID)
            return new UnsupportedPlan(instr.Length, Hex(bytes.AsSpan(0, Math.Max(1, instr.Length))),
                $"invalid opcode at {ip:X}h");

        var text = Format(instr);

        // An operand-size prefix on a branch is ignored by Intel CPUs and truncates RIP to 16 bits on AMD
        // ones; no compiler emits it, and neither a copy nor an emulation could be right on both.
        var amd = instr.FlowControl == FlowControl.Next
            ? instr
            : Decoder.Create(64, new ByteArrayCodeReader(bytes), ip, DecoderOptions.AMD).Decode();
        if (amd.Code != instr.Code || amd.Length != instr.Length)
            return new UnsupportedPlan(instr.Length, text,
                $"decodes differently on Intel ({text}) and AMD ({Format(amd)}) CPUs");

        var cls = Classify(instr);
        switch (cls.Handling)
        {
            case Handling.Unsupported:
                return new UnsupportedPlan(instr.Length, text, $"{cls.Name}: {cls.Why}");
            case Handling.Emulate:
                return new EmulatePlan(instr.Length, text, instr);
            case Handling.CopyAndJumpBack:
                return Relocate(instr, text, slot, [instr, Instruction.CreateBranch(Code.Jmp_rel32_64, instr.NextIP)]);
            case Handling.CopyBranch:
                return EmulateIfRipOutOfRange(instr, text, Relocate(instr, text, slot, [instr]));
            case Handling.CallOutOfLine:
                return PlanCall(instr, text, slot);
            default:
                throw new InvalidOperationException($"unhandled class {cls.Handling}");
        }
    }

    /// <summary>The table row that decides for <paramref name="instruction"/> (a valid 64-bit instruction).</summary>
    public static InstructionClass Classify(in Instruction instruction)
    {
        foreach (var row in Table)
        {
            if (row.Matches(instruction))
                return row;
        }
        throw new InvalidOperationException("the last table row matches everything");
    }

    /// <summary>Formats one instruction the way plans and test vectors show it (MASM syntax, hex with an h suffix).</summary>
    public static string Format(in Instruction instruction)
    {
        var formatter = new MasmFormatter();
        formatter.Options.ShowBranchSize = false;
        formatter.Options.BranchLeadingZeros = false;
        formatter.Options.FirstOperandCharIndex = 0;
        var output = new StringOutput();
        formatter.Format(instruction, output);
        return output.ToStringAndReset();
    }

    static TrapPlan PlanCall(in Instruction call, string text, ulong slot)
    {
        ulong returnAddress = call.NextIP;
        var sequence = new List<Instruction>(5);
        // push imm32 sign-extends, so it can carry the return address only below 2 GB (non-PIE code).
        // Otherwise rax carries it and xchg puts rax back: no register or flag differs from a real call.
        if (returnAddress <= int.MaxValue)
        {
            sequence.Add(Instruction.Create(Code.Pushq_imm32, (int)returnAddress));
        }
        else
        {
            sequence.Add(Instruction.Create(Code.Push_r64, Register.RAX));
            sequence.Add(Instruction.Create(Code.Mov_r64_imm64, Register.RAX, returnAddress));
            sequence.Add(Instruction.Create(Code.Xchg_rm64_r64, new MemoryOperand(Register.RSP), Register.RAX));
        }

        if (call.Code == Code.Call_rel32_64)
        {
            // BlockEncoder turns this into jmp [rip+0] plus an 8-byte literal when the target is over 2 GB away.
            sequence.Add(Instruction.CreateBranch(Code.Jmp_rel32_64, call.NearBranch64));
            return Relocate(call, text, slot, sequence);
        }

        var jump = call;
        jump.Code = Code.Jmp_rm64;
        if (jump.Op0Kind == OpKind.Register)
        {
            // After the push, rsp no longer holds the value the call would have jumped to.
            if (jump.Op0Register == Register.RSP)
                return new EmulatePlan(call.Length, text, call);
        }
        else if (jump.MemoryBase is Register.RSP or Register.ESP)
        {
            // The call computes its operand before pushing; the slot's jmp runs after the push, 8 bytes lower.
            long displacement = (long)jump.MemoryDisplacement64 + 8;
            if (displacement > int.MaxValue)
                return new EmulatePlan(call.Length, text, call);
            jump.MemoryDisplacement64 = (ulong)displacement;
            // Iced's displacement size: 1 asks for disp8; otherwise the address size in bytes (disp32 either way).
            jump.MemoryDisplSize = displacement is >= sbyte.MinValue and <= sbyte.MaxValue ? 1
                : jump.MemoryBase == Register.RSP ? 8 : 4;
        }
        sequence.Add(jump);

        return EmulateIfRipOutOfRange(call, text, Relocate(call, text, slot, sequence));
    }

    // An indirect branch whose rip-relative pointer is out of the slot's reach is still cheap to emulate:
    // the tracer reads the pointer itself. (A data access out of reach has no such way out.)
    static TrapPlan EmulateIfRipOutOfRange(in Instruction branch, string text, TrapPlan relocated) =>
        relocated is UnsupportedPlan && branch.IsIPRelativeMemoryOperand
            ? new EmulatePlan(branch.Length, text, branch)
            : relocated;

    static TrapPlan Relocate(in Instruction original, string text, ulong slot, IList<Instruction> sequence)
    {
        var writer = new CodeBuffer();
        if (!BlockEncoder.TryEncode(64, new InstructionBlock(writer, sequence, slot), out var error, out _))
        {
            var reason = original.IsIPRelativeMemoryOperand
                ? $"rip-relative operand {original.IPRelativeMemoryAddress:X}h is not within ±2 GB of the slot at {slot:X}h ({error})"
                : $"cannot relocate to the slot at {slot:X}h: {error}";
            return new UnsupportedPlan(original.Length, text, reason);
        }
        if (writer.Count > SlotSize)
            return new UnsupportedPlan(original.Length, text,
                $"relocated code needs {writer.Count} bytes, more than the {SlotSize}-byte slot");
        return new OutOfLinePlan(original.Length, text, writer.ToArray());
    }

    static string Hex(ReadOnlySpan<byte> bytes) => "(bytes " + Convert.ToHexString(bytes) + ")";
}
