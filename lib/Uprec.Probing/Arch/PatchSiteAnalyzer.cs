using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Uprec.Probing.Arch;

/// <summary>
/// Decides whether a probe site can take the in-process hit path, and relocates the instructions that the
/// site's <c>jmp rel32</c> displaces into the trampoline.
/// </summary>
/// <remarks>
/// <para>The patch is safe when every way of reaching the overwritten bytes still sees whole instructions:
/// control arriving at the site meets the new jmp (and so the trampoline, which runs the displaced
/// instructions and comes back); control arriving at byte 1..4 would execute the middle of the jmp. Such
/// arrivals are a direct branch to those bytes, a call whose return address is there, or an indirect jump
/// (switch table, computed goto) whose targets cannot be seen in the code. Targets at or past site+5 are
/// harmless: those bytes are never changed, and any displaced instruction that spans them starts before
/// site+5 and so is never a branch target of correct code.</para>
/// <para>What this cannot see, and the engine must handle: a thread whose RIP (or a signal frame's saved RIP)
/// is inside bytes 1..4 while patching; branches from other functions into the middle of this one
/// (hand-written assembly such as glibc's string functions does that; compiled code does not); and C++
/// landing pads, which only .gcc_except_table names. A landing pad is entered by unwinding, not by falling
/// through (LLVM's IR requires it; not verified for GCC), and every displaced instruction after the
/// first is entered by falling through from the one before, so a pad there would be unusual code; it is
/// the residual risk of a probe inside a function.</para>
/// </remarks>
public static class PatchSiteAnalyzer
{
    /// <summary>Bytes overwritten at the site: <c>jmp rel32</c>.</summary>
    public const int JumpLength = 5;

    /// <summary>
    /// How far from the site <see cref="Analyze"/> proves that the displaced instructions can be placed: a
    /// trampoline within this distance of the site (and above address 0) never makes <see cref="Relocate"/>
    /// throw for an accepted plan. Branches reach anywhere (BlockEncoder goes through a literal when needed);
    /// a rip-relative data operand reaches ±2 GB, so Analyze encodes at both ends of the interval, and every
    /// address between them is then in reach too.
    /// </summary>
    public const ulong ProvenReach = 256UL << 20;

    /// <summary>One row of the table of instructions that must not be displaced: the first matching row decides.</summary>
    public sealed record DisplacementRule(string Name, Func<Instruction, bool> Matches, string Why);

    /// <summary>
    /// Instructions that cannot run in the trampoline instead of at the site (everything else can: ALU, mov,
    /// push/pop, endbr64, SSE/AVX, locked instructions, relative branches and calls, which
    /// <see cref="Relocate"/> re-targets). Each row says why, for the reader; the name goes to the user.
    /// </summary>
    public static readonly IReadOnlyList<DisplacementRule> NotDisplaceable =
    [
        new("int3", i => i.Mnemonic is Mnemonic.Int3 or Mnemonic.Int1,
            "a breakpoint already there (a debugger's, or the program trapping on purpose) would report the trampoline's address"),
        new("a software interrupt", i => i.Mnemonic is Mnemonic.Int or Mnemonic.Into,
            "the signal it raises would report the trampoline's address instead of the site's"),
        new("a syscall", i => i.Mnemonic is Mnemonic.Syscall or Mnemonic.Sysenter,
            "the kernel, seccomp filters, signal handlers and other tracers would see the trampoline's address; the trap path handles it"),
        new("an undefined instruction", i => i.FlowControl == FlowControl.Exception,
            "ud0/ud1/ud2 raise SIGILL on purpose; the handler would see the trampoline's address"),
        new("a privileged instruction", i => i.IsPrivileged,
            "it faults in user mode and the fault would report the trampoline's address"),
        new("a far transfer", i => i.IsCallFar || i.IsCallFarIndirect || i.IsJmpFar || i.IsJmpFarIndirect
                                   || i.Mnemonic is Mnemonic.Retf or Mnemonic.Iret or Mnemonic.Iretd or Mnemonic.Iretq,
            "it loads CS; compilers never emit it in 64-bit user code"),
        new("transactional memory", i => i.Mnemonic is Mnemonic.Xbegin or Mnemonic.Xabort or Mnemonic.Xend,
            "a transaction would enclose the trampoline's counter and ring writes, and an abort would undo them; RTM code keeps the trap path"),
        new("a 16-bit branch", i => i.FlowControl != FlowControl.Next && i.Op0Kind is OpKind.NearBranch16,
            "an operand-size prefix on a branch truncates RIP on AMD CPUs and is ignored on Intel ones"),
        new("a 16-bit call or jump", i => i.Code is Code.Call_rm16 or Code.Jmp_rm16,
            "an operand-size prefix on an indirect branch truncates RIP; no compiler emits it"),
        new("an unknown control transfer", i => i.FlowControl != FlowControl.Next && !IsKnownTransfer(i),
            "Relocate does not know how to run it elsewhere"),
    ];

