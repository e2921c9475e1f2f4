using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Iced.Intel;
using Uprec.Filters;
using Uprec.Probing.Arch;
using static Iced.Intel.AssemblerRegisters;
using L = Uprec.Probing.Arch.InProcessLayout;

namespace Uprec.Probing.Tests.Arch;

/// <summary>
/// Runs trampolines from <see cref="TrampolineBuilder"/> on the real CPU inside the slot harness (slotexec.c):
/// a tiny function whose first bytes are a jmp to its trampoline, a thread table and a per-thread block
/// mapped at fixed addresses, and a caller that sets every register to a known value before each call and
/// spills every register and the flags right after it. The harness's own fs base (from arch_prctl, not
/// rdfsbase) decides where the table entry goes. After the run the whole block and the whole thread
/// mapping are read back and compared byte for byte with a model of the contract (InProcessLayout's
/// comments), so a stray write anywhere shows up, not only a wrong counter.
/// </summary>
public class TrampolineExecutionTests(SlotHarness harness) : IClassFixture<SlotHarness>
{
    const ulong Code = 0x5C00_0000_0000;
    const ulong Site = Code + 0x1120;
    const ulong Caller = Code + 0x2000;
    const ulong Tramp = Code + 0x1000_0000;
    const ulong Data = Code + 0x10_0000;
    /// <summary>The caller runs on its own stack, so the rsp the site sees is known: StackTop - 8.</summary>
    const ulong StackTop = Data + 0x4000;
    const ulong SavedRsp = Data + 0x4800;
    /// <summary>The TSC read by the caller before its first call and after its last: every record's tsc lies between.</summary>
    const ulong TscWindow = Data + 0x4900;
    /// <summary>The harness thread's fs base, put back after a call made under a made-up one.</summary>
    const ulong SavedFs = Data + 0x4A00;
    /// <summary>Call i spills its 15 registers and the flags into the 128 bytes below SpillBase + (i + 1) * 128.</summary>
    const ulong SpillBase = Data + 0x8000;
    const ulong Table = 0x5D00_0000_0000;
    const ulong Block = 0x5E00_0000_0000;
    const ulong ThreadsMapping = (L.ThreadsMappingSize + 0xFFFUL) & ~0xFFFUL;
    const ulong RedZone = StackTop - 8 - 128;
    /// <summary>Status flags and DF: what the program can observe of rflags.</summary>
    const ulong ObservableFlags = 0x8D5 | 0x400;
    const int FirstId = 37;

    static readonly string[] Registers =
        ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

    public enum Way { Empty, First, Second, OthersInBothWays }

    /// <summary>
    /// What one run does: the probes on the site, one register assignment per call (registers left out get a
    /// distinct default), where the thread's table entry is, and the ring's head and tail before the first call.
    /// </summary>
    sealed record Scenario(IReadOnlyList<TrampolineProbe> Probes, IReadOnlyList<IReadOnlyDictionary<string, ulong>> Calls)
    {
        public bool SaveFlags { get; init; } = true;
        public Way Way { get; init; } = Way.First;
        public ulong Head { get; init; }
        public ulong Tail { get; init; }
        /// <summary>rflags set by popfq right before each call (bit 1 is always set; IF cannot change in user mode).</summary>
        public ulong Flags { get; init; } = 0x202;
        /// <summary>The probed function: rdi + rsi by default; <see cref="Nop5"/> leaves every register as it was.</summary>
        public bool Nop5 { get; init; }
        /// <summary>Calls go to the trampoline's tail, as a thread that trapped on the int3 the jmp replaced continues.</summary>
        public bool EnterAtTail { get; init; }
        /// <summary>
        /// Table entries of made-up threads: a call whose assignment has "fs" runs under that fs base (the caller
        /// switches with wrfsbase, which is all the trampoline looks at, and switches back after the call).
        /// </summary>
        public IReadOnlyList<(int Entry, ulong Key, ulong Value)> OtherThreads { get; init; } = [];
        /// <summary>Blocks besides <see cref="Block"/> (head and tail 0) that the run maps and reads back.</summary>
        public IReadOnlyList<ulong> OtherBlocks { get; init; } = [];
        /// <summary>
        /// An address in the trampoline where a signal handler interrupts the (single-stepped) first call and
        /// calls the site itself with <see cref="NestedRdi"/> and <see cref="NestedRsi"/>. The model does not
        /// place that hit; the test checks the block itself.
        /// </summary>
        public ulong InterruptAt { get; init; }
    }

    const ulong NestedCaller = Code + 0xF000;
    const ulong NestedRdi = 0x1111_0000_0000_1111, NestedRsi = 0x2222_0000_0000_2222;

    sealed record Outcome(IReadOnlyDictionary<ulong, byte[]> Blocks, byte[] Threads, ulong[][] Spills, List<ulong> Tscs, bool Interrupted, string Disassembly)
    {
        public byte[] Block => Blocks[TrampolineExecutionTests.Block];
    }

    static ulong DefaultValue(string register, int call) =>
        0x8000_0000_0000_0000UL | ((ulong)(Array.IndexOf(Registers, register) + 1) << 48) | ((ulong)call << 20) | 0xBEEF;

    static ulong Value(IReadOnlyDictionary<string, ulong> call, string register, int index) =>
        register == "rsp" ? StackTop - 8 : call.TryGetValue(register, out ulong v) ? v : DefaultValue(register, index);

    static IReadOnlyDictionary<string, ulong>[] Plain(int n) =>
        Enumerable.Range(0, n).Select(_ => (IReadOnlyDictionary<string, ulong>)new Dictionary<string, ulong>()).ToArray();

    // ---- the model of the contract ------------------------------------------------------------------

    static bool Matches(TrampolineProbe p, IReadOnlyDictionary<string, ulong> call, int index) =>
        p.Filter is null || p.Filter.Evaluate(name => p.Fields!.TryGetValue(name, out HitField? f)
            ? FilterValue.Of(Typed(Value(call, f.Register, index), f)) : FilterValue.Missing);

    /// <summary>A register's value as a filter field sees it: truncated to its width, extended by its signedness.</summary>
    static Int128 Typed(ulong value, HitField f) => (f.Bits, f.Signed) switch
    {
        (8, true) => (sbyte)value, (16, true) => (short)value, (32, true) => (int)value, (64, true) => (long)value,
        (8, false) => (byte)value, (16, false) => (ushort)value, (32, false) => (uint)value, _ => value,
    };

