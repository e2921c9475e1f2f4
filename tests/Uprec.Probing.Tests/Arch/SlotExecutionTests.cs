using System.Diagnostics;
using System.Globalization;
using System.Text;
using Iced.Intel;
using Uprec.Probing.Arch;
using static Iced.Intel.AssemblerRegisters;

namespace Uprec.Probing.Tests.Arch;

/// <summary>Builds Arch/slotexec.c once per test run.</summary>
public sealed class SlotHarness : IDisposable
{
    readonly string directory = Directory.CreateTempSubdirectory("uprec-slotexec-").FullName;
    public string Path { get; }

    public SlotHarness()
    {
        Path = System.IO.Path.Combine(directory, "slotexec");
        var source = System.IO.Path.Combine(AppContext.BaseDirectory, "Arch", "slotexec.c");
        var (code, output) = Exec("gcc", ["-O2", "-Wall", "-o", Path, source], "");
        if (code != 0)
            throw new InvalidOperationException($"gcc failed to build {source} (install gcc): {output}");
    }

    public static (int ExitCode, string Output) Exec(string file, string[] args, string stdin)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardInput.Write(stdin);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }

    public void Dispose() => Directory.Delete(directory, recursive: true);
}

/// <summary>
/// Runs OutOfLinePlan slot code on the real CPU inside a small C harness: the site itself holds int3 (so
/// any path back through the site kills the harness with SIGTRAP), the slot sits at its planned address,
/// and small hand-assembled stubs set registers before and read the result after. Ground truth is the
/// CPU, not Iced's disassembly of what was generated.
/// </summary>
public class SlotExecutionTests(SlotHarness harness) : IClassFixture<SlotHarness>
{
    // PIE-like code above 4 GB; a slot 256 MB away (near) and one 16 TB away (far); non-PIE code below 2 GB.
    const ulong Code = 0x5A00_0000_0000;
    const ulong Ip = Code + 0x1125;
    const ulong Data = Code + 0x3000;
    const ulong Stubs = Code + 0x4000;
    const ulong NearSlot = 0x5A00_1000_0000;
    const ulong FarSlot = 0x6A00_0000_0000;
    const ulong LowCode = 0x3000_0000;
    const ulong LowSlot = 0x3100_0000;

    sealed class Layout
    {
        readonly StringBuilder commands = new();
        public Layout Map(ulong address, ulong size) { commands.Append(CultureInfo.InvariantCulture, $"map {address:x} {size:x}\n"); return this; }
        public Layout Put(ulong address, byte[] bytes) { commands.Append(CultureInfo.InvariantCulture, $"put {address:x} {Convert.ToHexString(bytes)}\n"); return this; }
        public Layout Put(ulong address, Action<Assembler> build) => Put(address, Assemble(address, build));
        public Layout Put64(ulong address, ulong value) => Put(address, BitConverter.GetBytes(value));
        public string Script(ulong entry) => commands + $"run {entry:x}\n";
    }

    static byte[] Assemble(ulong address, Action<Assembler> build) => CodeBuffer.Assemble(address, build);