    /// <summary>
    /// Analyses the probe site <paramref name="site"/> inside <paramref name="function"/>. Never throws for
    /// bad code: anything it cannot prove safe is a <see cref="RefusedPatch"/>.
    /// </summary>
    /// <param name="function">The whole function the site is in (symbol address and size bytes).</param>
    /// <param name="site">The probe address, inside the function (usually its first byte).</param>
    /// <param name="related">Other code that may branch into the function: its .cold fragments.</param>
    public static PatchDecision Analyze(CodeRange function, ulong site, IReadOnlyList<CodeRange> related)
    {
        ArgumentNullException.ThrowIfNull(function);
        ArgumentNullException.ThrowIfNull(related);
        if (site < function.Address || site >= function.End)
            return new RefusedPatch("the probe address is outside the function");
        if (function.End - site < JumpLength)
            return new RefusedPatch($"function too short for a {JumpLength}-byte jump");

        var code = Decode(function);
        if (code is null)
            return new RefusedPatch("cannot decode the function");
        int first = IndexAt(code, site);
        if (first < 0)
            return new RefusedPatch("the probe address is inside an instruction, not at its start");

        var displaced = new List<Instruction>();
        int length = 0;
        for (int i = first; length < JumpLength; i++)
        {
            // The size check above guarantees bytes; a run that still ends here ended at the function's end.
            if (i == code.Count)
                return new RefusedPatch($"function too short for a {JumpLength}-byte jump");
            var instr = code[i];
            var rule = RuleFor(instr);
            if (rule is not null)
                return new RefusedPatch($"the patched bytes hold {rule.Name} ({Format(instr)}), which cannot run in a trampoline");
            if (!SameOnIntelAndAmd(instr, function))
                return new RefusedPatch($"{Format(instr)} decodes differently on intel and amd cpus");
            displaced.Add(instr);
            length += instr.Length;

            if ((instr.IsCallNear || instr.IsCallNearIndirect) && InsideJump(instr.NextIP, site))
                return new RefusedPatch($"a call in the patch returns to byte {instr.NextIP - site} of the patch");
            if (!FallsThrough(instr))
            {
                if (length < JumpLength)
                    return new RefusedPatch(site == function.Address
                        ? $"the function leaves within its first {length} bytes"
                        : $"the code leaves within {length} bytes of the probe");
                break;
            }
        }

        var branch = FindBranchIntoJump(code, site, "the function");
        if (branch is not null)
            return new RefusedPatch(branch);
        var jump = FindUnprovenIndirectJump(code, function.Address, "the function")
                   ?? FindAddressTaken(code, site, "the function");
        if (jump is not null)
            return new RefusedPatch(jump);
        foreach (var fragment in related)
        {
            var other = Decode(fragment);
            if (other is null)
                return new RefusedPatch("cannot decode a .cold fragment of the function");
            branch = FindBranchIntoJump(other, site, "a .cold fragment");
            if (branch is not null)
                return new RefusedPatch(branch);
            jump = FindUnprovenIndirectJump(other, fragment.Address, "a .cold fragment")
                   ?? FindAddressTaken(other, site, "a .cold fragment");
            if (jump is not null)
                return new RefusedPatch(jump);
        }

        var plan = new PatchablePlan(length, displaced);
        // Accept only what Relocate will encode anywhere within ProvenReach: encode at both ends.
        foreach (var at in new[] { site + ProvenReach, site - Math.Min(site, ProvenReach) })
        {
            if (!TryRelocate(plan, site, at, out _, out var error))
                return new RefusedPatch($"the patched instructions cannot be relocated near the site ({error})");
        }
        return plan;
    }