    /// <summary>
    /// The block and thread mapping the contract says the run leaves. Timestamps cannot be predicted: the
    /// model takes them from the actual records it expects, and returns them in order for the caller to check.
    /// </summary>
    static (Dictionary<ulong, byte[]> Blocks, byte[] Threads, List<ulong> Tscs) Expect(Scenario s, ulong fsBase, IReadOnlyDictionary<ulong, byte[]> actual)
    {
        var blocks = actual.Keys.ToDictionary(b => b, _ => new byte[L.BlockSize]);
        var heads = actual.Keys.ToDictionary(b => b, b => b == Block ? s.Head : 0);
        var threads = new byte[ThreadsMapping];
        foreach (var (entry, key, value) in TableEntries(s.Way, fsBase).Concat(s.OtherThreads)) { Set(threads, entry, key); Set(threads, entry + 8, value); }
        var tscs = new List<ulong>();
        for (int i = 0; i < s.Calls.Count && !s.EnterAtTail; i++)
        {
            ulong? address = Lookup(threads, s.Calls[i].TryGetValue("fs", out ulong fs) ? fs : fsBase);
            foreach (TrampolineProbe p in s.Probes)
            {
                if (!Matches(p, s.Calls[i], i)) continue;
                if (address is not ulong b)
                {
                    Add(threads, L.SharedCountsOffset + p.Id * 8, 1);
                    continue;
                }
                byte[] block = blocks[b];
                ulong head = heads[b], tail = b == Block ? s.Tail : 0;
                Add(block, L.CountsOffset + p.Id * 8, 1);
                if (unchecked(head - tail) >= L.RingRecords)
                {
                    Add(block, L.DropsOffset + p.Id * 8, 1);
                    continue;
                }
                int record = L.RingOffset + (int)(head & (L.RingRecords - 1)) * L.RecordSize;
                ulong tsc = Get(actual[b], record + L.RecordTsc);
                tscs.Add(tsc);
                Set(block, record + L.RecordTsc, tsc);
                for (int c = 0; c < p.Captures.Count; c++)
                    Set(block, record + (c == 0 ? L.RecordArg0 : L.RecordArg1), Value(s.Calls[i], p.Captures[c], i));
                Set(block, record + L.RecordCommit, L.Commit(head, p.Id));
                heads[b] = head + 1;
            }
        }
        foreach (var (b, block) in blocks)
        {
            Set(block, L.HeadOffset, heads[b]);
            Set(block, L.TailOffset, b == Block ? s.Tail : 0);
        }
        return (blocks, threads, tscs);
    }

    /// <summary>The 2-way lookup: the entry at the key's hash, else the next one.</summary>
    static ulong? Lookup(byte[] threads, ulong key)
    {
        int first = (int)L.Hash(key) * L.TableEntrySize;
        foreach (int entry in new[] { first, first + L.TableEntrySize })
            if (Get(threads, entry) == key) return Get(threads, entry + 8);
        return null;
    }

    static IEnumerable<(int Entry, ulong Key, ulong Value)> TableEntries(Way way, ulong fsBase)
    {
        int first = (int)L.Hash(fsBase) * L.TableEntrySize, second = first + L.TableEntrySize;
        // Other threads' keys point at the same block: if the trampoline took one for this thread's, the
        // block would show it. fs bases are never 0 or these exact neighbours of this thread's.
        switch (way)
        {
            case Way.First: yield return (first, fsBase, Block); break;
            case Way.Second: yield return (first, fsBase + 0x1000, Block); yield return (second, fsBase, Block); break;
            case Way.OthersInBothWays: yield return (first, fsBase + 0x1000, Block); yield return (second, fsBase + 0x2000, Block); break;
        }
    }

