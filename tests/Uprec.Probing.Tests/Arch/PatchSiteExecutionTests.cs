using System.Globalization;
using System.Text;
using Iced.Intel;
using Uprec.Probing.Arch;
using static Iced.Intel.AssemblerRegisters;

namespace Uprec.Probing.Tests.Arch;

/// <summary>
/// Runs patched functions on the real CPU inside the slot harness (slotexec.c): the function runs once as
/// it was, then its first 5 bytes become a jmp rel32 to a test trampoline (count the hit, then the code from
/// <see cref="PatchSiteAnalyzer.Relocate"/>) and it runs again. Ground truth is the CPU: the same result, and
/// exactly one counted hit per arrival at the site.
/// </summary>
public class PatchSiteExecutionTests(SlotHarness harness) : IClassFixture<SlotHarness>
{
    // PIE-like code above 4 GB with its trampoline page 256 MB away; non-PIE code below 2 GB.
    const ulong Code = 0x5B00_0000_0000;
    const ulong Tramp = Code + 0x1000_0000;
    const ulong LowCode = 0x3000_0000;
    const ulong LowTramp = 0x3100_0000;

    sealed record Run(ulong Before, ulong After, ulong Hits);

    /// <summary>
    /// Lays out <paramref name="function"/> at <paramref name="site"/> (in a 64 KB page that <paramref name="extra"/>
    /// may fill), runs <paramref name="caller"/> (which must call the site) before and after patching, and
    /// reads the trampoline's hit counter.
    /// </summary>
    Run Execute(CodeRange function, ulong site, Action<Assembler> caller, Action<StringBuilder>? extra = null)
    {
        var plan = Assert.IsType<PatchablePlan>(PatchSiteAnalyzer.Analyze(function, site, []));
        ulong page = function.Address & ~0xFFFFUL;
        ulong tramp = page < 0x1_0000_0000 ? LowTramp : Tramp;
        ulong counter = tramp + 0x800, entry = tramp + 0x400, read = tramp + 0x600;

        // Counting keeps every register and flag, and stays below the red zone, as a real trampoline must.
        var head = Assemble(tramp, a =>
        {
            a.lea(rsp, __[rsp - 128]);
            a.pushfq();
            a.push(rax);
            a.mov(rax, counter);
            a.inc(__qword_ptr[rax]);
            a.pop(rax);
            a.popfq();
            a.lea(rsp, __[rsp + 128]);
        });
        var tail = PatchSiteAnalyzer.Relocate(plan, site, tramp + (ulong)head.Length);
        var jump = Assemble(site, a => a.jmp(tramp));
        Assert.Equal(PatchSiteAnalyzer.JumpLength, jump.Length);

        var script = new StringBuilder();
        Map(script, page, 0x10000);
        Map(script, tramp, 0x10000);
        Put(script, function.Address, function.Code);
        extra?.Invoke(script);
        Put(script, tramp, [.. head, .. tail]);
        Put(script, entry, Assemble(entry, a => { caller(a); a.ret(); }));
        Put(script, read, Assemble(read, a => { a.mov(rax, counter); a.mov(rax, __qword_ptr[rax]); a.ret(); }));
        script.Append(CultureInfo.InvariantCulture, $"run {entry:x}\n");
        Put(script, site, jump);
        script.Append(CultureInfo.InvariantCulture, $"run {entry:x}\nrun {read:x}\n");

        var (exit, output) = SlotHarness.Exec(harness.Path, [], script.ToString());
        Assert.True(exit == 0, $"harness exit {exit} (negative/128+n = killed by signal n): {output}\ntrampoline tail: {SlotDisassembly.Render(tail, tramp + (ulong)head.Length)}");
        var values = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => ulong.Parse(l.Split(' ')[0]["rax=".Length..], NumberStyles.HexNumber, CultureInfo.InvariantCulture))
            .ToArray();
        Assert.Equal(3, values.Length);
        return new Run(values[0], values[1], values[2]);
    }

    static void Map(StringBuilder script, ulong address, ulong size) =>
        script.Append(CultureInfo.InvariantCulture, $"map {address:x} {size:x}\n");

    static void Put(StringBuilder script, ulong address, byte[] bytes) =>
        script.Append(CultureInfo.InvariantCulture, $"put {address:x} {Convert.ToHexString(bytes)}\n");

    static byte[] Assemble(ulong address, Action<Assembler> build) => CodeBuffer.Assemble(address, build);

    static CodeRange Function(ulong address, Action<Assembler> build) => new(address, Assemble(address, build));

    [Fact]
    public void A_loop_whose_branch_back_to_the_site_is_displaced_counts_every_iteration()
    {
        // top: dec rdi; jne top (5 bytes, both displaced); mov rax,rdi; ret
        ulong site = Code + 0x1120;
        var f = Function(site, a => { var top = a.CreateLabel(); a.Label(ref top); a.dec(rdi); a.jne(top); a.mov(rax, rdi); a.ret(); });
        var run = Execute(f, site, a => { a.mov(edi, 10); a.call(site); });
        Assert.Equal(new Run(0, 0, 10), run);
    }

    [Fact]
    public void A_loop_back_to_the_site_from_past_the_patch_counts_every_iteration()
    {
        // top: add rax,rdi; dec rdi (6 bytes displaced); jne top; ret  -> sum 1..10
        ulong site = Code + 0x1120;
        var f = Function(site, a => { var top = a.CreateLabel(); a.Label(ref top); a.add(rax, rdi); a.dec(rdi); a.jne(top); a.ret(); });
        var run = Execute(f, site, a => { a.xor(eax, eax); a.mov(edi, 10); a.call(site); });
        Assert.Equal(new Run(55, 55, 10), run);
    }

    [Fact]
    public void A_displaced_loop_instruction_reaches_the_site_from_the_trampoline()
    {
        // top: add rax,1 (4 bytes); loop top (2): both displaced, so every iteration goes through the trampoline.
        // loop has only a rel8 form, which cannot reach the site 256 MB away: BlockEncoder rewrites it.
        ulong site = Code + 0x1120;
        var f = Function(site, a => { var top = a.CreateLabel(); a.Label(ref top); a.add(rax, 1); a.loop(top); a.ret(); });
        var run = Execute(f, site, a => { a.xor(eax, eax); a.mov(ecx, 7); a.call(site); });
        Assert.Equal(new Run(7, 7, 7), run);
    }

    [Fact]
    public void Real_gcc_loop_with_endbr64_gives_the_same_result()
    {
        var fixture = PatchSiteFixture.All["cet:loop_back"];
        ulong site = Code + fixture.Address;
        var f = new CodeRange(site, Convert.FromHexString(fixture.Hex));
        var run = Execute(f, site, a => { a.mov(edi, 1000); a.call(site); });
        Assert.Equal(run.Before, run.After);
        Assert.NotEqual(0UL, run.Before);
        Assert.Equal(1UL, run.Hits);
    }

    [Fact]
    public void Real_gcc_call_in_the_patch_returns_to_the_original_address()
    {
        // call_first: sub rsp,8; call ext@plt; add rsp,8; add eax,1; ret. The stand-in for ext returns its
        // own return address, so the result is (low 32 bits of) the return address + 1.
        var fixture = PatchSiteFixture.All["call_first"];
        ulong site = Code + fixture.Address;
        var f = new CodeRange(site, Convert.FromHexString(fixture.Hex));
        ulong ext = Code + 0x1010;
        var run = Execute(f, site, a => { a.mov(edi, 1); a.call(site); },
            s => Put(s, ext, Assemble(ext, a => { a.mov(rax, __qword_ptr[rsp]); a.ret(); })));
        Assert.Equal((ulong)(uint)(site + 9 + 1), run.Before);
        Assert.Equal(run.Before, run.After);
        Assert.Equal(1UL, run.Hits);
    }

    public static TheoryData<string, ulong> CallSites() => new()
    {
        { "PIE: lea/push/mov/pop carries the return address", Code + 0x1120 },
        { "non-PIE: push imm32", LowCode + 0x1120 },
    };

    [Theory]
    [MemberData(nameof(CallSites))]
    public void A_displaced_call_keeps_rax_and_flags(string layout, ulong site)
    {
        ulong target = (site & ~0xFFFFUL) + 0x4000;
        // call target (the whole patch); then rax<<8 | CF, which the call must not have changed.
        var f = Function(site, a => { a.call(target); a.setb(cl); a.shl(rax, 8); a.or(al, cl); a.ret(); });
        var run = Execute(f, site, a => { a.mov(rax, 0x00AB_CDEF_0123_4567UL); a.stc(); a.call(site); },
            s => Put(s, target, [0xC3]));
        Assert.True(run == new Run(0xABCD_EF01_2345_6701UL, 0xABCD_EF01_2345_6701UL, 1), $"{layout}: {run}");
    }

    [Fact]
    public void An_indirect_call_through_the_stack_reads_the_operand_as_before_the_push()
    {
        ulong site = Code + 0x1120;
        ulong target = Code + 0x4000;
        // push target; mov rax,rdi... : 'push rdi (1); nop; nop; call [rsp] (3)' returns at +5; pop rcx; ret.
        var f = Function(site, a => { a.push(rdi); a.nop(); a.call(__qword_ptr[rsp]); a.pop(rcx); a.ret(); });
        var run = Execute(f, site, a => { a.mov(rdi, target); a.call(site); },
            s => Put(s, target, Assemble(target, a => { a.mov(rax, __qword_ptr[rsp]); a.ret(); })));
        Assert.Equal(new Run(site + 5, site + 5, 1), run);
    }

    [Fact]
    public void Real_gcc_tail_call_through_the_got_reaches_the_same_function()
    {
        // endbr64; mov rax,[rip+got]; jmp [rax]: the GOT entry points at a pointer to a function returning 77.
        var fixture = PatchSiteFixture.All["cet:tail_got"];
        ulong site = Code + fixture.Address;
        var f = new CodeRange(site, Convert.FromHexString(fixture.Hex));
        var plan = Assert.IsType<PatchablePlan>(PatchSiteAnalyzer.Analyze(f, site, []));
        ulong got = plan.Displaced[1].IPRelativeMemoryAddress;
        ulong hook = Code + 0x5000, callee = Code + 0x6000;
        var run = Execute(f, site, a => { a.call(site); }, s =>
        {
            Put(s, got, BitConverter.GetBytes(hook));
            Put(s, hook, BitConverter.GetBytes(callee));
            Put(s, callee, Assemble(callee, a => { a.mov(eax, 77); a.ret(); }));
        });
        Assert.Equal(new Run(77, 77, 1), run);
    }
}