    /// <summary>
    /// Code for the displaced instructions placed at <paramref name="at"/> (a trampoline tail within ±2 GB of
    /// the site), followed by <c>jmp site+DisplacedLength</c> unless the last displaced instruction never falls
    /// through (ret, jmp). Calls push the original, site-relative return address and change no register or flag.
    /// A branch to the site itself keeps going to the site (where the patch sends it through the trampoline,
    /// so a loop back to the probe is counted as a hit).
    /// </summary>
    /// <exception cref="ArgumentException">The plan does not start at <paramref name="site"/>, or cannot be encoded at <paramref name="at"/> (a rip-relative operand out of reach).</exception>
    public static byte[] Relocate(PatchablePlan plan, ulong site, ulong at)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (!TryRelocate(plan, site, at, out var code, out var error))
            throw new ArgumentException($"cannot place the {plan.DisplacedLength} displaced bytes of site {site:X}h at {at:X}h: {error}", nameof(at));
        return code;
    }

    static bool TryRelocate(PatchablePlan plan, ulong site, ulong at, out byte[] code, out string error)
    {
        code = [];
        if (plan.Displaced.Count == 0)
        {
            error = "the plan displaces no instructions";
            return false;
        }
        var sequence = new List<Instruction>(plan.Displaced.Count + 8);
        ulong ip = site;
        foreach (var original in plan.Displaced)
        {
            if (original.IP != ip)
            {
                error = $"the plan's instructions are not contiguous from the site (expected one at {ip:X}h, found {original.IP:X}h)";
                return false;
            }
            ip = original.NextIP;
            // BlockEncoder re-targets a branch to any instruction of the block by its IP; a branch to the site
            // must leave the trampoline for the site, so the copies carry no IP (0 repeats are allowed).
            var copy = original;
            copy.IP = 0;
            if (original.IsCallNear || original.IsCallNearIndirect)
            {
                if (!AppendCall(sequence, original, copy, out error))
                    return false;
            }
            else
            {
                sequence.Add(copy);
            }
        }
        if (ip - site != (ulong)plan.DisplacedLength)
        {
            error = $"the plan's instructions cover {ip - site} bytes, not its {plan.DisplacedLength}";
            return false;
        }
        if (FallsThrough(plan.Displaced[^1]))
            sequence.Add(Instruction.CreateBranch(Code.Jmp_rel32_64, site + (ulong)plan.DisplacedLength));

        var writer = new CodeBuffer();
        if (!BlockEncoder.TryEncode(64, new InstructionBlock(writer, sequence, at), out var encoderError, out _))
        {
            error = encoderError ?? "the encoder failed";
            return false;
        }
        code = writer.ToArray();
        error = "";
        return true;
    }

    /// <summary>
    /// Replaces a call by: push the original return address, then jump to the call's target. Nothing else may
    /// differ from the real call, since the callee, unwinders and backtrace() look at the return address, and
    /// the caller's registers and flags are live across a call's argument setup.
    /// </summary>
    /// <remarks>
    /// A process running with a CET shadow stack (x86_Thread_features: shstk in /proc/PID/status) cannot take
    /// this: the pushed address is not on the shadow stack, so the callee's ret faults. Such a process needs
    /// plans without displaced calls. Likewise, were user-space IBT ever enforced, an endbr64 at the site could
    /// not be displaced (indirect calls must land on it); probing at entry+4 keeps it.
    /// </remarks>
    static bool AppendCall(List<Instruction> sequence, in Instruction original, Instruction copy, out string error)
    {
        ulong returnAddress = original.NextIP;
        var a = new Assembler(64);
        if (returnAddress <= int.MaxValue)
        {
            // push imm32 sign-extends, so it carries the address exactly below 2 GB (non-PIE code).
            a.push((int)returnAddress);
        }
        else
        {
            // lea, push, mov and pop leave flags alone; xchg with memory would too, but it is a locked
            // read-modify-write that costs ~20 cycles on every hit.
            a.lea(rsp, __[rsp - 8]);
            a.push(rax);
            a.mov(rax, returnAddress);
            a.mov(__qword_ptr[rsp + 8], rax);
            a.pop(rax);
        }
        sequence.AddRange(a.Instructions);

        if (original.Code == Code.Call_rel32_64)
        {
            // BlockEncoder turns this into jmp [rip+0] plus a literal when the target is over 2 GB from the trampoline.
            sequence.Add(Instruction.CreateBranch(Code.Jmp_rel32_64, original.NearBranch64));
            error = "";
            return true;
        }
        if (original.Code != Code.Call_rm64)
        {
            error = $"{Format(original)} is not a call this relocator knows";
            return false;
        }

        var jump = copy;
        jump.Code = Code.Jmp_rm64;
        if (jump.Op0Kind == OpKind.Register)
        {
            if (jump.Op0Register == Register.RSP)
            {
                error = "call rsp would jump to the stack pointer after the return address was pushed";
                return false;
            }
        }
        else if (jump.MemoryBase is Register.RSP or Register.ESP)
        {
            // The call reads its operand before pushing; the jmp reads it after, with rsp 8 lower.
            long displacement = (long)jump.MemoryDisplacement64 + 8;
            if (displacement > int.MaxValue)
            {
                error = $"{Format(original)} has an rsp displacement too large to adjust";
                return false;
            }
            jump.MemoryDisplacement64 = (ulong)displacement;
            // Iced's displacement size: 1 asks for disp8, otherwise the address size in bytes (disp32 either way).
            jump.MemoryDisplSize = displacement is >= sbyte.MinValue and <= sbyte.MaxValue ? 1
                : jump.MemoryBase == Register.RSP ? 8 : 4;
        }
        sequence.Add(jump);
        error = "";
        return true;
    }

    /// <summary>Decodes the whole range from its start; null when any byte is not part of a valid instruction.</summary>
    /// <remarks>
    /// An invalid byte after the site is refused as well as one before it: past it the linear decoding may be
    /// out of step, so branches into the patch could hide there. Compilers put no data in x86-64 .text, so this
    /// costs nothing on compiled code.
    /// </remarks>
    static List<Instruction>? Decode(CodeRange range)
    {
        var list = new List<Instruction>(range.Code.Length / 3 + 1);
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(range.Code), range.Address, DecoderOptions.None);
        while (decoder.IP < range.End)
        {
            decoder.Decode(out var instr);
            if (instr.IsInvalid || decoder.LastError != DecoderError.None)
                return null;
            list.Add(instr);
        }
        return list;
    }

    static int IndexAt(List<Instruction> code, ulong ip)
    {
        int lo = 0, hi = code.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            ulong at = code[mid].IP;
            if (at == ip)
                return mid;
            if (at < ip)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
        return -1;
    }

    /// <summary>Whether <paramref name="target"/> is one of the jmp's bytes other than its first.</summary>
    static bool InsideJump(ulong target, ulong site) => target > site && target - site < JumpLength;

    static string? FindBranchIntoJump(List<Instruction> code, ulong site, string where)
    {
        foreach (var instr in code)
        {
            if (!IsDirectBranch(instr))
                continue;
            ulong target = instr.NearBranchTarget;
            if (InsideJump(target, site))
                return $"a branch in {where} ({Format(instr)} at {instr.IP:X}h) targets byte {target - site} of the patch";
        }
        return null;
    }

    // jmp/jcc/call rel, loop/jrcxz, and xbegin's abort address: every encoded target a CPU can go to.
    static bool IsDirectBranch(in Instruction instr) =>
        instr.Op0Kind is OpKind.NearBranch16 or OpKind.NearBranch32 or OpKind.NearBranch64;

    /// <summary>
    /// Finds an indirect jump whose targets might include the patch. Its targets are in a table in .rodata, which
    /// the analysis does not get, so instead of reading jump tables it accepts only indirect jumps that are tail
    /// calls, whose target is some function's entry, never the middle of this one.
    /// </summary>
    /// <remarks>
    /// <para>Why this is sound enough: compilers emit an indirect jmp for switch tables, computed goto, and tail
    /// calls through pointers (plus PLT/GOT-style jumps). A switch or computed-goto dispatch goes to code of
    /// the same function that still uses its frame, so it runs before the frame is torn down; a tail call
    /// must tear the frame down first. So a jump directly preceded by an epilogue instruction (leave, a pop of
    /// a callee-saved register, add rsp) is a tail call, and so are <c>jmp [rip+x]</c> and its PIC spelling
    /// <c>mov r,[rip+got]; jmp [r+d]</c>, which read one fixed pointer (a GOT entry, a global function pointer,
    /// an ops table). The residual risk is GNU C's computed goto through a single pointer variable initialised
    /// with a label of this function (<c>static void *p = &amp;&amp;l; goto *p;</c>) whose label lies in bytes
    /// 1..4; a label whose address is taken in the code itself is caught by <see cref="FindAddressTaken"/>.
    /// To guard against a dispatch scheduled after an early epilogue (shrink-wrapping), a jump
    /// marked notrack (CET's mark for jump tables), one whose memory operand is indexed (<c>jmp [T+idx*8]</c>),
    /// or one whose register was just loaded from an indexed table (<c>movsxd r,[base+idx*4]</c>) is never
    /// taken for a tail call.</para>
    /// <para>What it costs: every function with a switch jump table or computed goto, and every frameless
    /// function that tail-calls through a register (<c>jmp rax</c> with no epilogue before it), gets the
    /// trap path, even when its table never points into the patch.</para>
    /// </remarks>
    static string? FindUnprovenIndirectJump(List<Instruction> code, ulong start, string where)
    {
        for (int i = 0; i < code.Count; i++)
        {
            var instr = code[i];
            if (instr.FlowControl != FlowControl.IndirectBranch || IsTailCall(code, i))
                continue;
            return $"{where} has an indirect jump that is not a tail call ({Format(instr)} at +{instr.IP - start:X}h: a switch table or computed goto may target the patch)";
        }
        return null;
    }

    /// <summary>
    /// Finds code that takes the address of bytes 1..4 of the patch (<c>lea r,[rip+x]</c> in PIC code, an
    /// immediate in non-PIE code): GNU C's <c>&amp;&amp;label</c>, or anything else that may later be jumped to.
    /// </summary>
    static string? FindAddressTaken(List<Instruction> code, ulong site, string where)
    {
        foreach (var instr in code)
        {
            ulong? address = instr.IsIPRelativeMemoryOperand ? instr.IPRelativeMemoryAddress : null;
            for (int op = 0; address is null && op < instr.OpCount; op++)
            {
                if (instr.GetOpKind(op) is OpKind.Immediate32 or OpKind.Immediate32to64 or OpKind.Immediate64)
                    address = instr.GetImmediate(op);
            }
            if (address is ulong a && InsideJump(a, site))
                return $"{where} takes the address of byte {a - site} of the patch ({Format(instr)} at {instr.IP:X}h)";
        }
        return null;
    }

    static bool IsTailCall(List<Instruction> code, int index)
    {
        var jump = code[index];
        if (jump.SegmentPrefix == Register.DS)
            return false; // notrack: CET marks jump-table and computed-goto dispatches with it, never tail calls
        if (jump.Op0Kind == OpKind.Memory)
        {
            if (jump.IsIPRelativeMemoryOperand)
                return true;
            if (jump.MemoryIndex != Register.None)
                return false;
            // PIC code reaches a global function pointer through its GOT entry: mov r,[rip+got]; jmp [r].
            if (index > 0 && IsFixedPointerLoad(code[index - 1], jump.MemoryBase))
                return true;
        }
        if (jump.Op0Kind == OpKind.Register && SwitchesStack(code, index))
            return true;
        if (index == 0 || !IsEpilogue(code[index - 1]))
            return false;
        if (jump.Op0Kind == OpKind.Register)
        {
            // Look back over the straight-line code before the jump for a table load.
            for (int j = index - 1; j >= 0 && j >= index - 8; j--)
            {
                var prior = code[j];
                if (prior.FlowControl != FlowControl.Next)
                    break;
                if (prior.Mnemonic == Mnemonic.Movsxd && prior.Op1Kind == OpKind.Memory && prior.MemoryIndex != Register.None)
                    return false;
                if (prior.Op0Kind == OpKind.Register && prior.Op0Register.GetFullRegister() == jump.Op0Register
                    && prior.Op1Kind == OpKind.Memory && prior.MemoryIndex != Register.None)
                    return false;
            }
        }
        return true;
    }

    /// <summary>
    /// <c>mov rsp,r</c> within the two instructions before a register jump (libgcc's uw_install_context:
    /// <c>mov rsp,rcx; pop rcx; jmp rcx</c>, the unwinder landing in a handler's frame): the jump leaves
    /// on another stack, to another frame, as a longjmp does. A dispatch inside this function still needs
    /// its own frame, so it never replaces rsp wholesale first.
    /// </summary>
    static bool SwitchesStack(List<Instruction> code, int index)
    {
        for (int j = index - 1; j >= 0 && j >= index - 2; j--)
        {
            var prior = code[j];
            if (prior.Code == Code.Mov_r64_rm64 || prior.Code == Code.Mov_rm64_r64)
            {
                if (prior.Op0Kind == OpKind.Register && prior.Op0Register == Register.RSP && prior.Op1Kind == OpKind.Register)
                    return true;
            }
            if (prior.FlowControl != FlowControl.Next)
                return false;
        }
        return false;
    }

    // mov r64,[rip+x]: one fixed slot (a GOT entry or a global), not a table indexed by a computed value.
    static bool IsFixedPointerLoad(in Instruction instr, Register register) =>
        instr.Code == Code.Mov_r64_rm64 && instr.Op0Register == register && instr.IsIPRelativeMemoryOperand;

    static bool IsEpilogue(in Instruction instr) =>
        instr.Mnemonic == Mnemonic.Leave
        || (instr.Code == Code.Pop_r64 && instr.Op0Register is Register.RBP or Register.RBX
            or Register.R12 or Register.R13 or Register.R14 or Register.R15)
        || (instr.Mnemonic == Mnemonic.Add && instr.Op0Kind == OpKind.Register && instr.Op0Register == Register.RSP
            && instr.Op1Kind is OpKind.Immediate8to64 or OpKind.Immediate32to64);

    static DisplacementRule? RuleFor(in Instruction instr)
    {
        foreach (var rule in NotDisplaceable)
        {
            if (rule.Matches(instr))
                return rule;
        }
        return null;
    }

    static bool IsKnownTransfer(in Instruction i) =>
        i.IsJmpShortOrNear || i.IsJccShortOrNear || i.Code is Code.Call_rel32_64 or Code.Call_rm64 or Code.Jmp_rm64
        || i.Mnemonic is Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne or Mnemonic.Jrcxz or Mnemonic.Jecxz
        || i.Mnemonic is Mnemonic.Ret;

    /// <summary>Whether execution can continue with the next instruction (ret and jmp never come back; a call does).</summary>
    static bool FallsThrough(in Instruction instr) => instr.FlowControl is not
        (FlowControl.UnconditionalBranch or FlowControl.IndirectBranch or FlowControl.Return
         or FlowControl.Exception or FlowControl.Interrupt);

    // A branch with a stray operand-size prefix decodes to different lengths on Intel and AMD CPUs.
    static bool SameOnIntelAndAmd(in Instruction instr, CodeRange function)
    {
        if (instr.FlowControl == FlowControl.Next)
            return true;
        int offset = (int)(instr.IP - function.Address);
        var amd = Decoder.Create(64, new ByteArrayCodeReader(function.Code, offset, function.Code.Length - offset), instr.IP, DecoderOptions.AMD).Decode();
        return amd.Code == instr.Code && amd.Length == instr.Length;
    }

    static string Format(in Instruction instr) => TrapPlanner.Format(instr);
}
