using Iced.Intel;
using Uprec.Filters;
using static Iced.Intel.AssemblerRegisters;

namespace Uprec.Probing.Arch;

/// <summary>
/// The memory the in-process hit path shares between trampolines (writers, in the target) and uprec
/// (the reader). Every offset here is baked into generated code; the reader never trusts anything it
/// reads back for a size or an address (the target may scribble over all of it).
/// </summary>
public static class InProcessLayout
{
    /// <summary>Thread table: fs base -> per-thread block, 2-way (the entry at the hash and the next).</summary>
    public const int TableBits = 12;
    public const int TableEntries = 1 << TableBits;
    public const int TableEntrySize = 16; // key (fs base), block address
    /// <summary>One extra entry at the end so that the second way of the last bucket needs no wrap.</summary>
    public const int TableBytes = (TableEntries + 1) * TableEntrySize;
    /// <summary>Counters of hits by threads without a block (before registration, or a full table): lock inc.</summary>
    public const int SharedCountsOffset = 128 * 1024;
    public const int ThreadsMappingSize = SharedCountsOffset + MaxProbes * 8;
    /// <summary>Fibonacci hashing of the fs base: spreads TCBs that are a stack size apart.</summary>
    public const ulong HashMultiplier = 0x9E37_79B9_7F4A_7C15;

    /// <summary>Probe ids at or above this take the trap path (the counter arrays are fixed-size).</summary>
    public const int MaxProbes = 1024;

    // A per-thread block. head is written only by its thread, tail only by uprec: separate cache lines.
    public const int HeadOffset = 0;
    public const int TailOffset = 64;
    public const int CountsOffset = 4096;
    public const int DropsOffset = CountsOffset + MaxProbes * 8;
    public const int RingOffset = DropsOffset + MaxProbes * 8;
    public const int RecordSize = 32;
    /// <summary>Records per thread: 2 MiB of ring (it fits in L2: a ring that does not makes every record a cache miss).</summary>
    public const int RingRecordsLog2 = 16;
    public const int RingRecords = 1 << RingRecordsLog2;
    public const int BlockSize = RingOffset + RingRecords * RecordSize;

    // A record: tsc, two captured values, then the commit word, written last: ((seq + 1) << 16) | probe id.
    public const int RecordTsc = 0, RecordArg0 = 8, RecordArg1 = 16, RecordCommit = 24;

    public static ulong Hash(ulong fsBase) => unchecked(fsBase * HashMultiplier) >> (64 - TableBits);
    public static ulong Commit(ulong seq, int probeId) => ((seq + 1) << 16) | (uint)probeId;
}

/// <summary>
/// One probe served by a trampoline: its id (counter index), up to two registers to capture, and an
/// optional filter over hit fields that the trampoline evaluates itself (a filtered-out hit costs a
/// compare and a branch), with the register, width and signedness of each field it names.
/// </summary>
public sealed record TrampolineProbe(int Id, IReadOnlyList<string> Captures, FilterNode? Filter = null,
    IReadOnlyDictionary<string, HitField>? Fields = null);

/// <summary>A filter field as the trampoline reads it: a register, truncated to Bits and extended by sign or zero.</summary>
public sealed record HitField(string Register, int Bits, bool Signed);

/// <summary>
/// Generates entry trampolines with Iced's Assembler. A trampoline preserves everything the program
/// can observe: it steps over the red zone first (with lea: sub would change the flags before they are
/// saved), saves the registers it uses (and the flags, unless FlagsMayBeLive proves the program
/// writes them before reading them), finds the thread's block by its fs base (rdfsbase: no syscall,
/// no memory access that could fault), evaluates the probe's compiled filter, counts the hit exactly,
/// reserves a ring slot, and writes the TSC, the captures and, last, the commit word. A full ring
/// counts a drop; nothing ever waits.
/// </summary>
public static class TrampolineBuilder
{
    private static readonly string[] Saved = ["rax", "rcx", "rdx", "rsi", "rdi"];

    /// <summary>
    /// The code of a trampoline at <paramref name="at"/>, ending with <paramref name="relocateTail"/>'s
    /// output (the displaced instructions and the jump back), which is placed right after the head.
    /// </summary>
    /// <returns>The code, and the offset of the tail: where a thread that already had its hit counted
    /// (it trapped on the int3 this trampoline replaces) continues.</returns>
    public static (byte[] Code, int TailOffset) Build(ulong at, ulong threadTable, bool saveFlags, IReadOnlyList<TrampolineProbe> probes,
        Func<ulong, byte[]> relocateTail)
    {
        byte[] head = Head(at, threadTable, saveFlags, probes);
        byte[] tail = relocateTail(at + (ulong)head.Length);
        return ([.. head, .. tail], head.Length);
    }