    /// <summary>
    /// Plans <paramref name="site"/> at <paramref name="ip"/>, lays out int3 at the site, the slot, the code
    /// after the site and the caller's stubs, then enters <paramref name="prologue"/> (placed after the
    /// slot, so it can reach it) and returns rax and the harness's pid.
    /// </summary>
    (ulong Rax, int Pid) Execute(byte[] site, ulong ip, ulong slot, Action<Assembler> after, Action<Assembler> prologue, Action<Layout>? extra = null)
    {
        var plan = Assert.IsType<OutOfLinePlan>(TrapPlanner.Plan(site, ip, slot));
        var layout = new Layout()
            .Map(ip & ~0xFFFFUL, 0x10000)
            .Map(slot, 0x10000)
            .Put(ip, [0xCC, .. site.AsSpan(1)])
            .Put(ip + (ulong)plan.Length, after)
            .Put(slot, plan.SlotCode)
            .Put(slot + 0x400, a => { prologue(a); a.jmp(slot); });
        extra?.Invoke(layout);
        var (exit, output) = SlotHarness.Exec(harness.Path, [], layout.Script(slot + 0x400));
        Assert.True(exit == 0, $"harness exit {exit} (negative/128+n = killed by signal n): {output}\nslot: {SlotDisassembly.Render(plan.SlotCode, slot)}");
        var fields = output.Trim().Split(' ');
        return (ulong.Parse(fields[0]["rax=".Length..], NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                int.Parse(fields[1]["pid=".Length..], CultureInfo.InvariantCulture));
    }

    static void Ret(Assembler a) => a.ret();
    static void Nothing(Assembler a) { }

    // A call target that returns the return address it was given.
    static void ReturnMyReturnAddress(Assembler a) { a.mov(rax, __qword_ptr[rsp]); a.ret(); }

    static byte[] RipRelative(byte[] opcode, ulong ip, ulong target, int trailing = 0)
    {
        long disp = (long)target - (long)(ip + (ulong)opcode.Length + 4 + (ulong)trailing);
        return [.. opcode, .. BitConverter.GetBytes((int)disp)];
    }

    [Fact]
    public void Rip_relative_load_reads_the_original_data()
    {
        var site = RipRelative([0x48, 0x8B, 0x05], Ip, Data); // mov rax,[rip+disp]
        var (result, _) = Execute(site, Ip, NearSlot, Ret, Nothing, l => l.Put64(Data, 0x1122_3344_5566_7788));
        Assert.Equal(0x1122_3344_5566_7788UL, result);
    }

    [Fact]
    public void Rip_relative_lea_yields_the_original_address()
    {
        var site = RipRelative([0x48, 0x8D, 0x05], Ip, Data + 0x18); // lea rax,[rip+disp]
        Assert.Equal(Data + 0x18, Execute(site, Ip, NearSlot, Ret, Nothing).Rax);
    }

    [Theory]
    [InlineData(5UL, 1UL)]
    [InlineData(6UL, 0UL)]
    public void Rip_relative_compare_with_immediate_after_the_displacement(ulong stored, ulong equal)
    {
        byte[] site = [.. RipRelative([0x48, 0x83, 0x3D], Ip, Data, trailing: 1), 0x05]; // cmp qword [rip+disp],5
        var (result, _) = Execute(site, Ip, NearSlot, a => { a.sete(al); a.movzx(eax, al); a.ret(); }, Nothing, l => l.Put64(Data, stored));
        Assert.Equal(equal, result);
    }

    [Fact]
    public void Rip_relative_sse_load()
    {
        var site = RipRelative([0xF3, 0x0F, 0x7E, 0x05], Ip, Data); // movq xmm0,[rip+disp]
        var (result, _) = Execute(site, Ip, NearSlot, a => { a.movq(rax, xmm0); a.ret(); }, Nothing, l => l.Put64(Data, 0xDEAD_BEEF_0BAD_F00D));
        Assert.Equal(0xDEAD_BEEF_0BAD_F00DUL, result);
    }

    [Fact]
    public void Rip_relative_push()
    {
        var site = RipRelative([0xFF, 0x35], Ip, Data); // push qword [rip+disp]
        var (result, _) = Execute(site, Ip, NearSlot, a => { a.pop(rax); a.ret(); }, Nothing, l => l.Put64(Data, 0x4242_4242));
        Assert.Equal(0x4242_4242UL, result);
    }

    [Fact]
    public void Plain_instruction_returns_through_a_far_jump_when_the_slot_is_over_2_GB_away()
    {
        byte[] site = [0xB8, 0x2A, 0x00, 0x00, 0x00]; // mov eax,42
        Assert.Equal(42UL, Execute(site, Ip, FarSlot, Ret, Nothing).Rax);
    }

    [Fact]
    public void Syscall_runs_in_the_slot_and_comes_back()
    {
        byte[] site = [0x0F, 0x05]; // syscall
        var (result, pid) = Execute(site, Ip, NearSlot, Ret, a => a.mov(eax, 39)); // getpid
        Assert.Equal((ulong)pid, result);
    }

    public static TheoryData<string, ulong, ulong> CallLayouts() => new()
    {
        { "PIE, near slot: push rax; mov rax,imm64; xchg", Ip, NearSlot },
        { "PIE, far slot: the jump to the target goes through a literal", Ip, FarSlot },
        { "non-PIE: push imm32", LowCode + 0x1125, LowSlot },
    };

    [Theory]
    [MemberData(nameof(CallLayouts))]
    public void Call_rel32_pushes_the_original_return_address(string layout, ulong ip, ulong slot)
    {
        ulong target = (ip & ~0xFFFFUL) + 0x4000;
        byte[] site = [0xE8, .. BitConverter.GetBytes((int)((long)target - (long)(ip + 5)))];
        var (result, _) = Execute(site, ip, slot, Ret, Nothing, l => l.Put(target, ReturnMyReturnAddress));
        Assert.True(ip + 5 == result, $"{layout}: callee saw return address {result:X}, expected {ip + 5:X}");
    }

    [Theory]
    [MemberData(nameof(CallLayouts))]
    public void Call_rel32_preserves_rax_and_flags(string layout, ulong ip, ulong slot)
    {
        ulong target = (ip & ~0xFFFFUL) + 0x4000;
        byte[] site = [0xE8, .. BitConverter.GetBytes((int)((long)target - (long)(ip + 5)))];
        // The callee returns at once; after the call, rax must still hold the prologue's value and CF its bit.
        var (result, _) = Execute(site, ip, slot,
            a => { a.setb(cl); a.shl(rax, 8); a.or(al, cl); a.ret(); },
            a => { a.mov(rax, 0x00AB_CDEF_0123_4567UL); a.stc(); },
            l => l.Put(target, Ret));
        Assert.True(result == 0xABCD_EF01_2345_6701UL, $"{layout}: rax<<8|CF = {result:X}");
    }

    [Fact]
    public void Call_through_a_rip_relative_pointer()
    {
        var site = RipRelative([0xFF, 0x15], Ip, Data); // call [rip+disp]
        var (result, _) = Execute(site, Ip, NearSlot, Ret, Nothing,
            l => l.Put64(Data, Stubs).Put(Stubs, ReturnMyReturnAddress));
        Assert.Equal(Ip + 6, result);
    }

    [Fact]
    public void Call_rax_jumps_to_the_original_rax()
    {
        byte[] site = [0xFF, 0xD0]; // call rax
        var (result, _) = Execute(site, Ip, NearSlot, Ret, a => a.mov(rax, Stubs), l => l.Put(Stubs, ReturnMyReturnAddress));
        Assert.Equal(Ip + 2, result);
    }

    [Fact]
    public void Call_rsp_relative_uses_the_operand_as_it_was_before_the_push()
    {
        byte[] site = [0xFF, 0x54, 0x24, 0x08]; // call [rsp+8]
        ulong trap = Stubs + 0x100;
        var (result, _) = Execute(site, Ip, NearSlot,
            a => { a.add(rsp, 16); a.ret(); },
            a => { a.mov(r11, Stubs); a.push(r11); a.mov(r11, trap); a.push(r11); }, // [rsp+8] = Stubs, [rsp] = trap
            l => l.Put(Stubs, ReturnMyReturnAddress).Put(trap, [0xCC]));
        Assert.Equal(Ip + 4, result);
    }

    [Fact]
    public void Jmp_through_a_rip_relative_pointer()
    {
        var site = RipRelative([0xFF, 0x25], Ip, Data); // jmp [rip+disp]
        var (result, _) = Execute(site, Ip, NearSlot, Ret, Nothing,
            l => l.Put64(Data, Stubs).Put(Stubs, a => { a.mov(eax, 77); a.ret(); }));
        Assert.Equal(77UL, result);
    }

    [Fact]
    public void Ret_returns_to_the_address_on_the_stack()
    {
        byte[] site = [0xC2, 0x08, 0x00]; // ret 8
        ulong back = Stubs;
        // ret 8 pops the return address and 8 more bytes; the stub at 'back' returns to the harness.
        var (result, _) = Execute(site, Ip, NearSlot, Nothing,
            a => { a.mov(eax, 5); a.push(rax); a.mov(r11, back); a.push(r11); },
            l => l.Put(back, Ret));
        Assert.Equal(5UL, result);
    }
}
