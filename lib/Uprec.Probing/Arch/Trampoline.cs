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
    /// <summary>Entries in use on the shadow stack of %return calls in flight; written by the thread (and by uprec while it is stopped).</summary>
    public const int ShadowDepthOffset = 128;
    public const int CountsOffset = 4096;
    public const int DropsOffset = CountsOffset + MaxProbes * 8;
    /// <summary>
    /// The shadow stack: one entry per hijacked return address, oldest first. A full one makes the
    /// entry trampoline ask uprec (if alive) to drop the entries of frames longjmp abandoned.
    /// </summary>
    public const int ShadowOffset = DropsOffset + MaxProbes * 8;
    public const int ShadowEntries = 512;
    public const int ShadowEntrySize = 32;
    // An entry: where the return address lives (rsp at the entry), the original return address, the
    // entry's TSC, and the return trampoline written over it.
    public const int ShadowSlot = 0, ShadowOriginal = 8, ShadowTsc = 16, ShadowTrampoline = 24;
    public const int RingOffset = ShadowOffset + ShadowEntries * ShadowEntrySize;
    public const int RecordSize = 32;
    /// <summary>
    /// Records per thread: 4 MiB of ring, 1.3 ms of samples at 100 M hits/s, which is how long the drain
    /// may be off its CPU while the encoder has it. Against 2 MiB it kept 15% more samples over
    /// 10M-call bursts (AOT, 5 of 5 paired medians higher); its pages are touched only as far as the
    /// thread's samples have reached.
    /// </summary>
    public const int RingRecordsLog2 = 17;
    public const int RingRecords = 1 << RingRecordsLog2;
    public const int BlockSize = RingOffset + RingRecords * RecordSize;

    // A record: tsc, two captured values, then the commit word, written last: ((seq + 1) << 16) | probe id,
    // with ReturnBit set for a return (then the values are the entry's TSC and rax).
    public const int RecordTsc = 0, RecordArg0 = 8, RecordArg1 = 16, RecordCommit = 24;
    public const int ReturnBit = 0x8000;

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
/// What an entry trampoline of %return probes needs: where their returns land, and the id of uprec's
/// tracing thread (as TracerPid shows it), to ask it to clean a full shadow stack; 0: never ask.
/// </summary>
public sealed record ReturnHijack(ulong ReturnTrampoline, int TracerPid);

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
    /// <summary>With return probes, r8 carries the one TSC read for the entry records and the shadow entry.</summary>
    private static readonly string[] SavedWithTsc = ["rax", "rcx", "rdx", "rsi", "rdi", "r8"];

    /// <summary>
    /// The code of a trampoline at <paramref name="at"/>, ending with <paramref name="relocateTail"/>'s
    /// output (the displaced instructions and the jump back), which is placed right after the head.
    /// </summary>
    /// <param name="hijack">For a site with %return probes (else null): after the entry's records, the
    /// return address is pushed on the thread's shadow stack and replaced by its return trampoline.</param>
    /// <returns>The code; the offset of the tail, where a thread that already had its hit counted (it
    /// trapped on the int3 this trampoline replaces) continues; and the offset of the int3 where a
    /// thread whose shadow stack is full asks uprec to drop abandoned entries (-1 without a hijack).</returns>
    public static (byte[] Code, int TailOffset, int FullTrapOffset) Build(ulong at, ulong threadTable, bool saveFlags,
        IReadOnlyList<TrampolineProbe> probes, Func<ulong, byte[]> relocateTail, ReturnHijack? hijack)
    {
        var (head, fullTrap) = Head(at, threadTable, saveFlags, probes, hijack);
        byte[] tail = relocateTail(at + (ulong)head.Length);
        return ([.. head, .. tail], head.Length, fullTrap);
    }

    /// <summary>
    /// A trampoline for one of uprec's own hooks (the loader's _dl_debug_state, libc's execve, the
    /// unwinder's entries): it stops (int3) only while the thread is traced (EmitIsTraced), so a program
    /// whose tracer was SIGKILLed never dies of a SIGTRAP at its next dlopen, exec or throw. Costs a
    /// few syscalls per hook hit, and hooks are rare events. Everything is saved, flags included (the
    /// kernel's return from syscall clobbers rcx and r11).
    /// </summary>
    /// <returns>The code, the offset of its int3 (where a stop reports rip - 1), and the offset of the tail.</returns>
    /// <param name="restoreTable">For the unwinder's entries: the thread table. When uprec is gone, the
    /// hook itself puts the thread's in-process return addresses back (uprec did it at the stop), so
    /// a throw or a backtrace after a SIGKILLed uprec still finds real frames.</param>
    public static (byte[] Code, int TrapOffset, int TailOffset) BuildGuardedHook(ulong at, int tracerPid, Func<ulong, byte[]> relocateTail,
        ulong restoreTable = 0)
    {
        var a = new Assembler(64);
        Label skip = a.CreateLabel(), trap = a.CreateLabel(), done = a.CreateLabel();
        a.lea(rsp, __[rsp - 128]);
        a.pushfq();
        foreach (string r in GuardSaved) a.push(Register(r)!.Value);
        EmitIsTraced(a, tracerPid);
        a.test(eax, eax);
        a.jz(skip);
        a.Label(ref trap);
        a.int3();
        if (restoreTable != 0)
        {
            // uprec restored the return addresses at the stop, unless it was killed during it before
            // doing so: then the thread resumes here untraced and restores for itself.
            EmitIsTraced(a, tracerPid);
            a.test(eax, eax);
            a.jz(skip);
        }
        a.jmp(done);
        a.Label(ref skip);
        if (restoreTable != 0) EmitRestoreShadow(a, restoreTable);
        else a.nop(); // Iced allows one label per instruction
        a.Label(ref done);
        for (int i = GuardSaved.Length - 1; i >= 0; i--) a.pop(Register(GuardSaved[i])!.Value);
        a.popfq();
        a.lea(rsp, __[rsp + 128]);
        var writer = new CodeBuffer();
        AssemblerResult result = a.Assemble(writer, at, BlockEncoderOptions.ReturnNewInstructionOffsets);
        byte[] head = writer.ToArray();
        int trapOffset = (int)(result.GetLabelRIP(trap) - at);
        byte[] tail = relocateTail(at + (ulong)head.Length);
        return ([.. head, .. tail], trapOffset, head.Length);
    }

    /// <summary>
    /// eax = 1 while uprec traces this thread, else 0; every other register is kept (flags are not).
    /// The question is TracerPid in /proc/thread-self/status, compared with uprec's pid: not whether
    /// uprec's pid exists, because a SIGKILLed uprec stays a zombie until its parent reaps it and
    /// kill(pid, 0) still succeeds then, while the kernel unlinked its tracees before that (an int3
    /// would kill the program); and not any tracer, because a debugger attached after uprec died must
    /// not be handed uprec's stops. Where /proc cannot be read, kill(tracerPid, 0) answers (ESRCH:
    /// gone). A few syscalls (openat, read, close) and 512 bytes of stack: for rare events only (hooks,
    /// a full shadow stack). TracerPid shows 0 for a tracer in another pid namespace, which is why
    /// guarded code is built only for a tracer in the program's own.
    /// </summary>
    private static void EmitIsTraced(Assembler a, int tracerPid)
    {
        Label path = a.CreateLabel(), afterPath = a.CreateLabel(), viaKill = a.CreateLabel(), scan = a.CreateLabel(),
            found = a.CreateLabel(), digits = a.CreateLabel(), number = a.CreateLabel(), no = a.CreateLabel(), yes = a.CreateLabel(),
            end = a.CreateLabel();
        string[] kept = ["rcx", "rdx", "rsi", "rdi", "r8", "r10", "r11"];
        const int Buffer = 512; // TracerPid is the ninth line, well within
        a.jmp(afterPath);
        a.Label(ref path);
        a.db("/proc/thread-self/status\0"u8.ToArray());
        a.Label(ref afterPath);
        foreach (string r in kept) a.push(Register(r)!.Value);
        a.sub(rsp, Buffer);
        a.mov(eax, 257);                       // openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC)
        a.mov(edi, -100);
        a.lea(rsi, __[path]);
        a.mov(edx, 0x80000);
        a.xor(r10d, r10d);
        a.syscall();
        a.test(rax, rax);
        a.js(viaKill);
        a.mov(r8, rax);
        a.mov(rdi, rax);                       // read(fd, buffer, Buffer - 1)
        a.mov(rsi, rsp);
        a.mov(edx, Buffer - 1);
        a.xor(eax, eax);
        a.syscall();
        a.mov(rdx, rax);                       // rdx = bytes read (syscalls keep rdx)
        a.mov(eax, 3);                         // close(fd)
        a.mov(rdi, r8);
        a.syscall();
        a.test(rdx, rdx);
        a.jle(viaKill);
        a.mov(rax, BitConverter.ToUInt64("TracerPi"u8));
        a.xor(ecx, ecx);
        a.Label(ref scan);
        a.lea(rsi, __[rcx + 12]);              // "TracerPid:\t" and a digit must be there
        a.cmp(rsi, rdx);
        a.ja(viaKill);
        a.cmp(__qword_ptr[rsp + rcx], rax);
        a.je(found);
        a.inc(rcx);
        a.jmp(scan);
        a.Label(ref found);
        a.add(rcx, 11);                        // rcx = the first digit
        a.xor(eax, eax);                       // rax = the number
        a.Label(ref digits);
        a.cmp(rcx, rdx);
        a.jae(number);
        a.movzx(esi, __byte_ptr[rsp + rcx]);
        a.sub(esi, '0');
        a.cmp(esi, 9);
        a.ja(number);                          // not a digit (the newline): the number ends
        a.imul(rax, rax, 10);
        a.add(rax, rsi);
        a.inc(rcx);
        a.jmp(digits);
        a.Label(ref number);
        a.cmp(rax, tracerPid);
        a.je(yes);
        a.jmp(no);
        a.Label(ref viaKill);
        if (tracerPid > 0)
        {
            a.mov(eax, 62);                    // kill(tracerPid, 0)
            a.mov(edi, tracerPid);
            a.xor(esi, esi);
            a.syscall();
            a.cmp(rax, -3);                    // -ESRCH: uprec is gone
            a.jne(yes);
        }
        a.Label(ref no);
        a.xor(eax, eax);
        a.jmp(end);
        a.Label(ref yes);
        a.mov(eax, 1);
        a.Label(ref end);
        a.add(rsp, Buffer);
        for (int i = kept.Length - 1; i >= 0; i--) a.pop(Register(kept[i])!.Value);
    }

    /// <summary>Registers a guarded hook saves (the syscalls clobber rcx and r11; the restore loop uses r8-r10).</summary>
    private static readonly string[] GuardSaved = ["rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"];

    /// <summary>How far below the hooked function's entry rsp is at a guarded hook's int3.</summary>
    public static readonly int GuardedHookFrame = 128 + 8 + GuardSaved.Length * 8;

    /// <summary>
    /// Newest first, every shadow entry of this thread whose slot still holds its trampoline gets its
    /// original return address back; the entries stay (their frames now return directly, so each is
    /// stale and never matched again). A slot is read only after mincore says its page is mapped: a
    /// coroutine's stack may be gone with a frame still on it. A failing mincore (seccomp) leaves the
    /// frame hijacked. Runs only when uprec is gone: rare, so a syscall per entry is fine.
    /// </summary>
    private static void EmitRestoreShadow(Assembler a, ulong threadTable)
    {
        Label found = a.CreateLabel(), end = a.CreateLabel(), loop = a.CreateLabel();
        EmitLookup(a, threadTable, found, end);
        a.Label(ref found);
        a.mov(r8, __qword_ptr[rdi + 8]);       // r8 = the block
        EmitShadowDepth(a, r9, r8);
        a.Label(ref loop);
        a.test(r9, r9);
        a.jz(end);
        a.dec(r9);
        EmitEntryBase(a, r10, r9, r8);
        a.mov(rdi, __qword_ptr[r10 + InProcessLayout.ShadowOffset + InProcessLayout.ShadowSlot]);
        a.and(rdi, -4096);
        a.mov(esi, 1);
        a.lea(rdx, __[rsp - 8]);               // mincore's one byte: below rsp, above where signal frames go
        a.mov(eax, 27);                        // mincore(page, 1, vec): -ENOMEM when unmapped
        a.syscall();
        a.test(rax, rax);
        a.jnz(loop);
        a.mov(rdi, __qword_ptr[r10 + InProcessLayout.ShadowOffset + InProcessLayout.ShadowSlot]);
        a.test(dil, 7);                        // slots are rsp values: 8-aligned, never across a page
        a.jnz(loop);
        a.mov(rax, __qword_ptr[rdi]);
        a.cmp(rax, __qword_ptr[r10 + InProcessLayout.ShadowOffset + InProcessLayout.ShadowTrampoline]);
        a.jne(loop);
        a.mov(rax, __qword_ptr[r10 + InProcessLayout.ShadowOffset + InProcessLayout.ShadowOriginal]);
        a.mov(__qword_ptr[rdi], rax);
        a.jmp(loop);
        a.Label(ref end);
        a.nop();
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

    private static (byte[] Code, int FullTrapOffset) Head(ulong at, ulong threadTable, bool saveFlags, IReadOnlyList<TrampolineProbe> probes,
        ReturnHijack? hijack)
    {
        var a = new Assembler(64);
        Label found = a.CreateLabel(), miss = a.CreateLabel(), done = a.CreateLabel();
        string[] saved = hijack is null ? Saved : SavedWithTsc;
        a.lea(rsp, __[rsp - 128]);
        if (saveFlags) a.pushfq();
        foreach (string r in saved) a.push(Register(r)!.Value);
        int frame = saved.Length * 8 + (saveFlags ? 8 : 0) + 128;

        EmitLookup(a, threadTable, found, miss);
        a.Label(ref found);
        a.mov(rdi, __qword_ptr[rdi + 8]);      // rdi = this thread's block
        if (hijack is not null)
        {
            // One TSC for the entry records and the shadow entry: rdtsc is the dearest instruction here.
            EmitRdtsc(a);
            a.mov(r8, rax);
        }

        foreach (TrampolineProbe p in probes)
        {
            Label next = a.CreateLabel();
            if (p.Filter is not null) EmitJumpIf(a, p.Filter, p.Fields!, next, false, frame, saved);
            a.inc(__qword_ptr[rdi + InProcessLayout.CountsOffset + p.Id * 8]);
            // The timestamp only for a record that is kept: a full ring should cost little.
            EmitRecord(a, p.Id,
                () => { if (hijack is null) EmitRdtsc(a); else a.mov(rax, r8); },
                i => { if (i < p.Captures.Count) LoadCapture(a, p.Captures[i], frame, saved); else a.xor(edx, edx); });
            a.Label(ref next);
        }
        int fullTrap = -1;
        Label trap = default;
        if (hijack is not null) trap = EmitHijack(a, hijack, frame);
        a.jmp(done);

        a.Label(ref miss);
        a.mov(rdi, threadTable + InProcessLayout.SharedCountsOffset);
        foreach (TrampolineProbe p in probes)
        {
            Label skip = a.CreateLabel();
            if (p.Filter is not null) EmitJumpIf(a, p.Filter, p.Fields!, skip, false, frame, saved);
            a.@lock.inc(__qword_ptr[rdi + p.Id * 8]);
            a.Label(ref skip);
            a.nop(); // Iced allows one label per instruction; the next may be a label too
        }

        a.Label(ref done);
        for (int i = saved.Length - 1; i >= 0; i--) a.pop(Register(saved[i])!.Value);
        if (saveFlags) a.popfq();
        a.lea(rsp, __[rsp + 128]);

        var writer = new CodeBuffer();
        AssemblerResult result = a.Assemble(writer, at, BlockEncoderOptions.ReturnNewInstructionOffsets);
        if (hijack is not null) fullTrap = (int)(result.GetLabelRIP(trap) - at);
        return (writer.ToArray(), fullTrap);
    }

    /// <summary>
    /// <paramref name="into"/> = the shadow stack's depth in <paramref name="block"/>, at most ShadowEntries:
    /// a depth the program scribbled over reads no further than the stack. Uses rax.
    /// </summary>
    private static void EmitShadowDepth(Assembler a, AssemblerRegister64 into, AssemblerRegister64 block)
    {
        a.mov(into, __qword_ptr[block + InProcessLayout.ShadowDepthOffset]);
        a.mov(eax, InProcessLayout.ShadowEntries);
        a.cmp(into, rax);
        a.cmova(into, rax);
    }

    /// <summary><paramref name="into"/> = the address of shadow entry <paramref name="index"/> of <paramref name="block"/>, minus ShadowOffset.</summary>
    private static void EmitEntryBase(Assembler a, AssemblerRegister64 into, AssemblerRegister64 index, AssemblerRegister64 block)
    {
        a.mov(into, index);
        a.shl(into, (byte)System.Numerics.BitOperations.Log2((uint)InProcessLayout.ShadowEntrySize));
        a.add(into, block);
    }

    /// <summary>rdi = the thread table entry whose key is this thread's fs base (rax), else a jump to <paramref name="miss"/>. Uses rcx.</summary>
    private static void EmitLookup(Assembler a, ulong threadTable, Label found, Label miss)
    {
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
    }

    private static void EmitRdtsc(Assembler a)
    {
        a.rdtsc();
        a.shl(rdx, 32);
        a.or(rax, rdx);
    }

    /// <summary>
    /// Appends a record to the ring of the block in rdi, or counts a drop when it is full. The TSC comes
    /// from <paramref name="loadTsc"/> (into rax), the two values from <paramref name="loadValue"/> (into rdx).
    /// Uses rax, rcx, rdx, rsi.
    /// </summary>
    private static void EmitRecord(Assembler a, int commitId, Action loadTsc, Action<int> loadValue)
    {
        Label full = a.CreateLabel(), next = a.CreateLabel(), retry = a.CreateLabel();
        int id = commitId & ~InProcessLayout.ReturnBit;
        a.mov(rax, __qword_ptr[rdi + InProcessLayout.HeadOffset]);
        a.Label(ref retry);
        a.mov(rcx, rax);
        a.sub(rcx, __qword_ptr[rdi + InProcessLayout.TailOffset]);
        a.cmp(rcx, InProcessLayout.RingRecords);
        a.jae(full);                           // unsigned: a tail ahead of head (scribbled) also reads as full
        a.lea(rcx, __[rax + 1]);
        // Reserve the slot before writing it, in one instruction: a signal handler that hits a probe
        // between reading the head and storing it would otherwise get the same slot, and one of the
        // two records would silently overwrite the other. cmpxchg needs no lock prefix: only this
        // thread writes its head, so it only has to be indivisible for this thread's signals.
        a.cmpxchg(__qword_ptr[rdi + InProcessLayout.HeadOffset], rcx);
        a.jne(retry);
        a.and(eax, InProcessLayout.RingRecords - 1);
        a.shl(rax, 5);
        a.lea(rsi, __[rax + rdi]);             // rsi = the record - RingOffset
        loadTsc();
        a.mov(__qword_ptr[rsi + InProcessLayout.RingOffset + InProcessLayout.RecordTsc], rax);
        for (int i = 0; i < 2; i++)
        {
            loadValue(i);
            a.mov(__qword_ptr[rsi + InProcessLayout.RingOffset + (i == 0 ? InProcessLayout.RecordArg0 : InProcessLayout.RecordArg1)], rdx);
        }
        a.shl(rcx, 16);
        a.or(rcx, commitId);
        a.mov(__qword_ptr[rsi + InProcessLayout.RingOffset + InProcessLayout.RecordCommit], rcx);
        a.jmp(next);
        a.Label(ref full);
        a.inc(__qword_ptr[rdi + InProcessLayout.DropsOffset + id * 8]);
        a.Label(ref next);
        a.nop(); // Iced allows one label per instruction; the next may be a label too
    }

    /// <summary>
    /// Pushes a shadow entry (slot, original return address, the entry TSC in r8, the return trampoline)
    /// and writes the trampoline over the return address, last: until then the call returns normally.
    /// The depth is published before the hijack, so a signal handler's probed calls after that push
    /// above the entry and pop before this code goes on. A full shadow stack (or a scribbled depth)
    /// asks uprec, while it traces the thread, to drop abandoned entries, then tries once more; still
    /// full, the call is counted but not timed. Uses rax, rcx, rdx, rsi; rdi = the block.
    /// </summary>
    /// <returns>The label of the int3 that asks uprec.</returns>
    private static Label EmitHijack(Assembler a, ReturnHijack hijack, int frame)
    {
        Label push = a.CreateLabel(), full = a.CreateLabel(), skip = a.CreateLabel(), trap = a.CreateLabel();
        a.mov(rcx, __qword_ptr[rdi + InProcessLayout.ShadowDepthOffset]);
        a.cmp(rcx, InProcessLayout.ShadowEntries);
        a.jae(full);
        a.Label(ref push);
        EmitEntryBase(a, rsi, rcx, rdi);
        a.lea(rdx, __[rsp + frame]);           // the slot: rsp at the function's entry
        // The entry is written while it is still above the depth (nothing reads it), then the depth
        // published, then the entry written again: a signal handler's probed call in between the first
        // writes used this same index and left its own fields in part of it; once the depth covers the
        // entry, a handler pushes above it. Only then is the return address replaced.
        EmitShadowEntry(a, hijack);
        a.inc(rcx);
        a.mov(__qword_ptr[rdi + InProcessLayout.ShadowDepthOffset], rcx);
        EmitShadowEntry(a, hijack);
        a.mov(__qword_ptr[rdx], rax);
        a.jmp(skip);

        a.Label(ref full);
        if (hijack.TracerPid <= 0)
        {
            a.jmp(skip); // uprec cannot be asked (another pid namespace): the call is not timed
        }
        EmitIsTraced(a, hijack.TracerPid);   // is uprec there to ask?
        a.test(eax, eax);
        a.jz(skip);
        a.Label(ref trap);
        a.int3();                              // uprec drops the entries of abandoned frames
        a.mov(rcx, __qword_ptr[rdi + InProcessLayout.ShadowDepthOffset]);
        a.cmp(rcx, InProcessLayout.ShadowEntries);
        a.jb(push);
        a.Label(ref skip);
        a.nop();
        return trap;
    }

    /// <summary>The shadow entry at rsi + ShadowOffset: slot rdx, its return address, the TSC in r8; leaves rax = the trampoline.</summary>
    private static void EmitShadowEntry(Assembler a, ReturnHijack hijack)
    {
        a.mov(__qword_ptr[rsi + InProcessLayout.ShadowOffset + InProcessLayout.ShadowSlot], rdx);
        a.mov(rax, __qword_ptr[rdx]);
        a.mov(__qword_ptr[rsi + InProcessLayout.ShadowOffset + InProcessLayout.ShadowOriginal], rax);
        a.mov(__qword_ptr[rsi + InProcessLayout.ShadowOffset + InProcessLayout.ShadowTsc], r8);
        a.mov(rax, hijack.ReturnTrampoline);
        a.mov(__qword_ptr[rsi + InProcessLayout.ShadowOffset + InProcessLayout.ShadowTrampoline], rax);
    }

    /// <summary>
    /// The return trampoline of one site's %return probes, where their hijacked returns land (rsp just
    /// above the slot). It finds the newest shadow entry for the slot, searching down from the top:
    /// entries above it belong to frames on other stacks (coroutines), which still return later, or to
    /// frames longjmp abandoned, which uprec drops when the stack fills. It takes that one entry out,
    /// writes a return record per probe (return TSC, entry TSC, rax), and returns to the original
    /// address. Flags are dead after a return (ABI); rax and rdx (return values) and every other
    /// register are kept. A thread with no block or no entry cannot know where to go: int3.
    /// </summary>
    /// <returns>The code, and the offset of its int3 for a return with no entry on the thread's shadow
    /// stack: uprec, while it lives, looks for the entry elsewhere (see ReturnFrameLayout).</returns>
    public static (byte[] Code, int LostOffset) BuildReturn(ulong at, ulong threadTable, IReadOnlyList<int> probeIds)
    {
        var a = new Assembler(64);
        Label found = a.CreateLabel(), lost = a.CreateLabel(), search = a.CreateLabel(), shift = a.CreateLabel(), shifted = a.CreateLabel();
        string[] saved = [.. ReturnFrameLayout.Registers.Reverse()];
        a.lea(rsp, __[rsp - 8]);               // the slot again: it will hold the original return address for ret
        foreach (string r in saved) a.push(Register(r)!.Value);
        int slotAt = saved.Length * 8, raxAt = (saved.Length - 1) * 8;

        EmitLookup(a, threadTable, found, lost);
        a.Label(ref found);
        a.mov(rdi, __qword_ptr[rdi + 8]);
        EmitShadowDepth(a, rcx, rdi);
        a.lea(r8, __[rsp + slotAt]);
        a.Label(ref search);
        a.test(rcx, rcx);
        a.jz(lost);
        a.dec(rcx);
        EmitEntryBase(a, rsi, rcx, rdi);
        a.cmp(__qword_ptr[rsi + InProcessLayout.ShadowOffset + InProcessLayout.ShadowSlot], r8);
        a.jne(search);
        // Everything needed from the entry is read before it is given up.
        a.mov(rax, __qword_ptr[rsi + InProcessLayout.ShadowOffset + InProcessLayout.ShadowOriginal]);
        a.mov(__qword_ptr[rsp + slotAt], rax);
        a.mov(r8, __qword_ptr[rsi + InProcessLayout.ShadowOffset + InProcessLayout.ShadowTsc]);
        // Entries above it move down one (usually there are none).
        EmitShadowDepth(a, rdx, rdi);
        a.dec(rdx);                            // rdx = the new depth; rcx = the entry taken out
        a.Label(ref shift);
        a.cmp(rcx, rdx);
        a.jae(shifted);
        for (int f = 0; f < InProcessLayout.ShadowEntrySize; f += 8)
        {
            a.mov(rax, __qword_ptr[rsi + InProcessLayout.ShadowOffset + InProcessLayout.ShadowEntrySize + f]);
            a.mov(__qword_ptr[rsi + InProcessLayout.ShadowOffset + f], rax);
        }
        a.add(rsi, InProcessLayout.ShadowEntrySize);
        a.inc(rcx);
        a.jmp(shift);
        a.Label(ref shifted);
        a.mov(__qword_ptr[rdi + InProcessLayout.ShadowDepthOffset], rdx);

        EmitRdtsc(a);
        a.mov(r9, rax);
        foreach (int id in probeIds)
        {
            EmitRecord(a, id | InProcessLayout.ReturnBit, () => a.mov(rax, r9),
                i => { if (i == 0) a.mov(rdx, r8); else a.mov(rdx, __qword_ptr[rsp + raxAt]); });
        }
        for (int i = saved.Length - 1; i >= 0; i--) a.pop(Register(saved[i])!.Value);
        // Not ret: the return stack buffer already mispredicted the return that brought the thread
        // here and is one entry off, so a ret would mispredict again; an indirect jmp from this site
        // is predicted by its own history. The slot is below rsp once jumped from, but the kernel
        // puts signal frames below the 128-byte red zone, so nothing can overwrite it in between.
        a.lea(rsp, __[rsp + 8]);
        a.jmp(__qword_ptr[rsp - 8]);
        a.Label(ref lost);
        a.int3();

        var writer = new CodeBuffer();
        AssemblerResult result = a.Assemble(writer, at, BlockEncoderOptions.ReturnNewInstructionOffsets);
        return (writer.ToArray(), (int)(result.GetLabelRIP(lost) - at));
    }

    /// <summary>
    /// The return trampoline's frame at its lost int3: the registers it saved, from rsp up, then the
    /// slot the hijacked return came from (the original return address goes there).
    /// </summary>
    public static class ReturnFrameLayout
    {
        /// <summary>Saved registers in stack order: the last pushed (r9) at rsp.</summary>
        public static readonly string[] Registers = ["r9", "r8", "rdi", "rsi", "rdx", "rcx", "rax"];
        public static int SlotOffset => Registers.Length * 8;
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
    private static void EmitJumpIf(Assembler a, FilterNode node, IReadOnlyDictionary<string, HitField> fields, Label target, bool when, int frame, string[] saved)
    {
        switch (node)
        {
            case NotNode negated:
                EmitJumpIf(a, negated.Operand, fields, target, !when, frame, saved);
                return;
            case AndNode or OrNode:
            {
                (FilterNode left, FilterNode right) = node is AndNode both ? (both.Left, both.Right) : (((OrNode)node).Left, ((OrNode)node).Right);
                // One side decides `and` when it is false and `or` when it is true: then both sides may jump.
                if (when != node is AndNode)
                {
                    EmitJumpIf(a, left, fields, target, when, frame, saved);
                    EmitJumpIf(a, right, fields, target, when, frame, saved);
                    return;
                }
                Label skip = a.CreateLabel();
                EmitJumpIf(a, left, fields, skip, !when, frame, saved);
                EmitJumpIf(a, right, fields, target, when, frame, saved);
                a.Label(ref skip);
                a.nop(); // Iced allows one label per instruction; the next may be a label too
                return;
            }
            case ComparisonNode c:
                EmitComparison(a, c, fields[c.Field], target, when, frame, saved);
                return;
            default:
                throw new ArgumentException($"cannot compile filter node {node}");
        }
    }

    private static void EmitComparison(Assembler a, ComparisonNode c, HitField field, Label target, bool when, int frame, string[] saved)
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
        LoadCapture(a, field.Register, frame, saved);
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
    private static void LoadCapture(Assembler a, string register, int frame, string[] saved)
    {
        int index = Array.IndexOf(saved, register);
        if (index >= 0)
        {
            // Pushed in order: the last pushed is at [rsp].
            a.mov(rdx, __qword_ptr[rsp + (saved.Length - 1 - index) * 8]);
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