    static void Set(byte[] memory, int offset, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(memory.AsSpan(offset), value);
    static void Add(byte[] memory, int offset, ulong value) =>
        Set(memory, offset, BinaryPrimitives.ReadUInt64LittleEndian(memory.AsSpan(offset)) + value);
    static ulong Get(byte[] memory, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(memory.AsSpan(offset));

    // ---- running it ---------------------------------------------------------------------------------

    static void Function(Assembler a, bool nop5)
    {
        if (nop5)
        {
            a.nop(5); // nop dword [rax+rax]: displaced, changes nothing
        }
        else
        {
            a.mov(rax, rdi); // 3 + 3 bytes displaced: the ret stays at the site
            a.add(rax, rsi);
        }
        a.ret();
    }

    static AssemblerRegister64 Reg(string name) => name switch
    {
        "rax" => rax, "rbx" => rbx, "rcx" => rcx, "rdx" => rdx, "rsi" => rsi, "rdi" => rdi, "rbp" => rbp,
        "r8" => r8, "r9" => r9, "r10" => r10, "r11" => r11, "r12" => r12, "r13" => r13, "r14" => r14, "r15" => r15,
        _ => throw new ArgumentException(name),
    };

    static void CallerCode(Assembler a, Scenario s, ulong target)
    {
        foreach (string r in new[] { "rbx", "rbp", "r12", "r13", "r14", "r15" }) a.push(Reg(r));
        a.mov(rax, SavedRsp);
        a.mov(__qword_ptr[rax], rsp);
        a.rdfsbase(rax);
        a.mov(rcx, SavedFs);
        a.mov(__qword_ptr[rcx], rax);
        ReadTsc(a, TscWindow);
        for (int i = 0; i < s.Calls.Count; i++)
        {
            a.mov(rsp, StackTop);
            if (s.Calls[i].TryGetValue("fs", out ulong fs))
            {
                a.mov(rax, fs);
                a.wrfsbase(rax);
            }
            a.push((int)s.Flags);
            a.popfq();
            foreach (string r in Registers) a.mov(Reg(r), Value(s.Calls[i], r, i)); // mov imm64 leaves the flags alone
            a.call(target);
            a.mov(rsp, SpillBase + (ulong)(i + 1) * 128);
            a.pushfq();
            foreach (string r in Registers) a.push(Reg(r));
            if (s.Calls[i].ContainsKey("fs"))
            {
                a.mov(rcx, SavedFs);
                a.mov(rax, __qword_ptr[rcx]);
                a.wrfsbase(rax);
            }
        }
        ReadTsc(a, TscWindow + 8);
        a.mov(rax, SavedRsp);
        a.mov(rsp, __qword_ptr[rax]);
        a.push(0x202); // the trap flag off, if a call set it and no handler cleared it
        a.popfq();
        foreach (string r in new[] { "r15", "r14", "r13", "r12", "rbp", "rbx" }) a.pop(Reg(r));
        a.ret();
    }

    static void ReadTsc(Assembler a, ulong into)
    {
        // lfence on both sides: the read can move neither before the code before it nor after the code after it.
        a.lfence();
        a.rdtsc();
        a.lfence();
        a.shl(rdx, 32);
        a.or(rax, rdx);
        a.mov(rcx, into);
        a.mov(__qword_ptr[rcx], rax);
    }

    /// <summary>
    /// Lays out the scenario in a fresh harness, runs the caller, reads everything back and checks it
    /// against the model: block and thread mapping byte for byte, each call's registers and flags, and
    /// the red zone. Returns what the tests look at more closely.
    /// </summary>
    Outcome Execute(Scenario s) => Execute(_ => s);

    /// <summary>The same, for a scenario that depends on the harness thread's fs base.</summary>
    Outcome Execute(Func<ulong, Scenario> scenario)
    {
        using var session = new Session(harness.Path);
        ulong fs = session.FsBase;
        Scenario s = scenario(fs);
        var function = new CodeRange(Site, Assemble(Site, a => Function(a, s.Nop5)));
        var plan = Assert.IsType<PatchablePlan>(PatchSiteAnalyzer.Analyze(function, Site, []));
        var (code, tailOffset, _) = TrampolineBuilder.Build(Tramp, Table, s.SaveFlags, s.Probes, at => PatchSiteAnalyzer.Relocate(plan, Site, at), null);
        string disassembly = Disassemble(code, Tramp, tailOffset);

        session.Map(Code, 0x10000).Map(Tramp, 0x10000).Map(Data, 0x20000).Map(Table, ThreadsMapping).Map(Block, L.BlockSize);
        foreach (ulong b in s.OtherBlocks) session.Map(b, L.BlockSize);
        session.Put(Site, function.Code).Put(Site, Assemble(Site, a => a.jmp(Tramp))).Put(Tramp, code);
        foreach (var (entry, key, value) in TableEntries(s.Way, fs).Concat(s.OtherThreads))
            session.Put(Table + (ulong)entry, [.. BitConverter.GetBytes(key), .. BitConverter.GetBytes(value)]);
        session.Put(Block + L.HeadOffset, BitConverter.GetBytes(s.Head)).Put(Block + L.TailOffset, BitConverter.GetBytes(s.Tail));
        byte[] redZone = RedZonePattern();
        session.Put(RedZone, redZone);
        session.Put(Caller, Assemble(Caller, a => CallerCode(a, s, s.EnterAtTail ? Tramp + (ulong)tailOffset : Site)));
        if (s.InterruptAt != 0)
        {
            session.Put(NestedCaller, Assemble(NestedCaller, a => { a.mov(rdi, NestedRdi); a.mov(rsi, NestedRsi); a.call(Site); a.ret(); }));
            session.SigCall(s.InterruptAt, NestedCaller);
        }
        session.Run(Caller);
        ulong[] blockAddresses = [Block, .. s.OtherBlocks];
        int[] blockDumps = blockAddresses.Select(b => session.Dump(b, L.BlockSize)).ToArray();
        int threads = session.Dump(Table, ThreadsMapping);
        int spills = session.Dump(SpillBase, (ulong)(s.Calls.Count + 1) * 128), red = session.Dump(RedZone, 128);
        int window = session.Dump(TscWindow, 16);
        var (exit, dumps, output) = session.Finish();
        Assert.True(exit == 0 && dumps.Count == 4 + blockDumps.Length, $"harness exit {exit} (negative/128+n = killed by signal n): {output}\ntrampoline: {disassembly}");

        var actualBlocks = blockAddresses.Select((b, i) => (b, dumps[blockDumps[i]])).ToDictionary(x => x.b, x => x.Item2);
        var (expectedBlocks, expectedThreads, tscs) = Expect(s, fs, actualBlocks);
        var outcome = new Outcome(actualBlocks, dumps[threads], Enumerable.Range(0, s.Calls.Count).Select(i => Spill(dumps[spills], i)).ToArray(), tscs,
            output.Contains("fired=1", StringComparison.Ordinal), disassembly);
        foreach (ulong b in s.InterruptAt == 0 ? blockAddresses : [])
            AssertSameMemory($"block {b:X}", expectedBlocks[b], actualBlocks[b], disassembly);
        AssertSameMemory("thread table", expectedThreads, outcome.Threads, disassembly);
        ulong before = Get(dumps[window], 0), after = Get(dumps[window], 8);
        foreach (ulong tsc in tscs)
            Assert.True(before <= tsc && tsc <= after, $"a record's tsc {tsc:X} is outside the caller's window {before:X}..{after:X}");
        // Under single-stepping the kernel writes signal frames 128 bytes below the caller's rsp, which is 8
        // bytes above the function's: the red zone is then not the trampoline's alone.
        if (s.InterruptAt == 0)
            Assert.True(redZone.AsSpan().SequenceEqual(dumps[red]), $"the red zone below the function's rsp changed\ntrampoline: {disassembly}");
        for (int i = 0; i < s.Calls.Count; i++)
        {
            ulong[] spill = outcome.Spills[i];
            ulong expectedRax = s.Nop5 ? Value(s.Calls[i], "rax", i) : Value(s.Calls[i], "rdi", i) + Value(s.Calls[i], "rsi", i);
            for (int r = 0; r < Registers.Length; r++)
            {
                ulong expected = r == 0 ? expectedRax : Value(s.Calls[i], Registers[r], i);
                Assert.True(expected == spill[r], $"call {i}: {Registers[r]} = {spill[r]:X} after the call, expected {expected:X}\ntrampoline: {disassembly}");
            }
            // add in the function itself writes the flags; only the nop function must give them back unchanged.
            if (s.SaveFlags && s.Nop5)
                Assert.True((s.Flags & ObservableFlags) == (spill[15] & ObservableFlags),
                    $"call {i}: rflags {spill[15]:X} after the call, {s.Flags:X} before\ntrampoline: {disassembly}");
        }
        return outcome;
    }

    /// <summary>Call i's registers in <see cref="Registers"/> order, then rflags (pushed first, so highest).</summary>
    static ulong[] Spill(byte[] spills, int call)
    {
        int top = (call + 1) * 128;
        var values = new ulong[16];
        for (int r = 0; r < Registers.Length; r++) values[r] = Get(spills, top - 16 - 8 * r);
        values[15] = Get(spills, top - 8);
        return values;
    }

    static byte[] RedZonePattern() => Enumerable.Range(0, 128).Select(i => (byte)(0xA5 ^ i)).ToArray();

    static void AssertSameMemory(string what, byte[] expected, byte[] actual, string disassembly)
    {
        Assert.Equal(expected.Length, actual.Length);
        int at = expected.AsSpan().CommonPrefixLength(actual);
        if (at == expected.Length) return;
        int word = at & ~7;
        Assert.Fail($"{what} differs first at +0x{word:X} ({Describe(what, word)}): expected {Get(expected, word):X}, found {Get(actual, word):X}\ntrampoline: {disassembly}");
    }

    static string Describe(string what, int offset)
    {
        if (!what.StartsWith("block", StringComparison.Ordinal))
            return offset >= L.SharedCountsOffset ? $"shared count of probe {(offset - L.SharedCountsOffset) / 8}" : $"table entry {offset / L.TableEntrySize}";
        if (offset == L.HeadOffset) return "head";
        if (offset == L.TailOffset) return "tail";
        if (offset >= L.RingOffset)
        {
            string[] fields = ["tsc", "arg0", "arg1", "commit"];
            return $"ring slot {(offset - L.RingOffset) / L.RecordSize} {fields[(offset - L.RingOffset) % L.RecordSize / 8]}";
        }
        if (offset >= L.DropsOffset) return $"drops of probe {(offset - L.DropsOffset) / 8}";
        if (offset >= L.CountsOffset) return $"count of probe {(offset - L.CountsOffset) / 8}";
        return "between head and counters";
    }

    static byte[] Assemble(ulong address, Action<Assembler> build) => CodeBuffer.Assemble(address, build);

    static string Disassemble(byte[] code, ulong at, int tailOffset)
    {
        var text = new StringBuilder();
        var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(code), at);
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        while (decoder.IP < at + (ulong)code.Length)
        {
            ulong ip = decoder.IP;
            decoder.Decode(out Instruction i);
            formatter.Format(i, output);
            text.Append(CultureInfo.InvariantCulture, $"\n  {(ip - at == (ulong)tailOffset ? "tail:" : ""),-5} {ip:X}  {output.ToStringAndReset()}");
        }
        return text.ToString();
    }

    /// <summary>
    /// One harness process. Its fs base is asked for before the rest of the script is written, because
    /// where the table entry goes depends on it.
    /// </summary>
    sealed class Session : IDisposable
    {
        readonly Process process;
        readonly StringBuilder script = new();
        int dumps;
        public ulong FsBase { get; }

        public Session(string path)
        {
            var start = new ProcessStartInfo(path) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            process = Process.Start(start)!;
            process.StandardInput.Write("fsbase 0\n");
            process.StandardInput.Flush();
            string? line = process.StandardOutput.ReadLine();
            Assert.True(line is not null && line.StartsWith("fs=", StringComparison.Ordinal), $"harness did not report its fs base: {line}");
            FsBase = ulong.Parse(line!["fs=".Length..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        }

        public Session Map(ulong address, ulong size) { script.Append(CultureInfo.InvariantCulture, $"map {address:x} {size:x}\n"); return this; }

        public Session Put(ulong address, byte[] bytes)
        {
            // The harness reads lines of up to 64 KB.
            for (int done = 0; done < bytes.Length; done += 16384)
                script.Append(CultureInfo.InvariantCulture,
                    $"put {address + (ulong)done:x} {Convert.ToHexString(bytes, done, Math.Min(16384, bytes.Length - done))}\n");
            return this;
        }

        public void SigCall(ulong at, ulong entry) => script.Append(CultureInfo.InvariantCulture, $"sigcall {at:x} {entry:x}\n");

        public void Run(ulong entry) => script.Append(CultureInfo.InvariantCulture, $"run {entry:x}\n");

        public int Dump(ulong address, ulong size)
        {
            script.Append(CultureInfo.InvariantCulture, $"dump {address:x} {size:x}\n");
            return dumps++;
        }

        public (int Exit, List<byte[]> Dumps, string Output) Finish()
        {
            // Read while writing: dumps are megabytes, more than a pipe holds.
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            try
            {
                process.StandardInput.Write(script.ToString());
                process.StandardInput.Close();
            }
            catch (IOException)
            {
                // The harness died mid-script; its exit status says why.
            }
            process.WaitForExit();
            var lines = stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var memory = lines.Where(l => l.StartsWith("mem=", StringComparison.Ordinal)).Select(l => Convert.FromHexString(l.AsSpan(4))).ToList();
            string shown = string.Join('\n', lines.Where(l => !l.StartsWith("mem=", StringComparison.Ordinal)));
            return (process.ExitCode, memory, shown + stderr.Result);
        }

        public void Dispose()
        {
            if (!process.HasExited) process.Kill();
            process.Dispose();
        }
    }

    // ---- the tests ----------------------------------------------------------------------------------

    public static TheoryData<string[]> CaptureSets() => new()
    {
        { ["rdi", "rsi"] },   // both from the trampoline's save slots
        { ["rax", "rcx"] },   // the first and second registers pushed
        { ["rdx", "r8"] },    // a saved one and one the trampoline never touches
        { ["r15", "rsp"] },   // rsp as the site saw it, not the trampoline's
        { ["rbx"] },          // one capture: the second value is 0
        { Array.Empty<string>() },
    };

    [Theory]
    [MemberData(nameof(CaptureSets))]
    public void Every_call_is_counted_and_recorded_with_the_values_the_caller_passed(string[] captures)
    {
        const int N = 100;
        var s = new Scenario([new TrampolineProbe(FirstId, captures)], Plain(N));
        var run = Execute(s);
        Assert.Equal((ulong)N, Get(run.Block, L.CountsOffset + FirstId * 8));
        Assert.Equal((ulong)N, Get(run.Block, L.HeadOffset));
        Assert.Equal(N, run.Tscs.Count);
        Assert.All(run.Tscs, t => Assert.NotEqual(0UL, t));
        for (int i = 1; i < N; i++)
            Assert.True(run.Tscs[i - 1] <= run.Tscs[i], $"record {i}: tsc {run.Tscs[i]:X} before record {i - 1}'s {run.Tscs[i - 1]:X}");
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData((ulong)L.RingRecords - 3)]          // the records wrap to slot 0
    [InlineData(0xFFFF_FFFEUL)]                     // the sequence number passes 32 bits
    public void Records_take_slot_head_modulo_the_ring_with_the_full_sequence_in_the_commit_word(ulong start)
    {
        const int N = 8;
        var run = Execute(new Scenario([new TrampolineProbe(FirstId, ["rdi", "rsi"])], Plain(N)) { Head = start, Tail = start });
        Assert.Equal(start + N, Get(run.Block, L.HeadOffset));
        for (ulong seq = start; seq < start + N; seq++)
        {
            int slot = L.RingOffset + (int)(seq & (L.RingRecords - 1)) * L.RecordSize;
            Assert.Equal(((seq + 1) << 16) | FirstId, Get(run.Block, slot + L.RecordCommit));
        }
    }

    [Theory]
    [InlineData((ulong)L.RingRecords + 5, 5UL)]      // full: head - tail == RingRecords
    [InlineData((ulong)L.RingRecords - 1 + 7, 7UL)]  // one slot left: the first call records, the rest drop
    [InlineData(3UL, 4UL)]                           // a tail ahead of head (scribbled) reads as full
    public void A_full_ring_counts_drops_and_writes_nothing(ulong head, ulong tail)
    {
        const int N = 3;
        var run = Execute(new Scenario([new TrampolineProbe(FirstId, ["rdi", "rsi"])], Plain(N)) { Head = head, Tail = tail });
        ulong room = head - tail < L.RingRecords ? L.RingRecords - (head - tail) : 0;
        ulong written = Math.Min(room, N);
        Assert.Equal((ulong)N, Get(run.Block, L.CountsOffset + FirstId * 8));
        Assert.Equal(N - written, Get(run.Block, L.DropsOffset + FirstId * 8));
        Assert.Equal(head + written, Get(run.Block, L.HeadOffset));
    }

    [Fact]
    public void Probes_on_one_site_share_the_last_free_slot_in_order_and_each_counts_its_own_drops()
    {
        const ulong Tail = 9;
        var run = Execute(new Scenario([new TrampolineProbe(3, ["rdi"]), new TrampolineProbe(4, ["rsi"])], Plain(2))
            { Head = Tail + L.RingRecords - 1, Tail = Tail });
        // The first call's probe 3 takes the last slot; everything after it drops.
        Assert.Equal((2UL, 1UL), (Get(run.Block, L.CountsOffset + 3 * 8), Get(run.Block, L.DropsOffset + 3 * 8)));
        Assert.Equal((2UL, 2UL), (Get(run.Block, L.CountsOffset + 4 * 8), Get(run.Block, L.DropsOffset + 4 * 8)));
        Assert.Equal(Tail + L.RingRecords, Get(run.Block, L.HeadOffset));
    }

    [Theory]
    [InlineData(Way.Empty)]
    [InlineData(Way.OthersInBothWays)]
    public void A_thread_without_a_table_entry_counts_in_the_shared_counters_and_touches_no_block(Way way)
    {
        const int N = 5;
        var run = Execute(new Scenario([new TrampolineProbe(FirstId, ["rdi"]), new TrampolineProbe(L.MaxProbes - 1, [])], Plain(N)) { Way = way });
        Assert.Equal((ulong)N, Get(run.Threads, L.SharedCountsOffset + FirstId * 8));
        Assert.Equal((ulong)N, Get(run.Threads, L.SharedCountsOffset + (L.MaxProbes - 1) * 8));
        Assert.Empty(run.Tscs);
    }

    [Fact]
    public void A_thread_whose_entry_is_in_the_second_way_finds_its_block()
    {
        const int N = 4;
        var run = Execute(new Scenario([new TrampolineProbe(FirstId, ["rdi"])], Plain(N)) { Way = Way.Second });
        Assert.Equal((ulong)N, Get(run.Block, L.CountsOffset + FirstId * 8));
        Assert.Equal(0UL, Get(run.Threads, L.SharedCountsOffset + FirstId * 8));
    }

    /// <summary>A made-up fs base (TCB-like: page-aligned, user half) whose hash <paramref name="wanted"/> accepts.</summary>
    static ulong KeyWithHash(Func<ulong, bool> wanted, params ulong[] taken)
    {
        for (ulong key = 0x7E00_0000_0000; ; key += 0x1000)
            if (wanted(L.Hash(key)) && !taken.Contains(key)) return key;
    }

    [Fact]
    public void Threads_count_in_their_own_blocks_through_both_ways_and_the_extra_last_entry()
    {
        const ulong Block2 = Block + 0x1000_0000, Block3 = Block + 0x2000_0000, Block4 = Block + 0x3000_0000;
        const int Last = L.TableEntries - 1;
        var run = Execute(fs =>
        {
            ulong own = L.Hash(fs);
            // a and b share a bucket (b in its second way) away from the harness thread's entry and the last
            // bucket; c hashes to the last bucket and lives in the extra entry after it; d has no entry.
            ulong a = KeyWithHash(h => h + 1 < Last && h != own && h + 1 != own, fs);
            ulong b = KeyWithHash(h => h == L.Hash(a), fs, a);
            ulong c = KeyWithHash(h => h == Last, fs);
            ulong blocker = KeyWithHash(h => h == Last, fs, c);
            ulong d = KeyWithHash(_ => true, fs, a, b, c, blocker);
            var others = new List<(int, ulong, ulong)>
            {
                ((int)L.Hash(a) * L.TableEntrySize, a, Block2),
                ((int)L.Hash(a) * L.TableEntrySize + L.TableEntrySize, b, Block3),
                ((Last + 1) * L.TableEntrySize, c, Block4),
            };
            // The first way of the last bucket is taken: by the harness thread, or by a thread that never calls.
            if (own != Last) others.Add((Last * L.TableEntrySize, blocker, Block2));
            ulong?[] rotation = [null, a, b, c, d];
            var calls = Enumerable.Range(0, 20).Select(i => (IReadOnlyDictionary<string, ulong>)(rotation[i % 5] is ulong key
                ? new Dictionary<string, ulong> { ["fs"] = key } : new Dictionary<string, ulong>())).ToArray();
            return new Scenario([new TrampolineProbe(FirstId, ["rdi", "rsi"])], calls) { OtherThreads = others, OtherBlocks = [Block2, Block3, Block4] };
        });
        foreach (ulong block in new[] { Block, Block2, Block3, Block4 })
            Assert.Equal(4UL, Get(run.Blocks[block], L.CountsOffset + FirstId * 8));
        Assert.Equal(4UL, Get(run.Threads, L.SharedCountsOffset + FirstId * 8));
    }

    /// <summary>
    /// The trampoline's instructions that run on a hit of a thread in the first way with room in the ring:
    /// all of the head but the second-way probe (skipped by the je), the drop count (the jae's target) and
    /// the unregistered section (between the jmp to the restore and the restore), and the first instruction
    /// of the tail.
    /// </summary>
    static List<(ulong Address, string Text)> FoundPath(byte[] code, int tailOffset)
    {
        var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(code), Tramp);
        var all = new List<Instruction>();
        while (decoder.IP < Tramp + (ulong)code.Length) { decoder.Decode(out Instruction i); all.Add(i); }
        ulong tail = Tramp + (ulong)tailOffset;
        ulong full = all.Single(i => i.Mnemonic == Mnemonic.Jae).NearBranchTarget;
        Instruction toFound = all.Single(i => i.Mnemonic == Mnemonic.Je);
        Instruction toRestore = all.Last(i => i.Mnemonic == Mnemonic.Jmp && i.IP < tail && i.NearBranchTarget > i.NextIP);
        var formatter = new NasmFormatter();
        var text = new StringOutput();
        return all.Where(i => i.IP <= tail && i.IP != full && !(i.IP >= toRestore.NextIP && i.IP < toRestore.NearBranchTarget)
                && !(i.IP >= toFound.NextIP && i.IP < toFound.NearBranchTarget))
            .Select(i => { formatter.Format(i, text); return (i.IP, $"+{i.IP - Tramp:X} {text.ToStringAndReset()}"); }).ToList();
    }

    [Fact]
    public void A_signal_handler_that_hits_the_probe_mid_trampoline_gets_its_own_record()
    {
        // A signal can arrive at any instruction of the trampoline, and its handler can reach the same probe
        // on the same thread. Each place is tried: the handler's hit and the interrupted one must both be
        // counted and both be recorded in slots of their own (or counted as drops), and the interrupted
        // call must see no difference.
        var probe = new TrampolineProbe(FirstId, ["rdi", "rsi"]);
        var (code, tailOffset, _) = TrampolineBuilder.Build(Tramp, Table, true, [probe],
            at => PatchSiteAnalyzer.Relocate(Assert.IsType<PatchablePlan>(PatchSiteAnalyzer.Analyze(
                new CodeRange(Site, Assemble(Site, a => Function(a, false))), Site, [])), Site, at), null);
        var failures = new List<string>();
        string disassembly = "";
        foreach (var (address, text) in FoundPath(code, tailOffset))
        {
            var run = Execute(new Scenario([probe], Plain(1)) { InterruptAt = address, Flags = 0x302 });
            disassembly = run.Disassembly;
            if (!run.Interrupted)
            {
                failures.Add($"{text}: the handler never ran there");
                continue;
            }
            ulong count = Get(run.Block, L.CountsOffset + FirstId * 8), drops = Get(run.Block, L.DropsOffset + FirstId * 8), head = Get(run.Block, L.HeadOffset);
            var records = Enumerable.Range(0, (int)Math.Min(head, 4)).Select(slot =>
            {
                int at = L.RingOffset + slot * L.RecordSize;
                return (Commit: Get(run.Block, at + L.RecordCommit), Rdi: Get(run.Block, at + L.RecordArg0), Rsi: Get(run.Block, at + L.RecordArg1));
            }).ToList();
            var seen = records.Select(r => (r.Rdi, r.Rsi)).ToHashSet();
            bool commitsRight = records.Select((r, slot) => r.Commit == L.Commit((ulong)slot, FirstId)).All(ok => ok);
            if (count != 2 || drops != 0 || head != 2 || !commitsRight
                || !seen.SetEquals([(NestedRdi, NestedRsi), (DefaultValue("rdi", 0), DefaultValue("rsi", 0))]))
                failures.Add($"{text}: count {count}, drops {drops}, head {head}, records [{string.Join(", ", records.Select(r => $"commit {r.Commit:X} rdi {r.Rdi:X}"))}]");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} places fail:\n{string.Join('\n', failures)}\ntrampoline: {disassembly}");
    }

    [Fact]
    public void Two_probes_on_one_site_each_count_and_record_in_order()
    {
        const int N = 6;
        var s = new Scenario([new TrampolineProbe(3, ["rdi"]), new TrampolineProbe(L.MaxProbes - 1, ["rsi", "rsp"])], Plain(N));
        var run = Execute(s);
        Assert.Equal((ulong)N, Get(run.Block, L.CountsOffset + 3 * 8));
        Assert.Equal((ulong)N, Get(run.Block, L.CountsOffset + (L.MaxProbes - 1) * 8));
        Assert.Equal((ulong)(2 * N), Get(run.Block, L.HeadOffset));
    }

    [Fact]
    public void A_thread_entering_at_the_tail_runs_the_displaced_code_and_is_not_counted()
    {
        // Execute checks each call's result (rdi + rsi from the displaced mov/add and the ret back at the
        // site) and that the block and the shared counters stay untouched.
        var run = Execute(new Scenario([new TrampolineProbe(FirstId, ["rdi"])], Plain(3)) { EnterAtTail = true });
        Assert.Equal(0UL, Get(run.Block, L.CountsOffset + FirstId * 8));
    }

    /// <summary>Flag patterns: every observable flag clear, and every status flag set.</summary>
    public static TheoryData<Way, ulong, bool> RegisterCases()
    {
        var data = new TheoryData<Way, ulong, bool>();
        foreach (Way way in new[] { Way.First, Way.Empty })
            foreach (ulong flags in new ulong[] { 0x202, 0x202 | 0x8D5 })
                foreach (bool filterMatches in new[] { true, false })
                    data.Add(way, flags, filterMatches);
        return data;
    }

    [Theory]
    [MemberData(nameof(RegisterCases))]
    public void Every_register_the_flags_and_the_red_zone_are_as_the_caller_left_them(Way way, ulong flags, bool filterMatches)
    {
        // Captures and filters read registers the trampoline saved (rdi, rax), never touches (r8, r9) and rsp,
        // so every way of loading a value runs, on the counted path and on the filtered-out one.
        var fields = new Dictionary<string, HitField> { ["arg1"] = new("rdi", 64, false), ["x"] = new("r9", 32, true) };
        ulong r9 = filterMatches ? 0xFFFF_FFFF_FFFF_FFF0 : 0x10;
        var calls = Enumerable.Range(0, 4).Select(_ => (IReadOnlyDictionary<string, ulong>)new Dictionary<string, ulong> { ["r9"] = r9 }).ToArray();
        var probes = new[]
        {
            new TrampolineProbe(5, ["r8", "rsp"], Filter.Parse("arg1 != 0").Root, fields),
            new TrampolineProbe(6, ["rax", "r9"], Filter.Parse("x < 0").Root, fields),
        };
        Execute(new Scenario(probes, calls) { Way = way, Flags = flags, Nop5 = true });
    }

    [Fact]
    public void Without_saved_flags_every_general_register_is_still_kept()
    {
        // rsp as the site saw it: the frame is 8 bytes smaller without the pushed flags.
        var run = Execute(new Scenario([new TrampolineProbe(FirstId, ["rsp", "r8"])], Plain(4)) { SaveFlags = false, Nop5 = true, Flags = 0x202 | 0x8D5 });
        Assert.Equal(4UL, Get(run.Block, L.CountsOffset + FirstId * 8));
    }

    // rdi is arg1 (u64); rsi a typed s32 capture n; rdx b (s8), rcx w (u16), r8 u (u32), r9 s (s64), r10 c (u8),
    // r11 h (s16). High bits outside a field's width are garbage the trampoline must ignore.
    static readonly Dictionary<string, HitField> FilterFields = new()
    {
        ["arg1"] = new("rdi", 64, false), ["n"] = new("rsi", 32, true), ["b"] = new("rdx", 8, true),
        ["w"] = new("rcx", 16, false), ["u"] = new("r8", 32, false), ["s"] = new("r9", 64, true),
        ["c"] = new("r10", 8, false), ["h"] = new("r11", 16, true),
    };

    static readonly (ulong Rdi, ulong Rsi, ulong Rdx, ulong Rcx, ulong R8, ulong R9, ulong R10, ulong R11)[] FilterInputs =
    [
        (0, 0, 0, 0, 0, 0, 0, 0),
        (7, 0xFFFF_FFFF_FFFF_FFFF, 0x80, 0x8000, 0x8000_0000, 0x8000_0000_0000_0000, 0x80, 0x8000),
        (99, 0x1234_5678_FFFF_FFF0, 0xFFFF_FFFF_FFFF_FF7F, 0xFFFF_FFFF_FFFF_7FFF, 0xFFFF_FFFF_7FFF_FFFF, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FF7F, 0xFFFF_FFFF_FFFF_7FFF),
        (100, 0x0000_0000_8000_0000, 0x1_0000_0001, 0x1_FFFF, 0x1_0000_0000, 1, 0x1_0000_0001, 0x1_FFFF),
        (0x8000_0000_0000_0000, 5, 0x7F, 0x7FFF, 0x7FFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0x7F, 0x7FFF),
        (0xFFFF_FFFF_FFFF_FFFF, 0x7FFF_FFFF, 0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFF, 0xFFFF),
        (101, 0xFFFF_FFFF_FFFF_FFFB, 0xFE, 0, 0, 0xFFFF_FFFF_FFFF_FFFE, 0xFE, 0xFFFE),
        (50, 0xFFFF_FFFF_FFFF_FFFA, 0x100, 0x1_0000, 0xFFFF_FFFF_0000_0000, 0, 0x100, 0x1_0000),
        (7, 0xFFFF_FFFF_8000_0000, 0x81, 0x8001, 0x8000_0001, 0xFFFF_FFFF_8000_0000, 0x81, 0x8001),
        (99, 0, 0xFFFF_FFFF_FFFF_FF80, 0xFFFF_FFFF_FFFF_0000, 0, 0x10, 0xFFFF_FFFF_FFFF_FF80, 0xFFFF_FFFF_FFFF_0000),
    ];

    public static TheoryData<string, bool> Filters() => new()
    {
        { "arg1 < 100", false },
        { "n < -5", false },
        { "n == -1", false },
        { "n >= -2147483648 && n < -2147483647", false },
        { "b < 0", false },
        { "b == -128", false },
        { "w >= 0x8000", false },
        { "u > 0x7fffffff", false },
        { "s < 0", false },
        { "s <= -2", false },
        { "c >= 0x80", false },
        { "h < -1", false },
        { "c == 0 || h == -32768", false },
        { "c <= 0x80", false },                       // u8: 0x80 must not be sign-extended
        { "!(arg1 < 100 && b < 0)", false },          // an && whose truth jumps (under !)
        { "(arg1 < 100 && n < 0) || c == 0xff", false },
        { "arg1 == 0xffffffffffffffff", false },      // u64 literals above the s64 range
        { "arg1 >= 0x8000000000000000", false },
        { "arg1 < 100 && n >= -16", false },
        { "!(arg1 == 7) && (n > 0 || b == -128)", false },
        { "arg1 == 7 || arg1 == 99 || n == -2147483648", false },
        { "!(arg1 > 100 || w != 0)", false },
        // Literals outside a field's range: every value is on one side, the filter is constant.
        { "n > 3000000000", true },
        { "n < 3000000000", true },
        { "arg1 != -1", true },
        { "arg1 > -1", true },
        { "b > 127", true },
        { "u >= 0 && u < 4294967296", true },
    };

    [Theory]
    [MemberData(nameof(Filters))]
    public void A_compiled_filter_counts_and_records_only_the_matching_calls(string filter, bool constant)
    {
        var probe = new TrampolineProbe(FirstId, ["rdi", "rsi"], Filter.Parse(filter).Root, FilterFields);
        var calls = FilterInputs.Select(v => (IReadOnlyDictionary<string, ulong>)new Dictionary<string, ulong>
        {
            ["rdi"] = v.Rdi, ["rsi"] = v.Rsi, ["rdx"] = v.Rdx, ["rcx"] = v.Rcx, ["r8"] = v.R8, ["r9"] = v.R9,
            ["r10"] = v.R10, ["r11"] = v.R11,
        }).ToArray();
        int matching = calls.Select((c, i) => Matches(probe, c, i)).Count(m => m);
        // A filter that every input passes or fails would not show whether the trampoline filters at all.
        if (!constant) Assert.InRange(matching, 1, calls.Length - 1);

        var registered = Execute(new Scenario([probe], calls));
        Assert.Equal((ulong)matching, Get(registered.Block, L.CountsOffset + FirstId * 8));
        Assert.Equal((ulong)matching, Get(registered.Block, L.HeadOffset));

        var unregistered = Execute(new Scenario([probe], calls) { Way = Way.Empty });
        Assert.Equal((ulong)matching, Get(unregistered.Threads, L.SharedCountsOffset + FirstId * 8));
    }

    [Fact]
    public void Two_filtered_probes_on_one_site_each_decide_for_themselves()
    {
        var probes = new[]
        {
            new TrampolineProbe(3, ["rdi"], Filter.Parse("arg1 < 100").Root, FilterFields),
            new TrampolineProbe(4, ["rsi", "rdx"], Filter.Parse("n < 0").Root, FilterFields),
            new TrampolineProbe(8, ["rcx"]),
        };
        var calls = FilterInputs.Select(v => (IReadOnlyDictionary<string, ulong>)new Dictionary<string, ulong>
        {
            ["rdi"] = v.Rdi, ["rsi"] = v.Rsi, ["rdx"] = v.Rdx, ["rcx"] = v.Rcx,
        }).ToArray();
        var run = Execute(new Scenario(probes, calls));
        Assert.Equal((ulong)calls.Length, Get(run.Block, L.CountsOffset + 8 * 8));
    }

    // ---- return probes: the hijack in the entry trampoline, and the return trampoline -----------------

    const ulong ReturnTramp = Tramp + 0x8000;
    /// <summary>Where the function under test returns to the caller: the slot the entry trampoline hijacks.</summary>
    const ulong ReturnSlot = StackTop - 8;

    sealed record ShadowEntryFixture(ulong Slot, ulong Original, ulong Tsc, ulong Trampoline);

    /// <summary>What a return-probe run left: the block, each call's registers, and the code that ran.</summary>
    sealed record ReturnOutcome(byte[] Block, ulong[][] Spills, string Disassembly)
    {
        public ulong Depth => Get(Block, L.ShadowDepthOffset);

        public ShadowEntryFixture Entry(int i)
        {
            int at = L.ShadowOffset + i * L.ShadowEntrySize;
            return new(Get(Block, at + L.ShadowSlot), Get(Block, at + L.ShadowOriginal), Get(Block, at + L.ShadowTsc), Get(Block, at + L.ShadowTrampoline));
        }

        public (ulong Tsc, ulong Arg0, ulong Arg1, ulong Commit) Record(int slot)
        {
            int at = L.RingOffset + slot * L.RecordSize;
            return (Get(Block, at + L.RecordTsc), Get(Block, at + L.RecordArg0), Get(Block, at + L.RecordArg1), Get(Block, at + L.RecordCommit));
        }
    }

    /// <summary>A made-up entry that the function pushes before it returns, as a probed call on another stack would.</summary>
    static readonly ShadowEntryFixture Foreign = new(0x7777_0000_1000, 0x1234_5678, 5, 0x9999_0000);

    /// <summary>
    /// Calls the function (rax = rdi + rsi) through an entry trampoline with a %return probe and its
    /// return trampoline, with the shadow stack holding <paramref name="before"/> and its depth word
    /// <paramref name="depth"/> beforehand. With <paramref name="foreign"/> the function pushes
    /// <see cref="Foreign"/> on the shadow stack before it returns. Every call must give back every
    /// register but rax, which must be the function's result.
    /// </summary>
    /// <param name="scribble">Non-zero: the function writes it over the depth word before it returns.</param>
    ReturnOutcome ExecuteReturn(int calls, IReadOnlyList<ShadowEntryFixture> before, ulong depth, bool foreign = false, ulong scribble = 0)
    {
        using var session = new Session(harness.Path);
        ulong fs = session.FsBase;
        var s = new Scenario([new TrampolineProbe(FirstId, [])], Plain(calls));
        var function = new CodeRange(Site, Assemble(Site, a =>
        {
            a.mov(rax, rdi);
            a.add(rax, rsi);
            if (foreign)
            {
                a.push(rcx);
                a.push(rdx);
                a.mov(rcx, Block);
                a.mov(rdx, __qword_ptr[rcx + L.ShadowDepthOffset]);
                a.shl(rdx, 5);
                a.add(rdx, rcx);
                a.mov(rcx, Foreign.Slot);
                a.mov(__qword_ptr[rdx + L.ShadowOffset + L.ShadowSlot], rcx);
                a.mov(rcx, Foreign.Original);
                a.mov(__qword_ptr[rdx + L.ShadowOffset + L.ShadowOriginal], rcx);
                a.mov(__qword_ptr[rdx + L.ShadowOffset + L.ShadowTsc], (int)Foreign.Tsc);
                a.mov(rcx, Foreign.Trampoline);
                a.mov(__qword_ptr[rdx + L.ShadowOffset + L.ShadowTrampoline], rcx);
                a.mov(rcx, Block);
                a.inc(__qword_ptr[rcx + L.ShadowDepthOffset]);
                a.pop(rdx);
                a.pop(rcx);
            }
            if (scribble != 0)
            {
                a.push(rcx);
                a.push(rdx);
                a.mov(rcx, Block);
                a.mov(rdx, scribble);
                a.mov(__qword_ptr[rcx + L.ShadowDepthOffset], rdx);
                a.pop(rdx);
                a.pop(rcx);
            }
            a.ret();
        }));
        var plan = Assert.IsType<PatchablePlan>(PatchSiteAnalyzer.Analyze(function, Site, []));
        var (code, tailOffset, _) = TrampolineBuilder.Build(Tramp, Table, true, s.Probes, at => PatchSiteAnalyzer.Relocate(plan, Site, at),
            new ReturnHijack(ReturnTramp, Environment.ProcessId));
        var (returnCode, _) = TrampolineBuilder.BuildReturn(ReturnTramp, Table, [FirstId]);
        string disassembly = Disassemble(code, Tramp, tailOffset) + "\nreturn trampoline:" + Disassemble(returnCode, ReturnTramp, -1);

        session.Map(Code, 0x10000).Map(Tramp, 0x10000).Map(Data, 0x20000).Map(Table, ThreadsMapping).Map(Block, L.BlockSize);
        session.Put(Site, function.Code).Put(Site, Assemble(Site, a => a.jmp(Tramp))).Put(Tramp, code).Put(ReturnTramp, returnCode);
        foreach (var (entry, key, value) in TableEntries(Way.First, fs))
            session.Put(Table + (ulong)entry, [.. BitConverter.GetBytes(key), .. BitConverter.GetBytes(value)]);
        for (int i = 0; i < before.Count; i++)
        {
            ShadowEntryFixture e = before[i];
            session.Put(Block + L.ShadowOffset + (ulong)(i * L.ShadowEntrySize),
                [.. BitConverter.GetBytes(e.Slot), .. BitConverter.GetBytes(e.Original), .. BitConverter.GetBytes(e.Tsc), .. BitConverter.GetBytes(e.Trampoline)]);
        }
        session.Put(Block + L.ShadowDepthOffset, BitConverter.GetBytes(depth));
        session.Put(Caller, Assemble(Caller, a => CallerCode(a, s, Site)));
        session.Run(Caller);
        int block = session.Dump(Block, L.BlockSize);
        int spills = session.Dump(SpillBase, (ulong)(calls + 1) * 128);
        int slot = session.Dump(ReturnSlot, 8);
        var (exit, dumps, output) = session.Finish();
        Assert.True(exit == 0 && dumps.Count == 3, $"harness exit {exit} (negative/128+n = killed by signal n): {output}\ntrampolines: {disassembly}");
        var outcome = new ReturnOutcome(dumps[block], Enumerable.Range(0, calls).Select(i => Spill(dumps[spills], i)).ToArray(), disassembly);
        for (int i = 0; i < calls; i++)
        {
            for (int r = 0; r < Registers.Length; r++)
            {
                ulong expected = r == 0 ? Value(s.Calls[i], "rdi", i) + Value(s.Calls[i], "rsi", i) : Value(s.Calls[i], Registers[r], i);
                Assert.True(expected == outcome.Spills[i][r],
                    $"call {i}: {Registers[r]} = {outcome.Spills[i][r]:X} after the return, expected {expected:X}\ntrampolines: {disassembly}");
            }
        }
        Assert.True(Get(dumps[slot], 0) != ReturnTramp, "the return address slot still points at the return trampoline after the return");
        Assert.Equal((ulong)calls, Get(outcome.Block, L.CountsOffset + FirstId * 8));
        return outcome;
    }

    /// <summary>Each call left an entry record then a return record carrying the entry's TSC and rax.</summary>
    static void AssertCallRecords(ReturnOutcome run, int calls, ulong firstSeq = 0)
    {
        Assert.Equal(firstSeq + (ulong)(2 * calls), Get(run.Block, L.HeadOffset));
        for (int i = 0; i < calls; i++)
        {
            ulong seq = firstSeq + (ulong)(2 * i);
            var entry = run.Record((int)seq);
            var ret = run.Record((int)seq + 1);
            Assert.True(entry.Commit == L.Commit(seq, FirstId), $"call {i}: entry commit {entry.Commit:X}\n{run.Disassembly}");
            Assert.True(ret.Commit == (L.Commit(seq + 1, FirstId) | L.ReturnBit), $"call {i}: return commit {ret.Commit:X}\n{run.Disassembly}");
            Assert.Equal(entry.Tsc, ret.Arg0);
            Assert.True(ret.Tsc >= entry.Tsc, $"call {i}: returned at tsc {ret.Tsc:X}, before its entry {entry.Tsc:X}");
            Assert.Equal(run.Spills[i][0], ret.Arg1);
        }
    }

    [Fact]
    public void A_return_probe_records_entry_and_return_and_pops_its_entry()
    {
        var run = ExecuteReturn(3, [], 0);

        AssertCallRecords(run, 3);
        Assert.Equal(0UL, run.Depth);
    }

    [Fact]
    public void Entries_below_the_returning_one_stay_as_they_were()
    {
        ShadowEntryFixture[] older = [new(0x1000, 0x11, 1, 0x21), new(StackTop + 0x40, 0x12, 2, ReturnTramp)];

        var run = ExecuteReturn(2, older, (ulong)older.Length);

        AssertCallRecords(run, 2);
        Assert.Equal((ulong)older.Length, run.Depth);
        Assert.Equal(older, Enumerable.Range(0, older.Length).Select(run.Entry));
    }

    [Fact]
    public void An_entry_pushed_above_the_returning_one_moves_down_and_stays()
    {
        // Another stack's probed call (a coroutine) pushed after this call began and returns later:
        // taking this call's entry out must keep it.
        var run = ExecuteReturn(2, [], 0, foreign: true);

        AssertCallRecords(run, 2);
        Assert.Equal(2UL, run.Depth);
        Assert.Equal(Foreign, run.Entry(0));
        Assert.Equal(Foreign, run.Entry(1));
    }

    [Fact]
    public void A_depth_scribbled_during_the_call_is_read_no_further_than_the_shadow_stack()
    {
        // The program wrote over the depth while the call ran: the return trampoline searches from the
        // last entry the stack can hold, finds the call's own at the bottom, and never reads past the block.
        var run = ExecuteReturn(1, [], 0, scribble: 0x8000_0000_0000_0000UL);

        AssertCallRecords(run, 1);
        Assert.Equal((ulong)L.ShadowEntries - 1, run.Depth);
    }

    [Theory]
    [InlineData((ulong)L.ShadowEntries)]             // full: uprec (not tracing the harness) cannot be asked
    [InlineData(0xFFFF_FFFF_0000_0000UL)]            // scribbled
    public void A_full_or_scribbled_shadow_stack_counts_the_call_and_leaves_its_return_alone(ulong depth)
    {
        var run = ExecuteReturn(2, [], depth);

        Assert.Equal(depth, run.Depth);
        Assert.Equal(2UL, Get(run.Block, L.HeadOffset)); // the entries only: no return went through the trampoline
        Assert.True(run.Block.AsSpan(L.ShadowOffset, L.ShadowEntries * L.ShadowEntrySize).IndexOfAnyExcept((byte)0) < 0,
            "the shadow stack was written although it was full");
    }
}