    /// <summary>
    /// A trampoline for one of uprec's own hooks (the loader's _dl_debug_state, libc's execve): it stops
    /// (int3) only while uprec is alive, so a program whose tracer was SIGKILLed never dies of a
    /// SIGTRAP at its next dlopen or exec. Whether uprec lives is kill(pid, 0): anything but ESRCH
    /// (EPERM: uprec runs as another user) means it does. Costs one syscall per hook hit, and hooks
    /// are rare events. Everything is saved, flags included (the kernel's return from syscall
    /// clobbers rcx and r11).
    /// </summary>
    /// <returns>The code, the offset of its int3 (where a stop reports rip - 1), and the offset of the tail.</returns>
    public static (byte[] Code, int TrapOffset, int TailOffset) BuildGuardedHook(ulong at, int tracerPid, Func<ulong, byte[]> relocateTail)
    {
        string[] saved = ["rax", "rcx", "rdx", "rsi", "rdi", "r11"];
        var a = new Assembler(64);
        Label skip = a.CreateLabel(), trap = a.CreateLabel();
        a.lea(rsp, __[rsp - 128]);
        a.pushfq();
        foreach (string r in saved) a.push(Register(r)!.Value);
        a.mov(eax, 62);                        // kill(tracerPid, 0)
        a.mov(edi, tracerPid);
        a.xor(esi, esi);
        a.syscall();
        a.cmp(rax, -3);                        // -ESRCH: uprec is gone
        a.je(skip);
        a.Label(ref trap);
        a.int3();
        a.Label(ref skip);
        for (int i = saved.Length - 1; i >= 0; i--) a.pop(Register(saved[i])!.Value);
        a.popfq();
        a.lea(rsp, __[rsp + 128]);
        var writer = new CodeBuffer();
        AssemblerResult result = a.Assemble(writer, at, BlockEncoderOptions.ReturnNewInstructionOffsets);
        byte[] head = writer.ToArray();
        int trapOffset = (int)(result.GetLabelRIP(trap) - at);
        byte[] tail = relocateTail(at + (ulong)head.Length);
        return ([.. head, .. tail], trapOffset, head.Length);
    }

    private const RflagsBits StatusFlags = RflagsBits.OF | RflagsBits.SF | RflagsBits.ZF | RflagsBits.AF | RflagsBits.CF | RflagsBits.PF;

    /// <summary>
    /// Whether the program may read the status flags the trampoline changes: the code from the site on
    /// is followed until every status flag is written (dead) or one is read first (live). A call or ret
    /// first means dead (the ABI promises nothing about flags across either); any other branch, an
    /// undecodable byte or the end of the code means live: saving flags costs ~3 ns, a wrong guess
    /// changes the program. Hand-written code that jumps into a function with flags set is caught here.
    /// </summary>
    public static bool FlagsMayBeLive(byte[] codeFromSite, ulong site)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(codeFromSite), site);
        RflagsBits written = RflagsBits.None;
        while (decoder.IP < site + (ulong)codeFromSite.Length)
        {
            decoder.Decode(out Instruction i);
            if (i.IsInvalid) return true;
            if ((i.RflagsRead & StatusFlags & ~written) != 0) return true;
            written |= i.RflagsModified;
            if ((written & StatusFlags) == StatusFlags) return false;
            switch (i.FlowControl)
            {
                case FlowControl.Call or FlowControl.IndirectCall or FlowControl.Return: return false;
                case FlowControl.Next: continue;
                default: return true;
            }
        }
        return true;
    }

    public static bool CanCapture(string register) => Register(register) is not null || register == "rsp";

    private static byte[] Head(ulong at, ulong threadTable, bool saveFlags, IReadOnlyList<TrampolineProbe> probes)
    {
        var a = new Assembler(64);
        Label found = a.CreateLabel(), miss = a.CreateLabel(), done = a.CreateLabel();
        a.lea(rsp, __[rsp - 128]);
        if (saveFlags) a.pushfq();
        foreach (string r in Saved) a.push(Register(r)!.Value);
        int frame = Saved.Length * 8 + (saveFlags ? 8 : 0) + 128;

        a.rdfsbase(rax);                       // rax = fs base: the thread's identity
        a.mov(rcx, InProcessLayout.HashMultiplier);
        a.imul(rcx, rax);
        a.shr(rcx, 64 - InProcessLayout.TableBits);
        a.shl(rcx, 4);
        a.mov(rdi, threadTable);
        a.add(rdi, rcx);
        a.cmp(__qword_ptr[rdi], rax);
        a.je(found);
        a.add(rdi, InProcessLayout.TableEntrySize);
        a.cmp(__qword_ptr[rdi], rax);
        a.jne(miss);
        a.Label(ref found);
        a.mov(rdi, __qword_ptr[rdi + 8]);      // rdi = this thread's block

        foreach (TrampolineProbe p in probes)
        {
            Label full = a.CreateLabel(), next = a.CreateLabel();
            int id = p.Id;
            if (p.Filter is not null) EmitJumpIf(a, p.Filter, p.Fields!, next, false, frame);
            a.inc(__qword_ptr[rdi + InProcessLayout.CountsOffset + id * 8]);
            Label retry = a.CreateLabel();
            a.mov(rax, __qword_ptr[rdi + InProcessLayout.HeadOffset]);
            a.Label(ref retry);
            a.mov(rcx, rax);
            a.sub(rcx, __qword_ptr[rdi + InProcessLayout.TailOffset]);
            a.cmp(rcx, InProcessLayout.RingRecords);
            a.jae(full);                       // unsigned: a tail ahead of head (scribbled) also reads as full
            a.lea(rcx, __[rax + 1]);
            // Reserve the slot before writing it, in one instruction: a signal handler that hits a probe
            // between reading the head and storing it would otherwise get the same slot, and one of the
            // two records would silently overwrite the other. cmpxchg needs no lock prefix: only this
            // thread writes its head, so it only has to be indivisible for this thread's signals.
            a.cmpxchg(__qword_ptr[rdi + InProcessLayout.HeadOffset], rcx);
            a.jne(retry);
            a.and(eax, InProcessLayout.RingRecords - 1);
            a.shl(rax, 5);
            a.lea(rsi, __[rax + rdi]);          // rsi = the record - RingOffset
            // The timestamp only for a record that is kept: rdtsc is the dearest instruction here
            // (one per 9.5 ns at best on the development host), and a full ring should cost little.
            a.rdtsc();
            a.shl(rdx, 32);
            a.or(rax, rdx);
            a.mov(__qword_ptr[rsi + InProcessLayout.RingOffset + InProcessLayout.RecordTsc], rax);
            for (int i = 0; i < 2; i++)
            {
                int offset = InProcessLayout.RingOffset + (i == 0 ? InProcessLayout.RecordArg0 : InProcessLayout.RecordArg1);
                if (i < p.Captures.Count) LoadCapture(a, p.Captures[i], frame);
                else a.xor(edx, edx);
                a.mov(__qword_ptr[rsi + offset], rdx);
            }
            a.shl(rcx, 16);
            a.or(rcx, id);
            a.mov(__qword_ptr[rsi + InProcessLayout.RingOffset + InProcessLayout.RecordCommit], rcx);
            a.jmp(next);
            a.Label(ref full);
            a.inc(__qword_ptr[rdi + InProcessLayout.DropsOffset + id * 8]);
            a.Label(ref next);
        }
        a.jmp(done);

        a.Label(ref miss);
        a.mov(rdi, threadTable + InProcessLayout.SharedCountsOffset);
        foreach (TrampolineProbe p in probes)
        {
            Label skip = a.CreateLabel();
            if (p.Filter is not null) EmitJumpIf(a, p.Filter, p.Fields!, skip, false, frame);
            a.@lock.inc(__qword_ptr[rdi + p.Id * 8]);
            a.Label(ref skip);
            a.nop(); // Iced allows one label per instruction; the next may be a label too
        }

        a.Label(ref done);
        for (int i = Saved.Length - 1; i >= 0; i--) a.pop(Register(Saved[i])!.Value);
        if (saveFlags) a.popfq();
        a.lea(rsp, __[rsp + 128]);

        var writer = new CodeBuffer();
        a.Assemble(writer, at);
        return writer.ToArray();
    }

    /// <summary>Whether every comparison of the filter reads a field the trampoline can load (no strings, no task fields).</summary>
    public static bool CanCompile(FilterNode node, IReadOnlyDictionary<string, HitField> fields) => node switch
    {
        AndNode both => CanCompile(both.Left, fields) && CanCompile(both.Right, fields),
        OrNode either => CanCompile(either.Left, fields) && CanCompile(either.Right, fields),
        NotNode negated => CanCompile(negated.Operand, fields),
        ComparisonNode c => c.Op != FilterOp.Glob && c.Literal.Kind == FilterValueKind.Integer
            && fields.TryGetValue(c.Field, out HitField? f) && CanCapture(f.Register),
        _ => false,
    };

    /// <summary>
    /// Jumps to <paramref name="target"/> when the filter's value equals <paramref name="when"/>, else
    /// falls through. Comparisons follow Filter.Evaluate exactly: the field's value (zero- or
    /// sign-extended from its width) against the literal as unbounded integers, so a literal outside
    /// the field's range folds to a constant outcome instead of wrapping. Uses rax and rdx.
    /// </summary>
    private static void EmitJumpIf(Assembler a, FilterNode node, IReadOnlyDictionary<string, HitField> fields, Label target, bool when, int frame)
    {
        switch (node)
        {
            case NotNode negated:
                EmitJumpIf(a, negated.Operand, fields, target, !when, frame);
                return;
            case AndNode or OrNode:
            {
                (FilterNode left, FilterNode right) = node is AndNode both ? (both.Left, both.Right) : (((OrNode)node).Left, ((OrNode)node).Right);
                // One side decides `and` when it is false and `or` when it is true: then both sides may jump.
                if (when != node is AndNode)
                {
                    EmitJumpIf(a, left, fields, target, when, frame);
                    EmitJumpIf(a, right, fields, target, when, frame);
                    return;
                }
                Label skip = a.CreateLabel();
                EmitJumpIf(a, left, fields, skip, !when, frame);
                EmitJumpIf(a, right, fields, target, when, frame);
                a.Label(ref skip);
                a.nop(); // Iced allows one label per instruction; the next may be a label too
                return;
            }
            case ComparisonNode c:
                EmitComparison(a, c, fields[c.Field], target, when, frame);
                return;
            default:
                throw new ArgumentException($"cannot compile filter node {node}");
        }
    }

    private static void EmitComparison(Assembler a, ComparisonNode c, HitField field, Label target, bool when, int frame)
    {
        Int128 literal = c.Literal.Integer;
        Int128 min = field.Signed ? -(Int128.One << (field.Bits - 1)) : Int128.Zero;
        Int128 max = field.Signed ? (Int128.One << (field.Bits - 1)) - 1 : (Int128.One << field.Bits) - 1;
        if (literal < min || literal > max)
        {
            // Every value of the field is on one side of the literal.
            bool below = literal > max; // value < literal for every value
            bool outcome = c.Op switch
            {
                FilterOp.Equal => false,
                FilterOp.NotEqual => true,
                FilterOp.Less or FilterOp.LessOrEqual => below,
                _ => !below,
            };
            if (outcome == when) a.jmp(target);
            return;
        }
        LoadCapture(a, field.Register, frame);
        switch (field.Bits, field.Signed)
        {
            case (8, false): a.movzx(edx, dl); break;
            case (16, false): a.movzx(edx, dx); break;
            case (32, false): a.mov(edx, edx); break;
            case (8, true): a.movsx(rdx, dl); break;
            case (16, true): a.movsx(rdx, dx); break;
            case (32, true): a.movsxd(rdx, edx); break;
        }
        a.mov(rax, field.Signed ? (ulong)(long)literal : (ulong)literal);
        a.cmp(rdx, rax);
        // The jump taken when the comparison's outcome is `when`.
        FilterOp op = when ? c.Op : c.Op switch
        {
            FilterOp.Equal => FilterOp.NotEqual,
            FilterOp.NotEqual => FilterOp.Equal,
            FilterOp.Less => FilterOp.GreaterOrEqual,
            FilterOp.LessOrEqual => FilterOp.Greater,
            FilterOp.Greater => FilterOp.LessOrEqual,
            _ => FilterOp.Less,
        };
        switch (op)
        {
            case FilterOp.Equal: a.je(target); break;
            case FilterOp.NotEqual: a.jne(target); break;
            case FilterOp.Less: if (field.Signed) a.jl(target); else a.jb(target); break;
            case FilterOp.LessOrEqual: if (field.Signed) a.jle(target); else a.jbe(target); break;
            case FilterOp.Greater: if (field.Signed) a.jg(target); else a.ja(target); break;
            default: if (field.Signed) a.jge(target); else a.jae(target); break;
        }
    }

    /// <summary>rdx = the program's value of a register: from its save slot if the trampoline has changed it.</summary>
    private static void LoadCapture(Assembler a, string register, int frame)
    {
        int saved = Array.IndexOf(Saved, register);
        if (saved >= 0)
        {
            // Pushed in Saved order: the last pushed is at [rsp].
            a.mov(rdx, __qword_ptr[rsp + (Saved.Length - 1 - saved) * 8]);
        }
        else if (register == "rsp")
        {
            a.lea(rdx, __[rsp + frame]);
        }
        else
        {
            a.mov(rdx, Register(register)!.Value);
        }
    }

    private static AssemblerRegister64? Register(string name) => name switch
    {
        "rax" => rax, "rbx" => rbx, "rcx" => rcx, "rdx" => rdx, "rsi" => rsi, "rdi" => rdi, "rbp" => rbp,
        "r8" => r8, "r9" => r9, "r10" => r10, "r11" => r11, "r12" => r12, "r13" => r13, "r14" => r14, "r15" => r15,
        _ => null,
    };
}
