using Iced.Intel;
using Uprec.Probing.Arch;
using static Iced.Intel.AssemblerRegisters;

namespace Uprec.Probing.Tests.Arch;

/// <summary>One function of real compiler output (see patchsite_fixtures.c), with its .cold fragment if it has one.</summary>
public sealed record PatchSiteFixture(string Name, ulong Address, string Hex, ulong ColdAddress = 0, string ColdHex = "")
{
    // Where a PIE's first page lands at run time; vectors keep link-time addresses and add it.
    public const ulong LoadBias = 0x5555_5555_4000;

    public CodeRange Range => new(LoadBias + Address, Convert.FromHexString(Hex));
    public IReadOnlyList<CodeRange> Related => ColdHex.Length == 0 ? [] : [new(LoadBias + ColdAddress, Convert.FromHexString(ColdHex))];

    /// <summary>gcc 12.2 -O2 -fPIC, from patchsite_fixtures.c; "cet:" names were built with -fcf-protection=full (endbr64).</summary>
    public static readonly IReadOnlyDictionary<string, PatchSiteFixture> All = new[]
    {
        new PatchSiteFixture("four", 0x1040, "8D4701C3"),
        new PatchSiteFixture("framed", 0x1050, "554889E54881EC0001000085FF7E2131C00F1F80000000004863D088841500FFFFFF83C00139C77E073DFF0000007EE8400FB6FF0FBEBC3D00FFFFFFE87FFFFFFF89C20FBE8503FFFFFFC901D0C3"),
        new PatchSiteFixture("loop_back", 0x109E, "31C04889C248C1FA034831FA4801D048FFCF75EEC3"),
        new PatchSiteFixture("loop_head", 0x11F0, "31C0660F1F440000488D147F4883EF014801D04885FF7FF0C3"),
        new PatchSiteFixture("sw", 0x10C0, "4883EC0883FF060F8763FFFFFF488D152C0F000089FF486304BA4801D0FFE090B84D0000004883C408C3660F1F440000BF10000000E816FFFFFF4883C408C1E002C3660F1F440000BF0A0000004883C408E9FAFEFFFF662E0F1F840000000000BF0B000000E8E6FEFFFF4883C40883C003C3660F1F440000BF0C000000E8CEFEFFFF4883C4088D0480C3660F1F440000BF03000000E8B6FEFFFF4883C40883E807C3660F1F440000BF0E000000E89EFEFFFF4883C40883F009C3",
            0x1030, "83C8FFE9AD000000"),
        new PatchSiteFixture("tail_rip", 0x1180, "FF258A2E0000"),
        new PatchSiteFixture("tail_got", 0x1190, "488B05492E0000FF20"),
        new PatchSiteFixture("tail_pop", 0x11A0, "554889E541545389FBE872FEFFFF89DF4989C4E858FEFFFF8D3C035B4C89E0415C5DFFE0"),
        new PatchSiteFixture("call_first", 0x11D0, "4883EC08E837FEFFFF4883C40883C001C3"),
        new PatchSiteFixture("cet:four", 0x1060, "F30F1EFA8D4701C3"),
        new PatchSiteFixture("cet:framed", 0x1070, "F30F1EFA554889E54881EC0001000085FF7E1D31C00F1F004863D088841500FFFFFF83C00139C77E073DFF0000007EE8400FB6FF0FBEBC3D00FFFFFFE87FFFFFFF89C20FBE8503FFFFFFC901D0C3"),
        new PatchSiteFixture("cet:loop_back", 0x10BE, "F30F1EFA31C04889C248C1FA034831FA4801D048FFCF75EEC3"),
        new PatchSiteFixture("cet:sw", 0x10E0, "F30F1EFA4883EC0883FF060F875FFFFFFF488D15080F000089FF486304BA4801D03EFFE00F1F4000B84D0000004883C408C3660F1F440000BF10000000E80EFFFFFF4883C408C1E002C3660F1F440000BF0A0000004883C408E9F2FEFFFF6690BF0B000000E8E6FEFFFF4883C40883C003C3660F1F440000BF0C000000E8CEFEFFFF4883C4088D0480C3660F1F440000BF03000000E8B6FEFFFF4883C40883E807C3660F1F440000BF0E000000E89EFEFFFF4883C40883F009C3",
            0x1050, "83C8FFE9B5000000"),
        new PatchSiteFixture("cet:tail_rip", 0x11A0, "F30F1EFAFF25662E0000"),
        new PatchSiteFixture("cet:tail_got", 0x11B0, "F30F1EFA488B05252E0000FF20"),
        new PatchSiteFixture("cet:call_first", 0x11F0, "F30F1EFA4883EC08E833FEFFFF4883C40883C001C3"),
    }.ToDictionary(f => f.Name);
}

public class PatchSiteAnalyzerTests
{
    // "patch N": accepted, N bytes displaced. "refuse: words": refused with a reason containing the words.
    public static TheoryData<string, string> CompiledVectors() => new()
    {
        { "four", "refuse: function too short for a 5-byte jump" },
        { "cet:four", "patch 7" },                         // endbr64; lea eax,[rdi+1]: the ret stays in place
        { "framed", "patch 11" },                          // push rbp; mov rbp,rsp; sub rsp,100h
        { "cet:framed", "patch 5" },                       // endbr64; push rbp
        { "loop_back", "refuse: a branch in the function (jne" }, // xor eax,eax, then a loop head at byte 2
        { "cet:loop_back", "patch 6" },                    // endbr64 moves the loop head to byte 6
        { "loop_head", "patch 8" },                        // the loop head at byte 8 is not overwritten
        { "sw", "refuse: indirect jump that is not a tail call" },
        { "cet:sw", "refuse: indirect jump that is not a tail call" }, // notrack jmp rax
        { "tail_rip", "patch 6" },                         // jmp [rip+local_hook]
        { "cet:tail_rip", "patch 10" },
        { "tail_got", "patch 7" },                         // mov rax,[rip+got]; jmp [rax]
        { "cet:tail_got", "patch 11" },
        { "tail_pop", "patch 6" },                         // ...pop r12; pop rbp; jmp rax
        { "call_first", "patch 9" },                       // sub rsp,8; call ext@plt
        { "cet:call_first", "patch 8" },                   // endbr64; sub rsp,8
    };

    [Theory]
    [MemberData(nameof(CompiledVectors))]
    public void Compiled_function_entry(string name, string expected)
    {
        var f = PatchSiteFixture.All[name];
        var decision = PatchSiteAnalyzer.Analyze(f.Range, f.Range.Address, f.Related);
        AssertDecision(expected, decision, f.Range, f.Range.Address);
    }

    [Fact]
    public void The_loop_head_reason_names_the_byte()
    {
        var f = PatchSiteFixture.All["loop_back"];
        var refused = Assert.IsType<RefusedPatch>(PatchSiteAnalyzer.Analyze(f.Range, f.Range.Address, f.Related));
        Assert.EndsWith("targets byte 2 of the patch", refused.Reason, StringComparison.Ordinal);
    }

    static void AssertDecision(string expected, PatchDecision decision, CodeRange function, ulong site)
    {
        if (expected.StartsWith("refuse: ", StringComparison.Ordinal))
        {
            var refused = Assert.IsType<RefusedPatch>(decision);
            Assert.Contains(expected["refuse: ".Length..], refused.Reason, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', refused.Reason);
            Assert.True(char.IsLower(refused.Reason[0]) && !refused.Reason.EndsWith('.'), $"not a lower-case phrase: {refused.Reason}");
            return;
        }
        var plan = Assert.IsType<PatchablePlan>(decision);
        Assert.Equal(expected, $"patch {plan.DisplacedLength}");
        AssertPlanIsWholeInstructions(plan, function, site);
    }

    // The plan's instructions are the function's own, contiguous from the site, and cover at least the jmp.
    static void AssertPlanIsWholeInstructions(PatchablePlan plan, CodeRange function, ulong site)
    {
        Assert.InRange(plan.DisplacedLength, PatchSiteAnalyzer.JumpLength, PatchSiteAnalyzer.JumpLength + 14);
        ulong ip = site;
        foreach (var instr in plan.Displaced)
        {
            Assert.Equal(ip, instr.IP);
            int offset = (int)(ip - function.Address);
            var redecoded = Decoder.Create(64, new ByteArrayCodeReader(function.Code, offset, function.Code.Length - offset), ip).Decode();
            Assert.Equal(redecoded.Code, instr.Code);
            ip = instr.NextIP;
        }
        Assert.Equal(site + (ulong)plan.DisplacedLength, ip);
        Assert.True(ip <= function.End, "the displaced instructions run past the function");
    }

    // ---- hand-assembled functions: one rule per case ----

    const ulong Pie = 0x5555_5555_5120;
    const ulong NonPie = 0x40_1120;

    static CodeRange Asm(ulong address, Action<Assembler> build)
    {
        return new CodeRange(address, CodeBuffer.Assemble(address, build));
    }

    static PatchDecision Analyze(CodeRange function, params CodeRange[] related) =>
        PatchSiteAnalyzer.Analyze(function, function.Address, related);

    // nop * k, then a loop whose head is byte k: k in 1..4 lands inside the jmp, 0 is the site itself, 5+ is past it.
    static CodeRange LoopWithHeadAt(int k) => Asm(Pie, a =>
    {
        for (int i = 0; i < k; i++)
            a.nop();
        var head = a.CreateLabel();
        a.Label(ref head);
        a.add(rax, rdi);
        a.dec(rdi);
        a.jne(head);
        a.ret();
    });

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void A_loop_back_to_bytes_1_to_4_is_refused(int k)
    {
        var refused = Assert.IsType<RefusedPatch>(Analyze(LoopWithHeadAt(k)));
        Assert.Contains($"targets byte {k} of the patch", refused.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, 6)] // add rax,rdi; dec rdi: the jne back to the site stays outside, and arrives at the jmp
    [InlineData(5, 5)] // five nops; the loop head at site+5 is left untouched
    [InlineData(6, 5)] // six nops: the patch takes five of them
    public void A_loop_back_to_the_site_or_past_the_jump_is_accepted(int k, int displaced)
    {
        var plan = Assert.IsType<PatchablePlan>(Analyze(LoopWithHeadAt(k)));
        Assert.Equal(displaced, plan.DisplacedLength);
    }

    [Fact]
    public void A_jump_to_the_site_inside_the_displaced_bytes_is_accepted()
    {
        // sub rdi,1 (4 bytes); jne site: the loop's own branch is displaced.
        var f = Asm(Pie, a => { var top = a.CreateLabel(); a.Label(ref top); a.sub(rdi, 1); a.jne(top); a.ret(); });
        var plan = Assert.IsType<PatchablePlan>(Analyze(f));
        Assert.Equal(6, plan.DisplacedLength);
    }

    [Fact]
    public void A_cold_fragment_jumping_into_the_patch_is_refused_and_one_jumping_past_it_is_not()
    {
        var f = Asm(Pie, a => { a.push(rbx); a.mov(ebx, edi); a.xor(eax, eax); a.pop(rbx); a.ret(); });
        var into = Asm(Pie - 0x1000, a => { a.or(eax, -1); a.jmp(Pie + 3); });
        var past = Asm(Pie - 0x1000, a => { a.or(eax, -1); a.jmp(Pie + 5); });
        var refused = Assert.IsType<RefusedPatch>(Analyze(f, into));
        Assert.Contains("a branch in a .cold fragment", refused.Reason, StringComparison.Ordinal);
        Assert.Contains("targets byte 3 of the patch", refused.Reason, StringComparison.Ordinal);
        Assert.IsType<PatchablePlan>(Analyze(f, past));
        Assert.IsType<PatchablePlan>(Analyze(f));
    }

    [Fact]
    public void An_undecodable_cold_fragment_is_refused()
    {
        var f = Asm(Pie, a => { a.push(rbx); a.mov(ebx, edi); a.xor(eax, eax); a.pop(rbx); a.ret(); });
        var refused = Assert.IsType<RefusedPatch>(Analyze(f, new CodeRange(Pie - 0x1000, [0x0F, 0x0B, 0x06])));
        Assert.Equal("cannot decode a .cold fragment of the function", refused.Reason);
    }

    [Fact]
    public void A_call_returning_inside_the_jump_is_refused()
    {
        var f = Asm(Pie, a => { a.call(rdi); a.add(eax, 1); a.ret(); }); // call rdi is 2 bytes
        var refused = Assert.IsType<RefusedPatch>(Analyze(f));
        Assert.Equal("a call in the patch returns to byte 2 of the patch", refused.Reason);
    }

    [Fact]
    public void A_function_that_returns_within_its_first_bytes_is_refused()
    {
        var f = Asm(Pie, a => { a.xor(eax, eax); a.ret(); a.nop(); a.nop(); a.nop(); });
        var refused = Assert.IsType<RefusedPatch>(Analyze(f));
        Assert.Equal("the function leaves within its first 3 bytes", refused.Reason);
    }

    [Fact]
    public void A_tail_jump_of_exactly_five_bytes_is_displaced_alone()
    {
        var f = Asm(Pie, a => { a.jmp(Pie + 0x2000); a.int3(); a.int3(); });
        var plan = Assert.IsType<PatchablePlan>(Analyze(f));
        Assert.Equal(5, plan.DisplacedLength);
        // Nothing follows a jmp: no jump back after it.
        Assert.Equal([$"jmp {Pie + 0x2000:X}h"], Disassemble(PatchSiteAnalyzer.Relocate(plan, Pie, Pie + 0x100_0000), Pie + 0x100_0000));
    }

    public static TheoryData<string, string> RefusedInstructions() => new()
    {
        { "0F05909090C3", "a syscall (syscall)" },
        { "CC9090909090C3", "int3" },
        { "CD80909090C3", "a software interrupt" },
        { "0F0B90909090", "an undefined instruction" },
        { "F4909090909090C3", "a privileged instruction" },
        { "C7F8100000009090C3", "transactional memory" },   // xbegin
    };

    [Theory]
    [MemberData(nameof(RefusedInstructions))]
    public void Instructions_that_cannot_run_in_a_trampoline_are_refused(string hex, string words)
    {
        var f = new CodeRange(Pie, Convert.FromHexString(hex));
        var refused = Assert.IsType<RefusedPatch>(Analyze(f));
        Assert.Contains(words, refused.Reason, StringComparison.Ordinal);
        Assert.Contains("cannot run in a trampoline", refused.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Locked_and_endbr64_instructions_are_displaced()
    {
        var f = Asm(Pie, a => { a.endbr64(); a.@lock.add(__dword_ptr[rdi], eax); a.ret(); });
        Assert.Equal(7, Assert.IsType<PatchablePlan>(Analyze(f)).DisplacedLength);
    }

    [Fact]
    public void The_site_must_start_an_instruction_inside_the_function()
    {
        var f = Asm(Pie, a => { a.mov(eax, 1); a.add(eax, edi); a.add(eax, edi); a.ret(); });
        var inside = Assert.IsType<RefusedPatch>(PatchSiteAnalyzer.Analyze(f, Pie + 2, []));
        Assert.Equal("the probe address is inside an instruction, not at its start", inside.Reason);
        var outside = Assert.IsType<RefusedPatch>(PatchSiteAnalyzer.Analyze(f, Pie + 0x100, []));
        Assert.Equal("the probe address is outside the function", outside.Reason);
        var near = Assert.IsType<RefusedPatch>(PatchSiteAnalyzer.Analyze(f, f.End - 3, []));
        Assert.Equal("function too short for a 5-byte jump", near.Reason);
        // A site at an inner boundary with enough bytes after it is fine.
        Assert.Equal(5, Assert.IsType<PatchablePlan>(PatchSiteAnalyzer.Analyze(f, Pie + 5, [])).DisplacedLength);
    }

    [Theory]
    [InlineData("FFFF9090909090C3")]   // an invalid opcode before the site
    [InlineData("909090909090C3FFFF")] // after it: the linear decode beyond is not to be trusted
    [InlineData("909090909090C3488B")] // truncated at the end
    public void Undecodable_functions_are_refused(string hex)
    {
        var f = new CodeRange(Pie, Convert.FromHexString(hex));
        var refused = Assert.IsType<RefusedPatch>(PatchSiteAnalyzer.Analyze(f, Pie + 2, []));
        Assert.Equal("cannot decode the function", refused.Reason);
    }

    public static TheoryData<string, string, bool> IndirectJumps() => new()
    {
        { "frameless jmp rax", "mov rax,[rdi]; jmp rax", false },
        { "frameless jmp [rax+8] (a virtual call)", "mov rax,[rdi]; jmp [rax+8]", false },
        { "pop rbx; jmp rax", "pop rbx; jmp rax", true },
        { "leave; jmp rax", "leave; jmp rax", true },
        { "add rsp,8; jmp rax", "add rsp,8; jmp rax", true },
        { "add rsp,8; notrack jmp rax", "add rsp,8; notrack jmp rax", false },
        { "pop rbx; jmp [rax*8+table] (an indexed table)", "pop rbx; jmp [table]", false },
        { "table load before an early epilogue", "movsxd rax,[rdx+rax*4]; add rax,rdx; pop rbx; jmp rax", false },
        { "jmp [rip+x]", "jmp [rip]", true },
        { "mov rax,[rip+got]; jmp [rax]", "mov rax,[rip]; jmp [rax]", true },
        { "mov rsp,rcx; pop rcx; jmp rcx (the unwinder installing a handler's frame)", "mov rsp,rcx; pop rcx; jmp rcx", true },
        { "mov rsp,rcx; pop rdx; pop rcx; jmp rcx (rsp replaced earlier than two instructions back)", "mov rsp,rcx; pop rdx; pop rcx; jmp rcx", false },
        { "mov rsp,[rcx]; pop rcx; jmp rcx (rsp loaded from memory)", "mov rsp,[rcx]; pop rcx; jmp rcx", false },
    };

    [Theory]
    [MemberData(nameof(IndirectJumps))]
    public void Indirect_jumps_are_accepted_only_as_tail_calls(string name, string code, bool accepted)
    {
        // A 6-byte prologue, then the tail (mid-function, where a jump table would sit).
        var f = Asm(Pie, a =>
        {
            a.push(rbx);
            a.mov(rbx, rdi);
            a.test(edi, edi);
            a.je(Pie + 0x40);
            switch (code)
            {
                case "mov rax,[rdi]; jmp rax": a.mov(rax, __qword_ptr[rdi]); a.jmp(rax); break;
                case "mov rax,[rdi]; jmp [rax+8]": a.mov(rax, __qword_ptr[rdi]); a.jmp(__qword_ptr[rax + 8]); break;
                case "pop rbx; jmp rax": a.pop(rbx); a.jmp(rax); break;
                case "leave; jmp rax": a.leave(); a.jmp(rax); break;
                case "add rsp,8; jmp rax": a.add(rsp, 8); a.jmp(rax); break;
                case "add rsp,8; notrack jmp rax": a.add(rsp, 8); a.notrack.jmp(rax); break;
                case "pop rbx; jmp [table]": a.pop(rbx); a.jmp(__qword_ptr[rax * 8 + 0x60_2000]); break;
                case "movsxd rax,[rdx+rax*4]; add rax,rdx; pop rbx; jmp rax":
                    a.movsxd(rax, __dword_ptr[rdx + rax * 4]); a.add(rax, rdx); a.pop(rbx); a.jmp(rax); break;
                case "jmp [rip]": a.pop(rbx); a.db(0xFF, 0x25, 0x00, 0x10, 0x00, 0x00); break;
                case "mov rax,[rip]; jmp [rax]": a.pop(rbx); a.db(0x48, 0x8B, 0x05, 0x00, 0x10, 0x00, 0x00); a.jmp(__qword_ptr[rax]); break;
                case "mov rsp,rcx; pop rcx; jmp rcx": a.mov(rsp, rcx); a.pop(rcx); a.jmp(rcx); break;
                case "mov rsp,rcx; pop rdx; pop rcx; jmp rcx": a.mov(rsp, rcx); a.pop(rdx); a.pop(rcx); a.jmp(rcx); break;
                case "mov rsp,[rcx]; pop rcx; jmp rcx": a.mov(rsp, __qword_ptr[rcx]); a.pop(rcx); a.jmp(rcx); break;
                default: throw new ArgumentException(code);
            }
            a.int3();
        });
        var decision = Analyze(f);
        if (accepted)
            Assert.True(decision is PatchablePlan, $"{name}: {decision}");
        else
            Assert.Contains("indirect jump that is not a tail call", Assert.IsType<RefusedPatch>(decision).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Taking_the_address_of_a_byte_inside_the_jump_is_refused()
    {
        // lea rax,[rip+site+2] (a computed-goto label, &&l, in PIC code)
        byte[] lea = [0x48, 0x8D, 0x05, 0xF6, 0xFF, 0xFF, 0xFF]; // at site+5, so rip+disp = site+12-10
        var f = new CodeRange(Pie, [0x90, 0x90, 0x90, 0x90, 0x90, .. lea, 0xC3]);
        var refused = Assert.IsType<RefusedPatch>(Analyze(f));
        Assert.Contains("takes the address of byte 2 of the patch", refused.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_rip_relative_operand_at_the_edge_of_reach_is_refused_by_analyze_not_only_by_relocate()
    {
        // mov rax,[rip+7FFF0000h]: reachable from the site, not from a trampoline 256 MB above it.
        var f = new CodeRange(Pie, [0x48, 0x8B, 0x05, 0x00, 0x00, 0xFF, 0x7F, 0xC3]);
        var refused = Assert.IsType<RefusedPatch>(Analyze(f));
        Assert.Contains("cannot be relocated near the site", refused.Reason, StringComparison.Ordinal);
    }

    // ---- Relocate: the trampoline tail, decoded back ----

    static List<string> Disassemble(byte[] code, ulong at)
    {
        var list = new List<string>();
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), at);
        while (decoder.IP < at + (ulong)code.Length)
        {
            var instr = decoder.Decode();
            Assert.False(instr.IsInvalid, $"invalid code in the relocation at {instr.IP:X}");
            list.Add(TrapPlanner.Format(instr));
        }
        return list;
    }

    static List<Instruction> Decode(byte[] code, ulong at)
    {
        var list = new List<Instruction>();
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), at);
        while (decoder.IP < at + (ulong)code.Length)
            list.Add(decoder.Decode());
        return list;
    }

    static PatchablePlan Plan(PatchSiteFixture f) =>
        Assert.IsType<PatchablePlan>(PatchSiteAnalyzer.Analyze(f.Range, f.Range.Address, f.Related));

    [Fact]
    public void A_displaced_call_pushes_the_original_return_address_and_jumps_to_the_original_target()
    {
        var f = PatchSiteFixture.All["call_first"];
        ulong site = f.Range.Address, at = site + 0x20_0000;
        var plan = Plan(f);
        var original = plan.Displaced[1];
        Assert.True(original.IsCallNear);

        var code = Decode(PatchSiteAnalyzer.Relocate(plan, site, at), at);
        Assert.Equal(
            ["sub rsp,8", "lea rsp,[rsp-8]", "push rax", $"mov rax,{site + 9:X}h", "mov [rsp+8],rax", "pop rax",
             $"jmp {original.NearBranch64:X}h", $"jmp {site + 9:X}h"],
            code.Select(i => TrapPlanner.Format(i)));
        Assert.Equal(site + 9, code[3].GetImmediate(1));
        Assert.Equal(original.NearBranch64, code[6].NearBranch64);
        Assert.Equal(site + (ulong)plan.DisplacedLength, code[^1].NearBranch64);
    }

    [Fact]
    public void A_displaced_call_below_2_GB_pushes_an_immediate()
    {
        var f = Asm(NonPie, a => { a.call(NonPie + 0x3000); a.add(eax, 1); a.ret(); });
        var plan = Assert.IsType<PatchablePlan>(Analyze(f));
        Assert.Equal(["push 401125h", $"jmp {NonPie + 0x3000:X}h", "jmp 401125h"],
            Disassemble(PatchSiteAnalyzer.Relocate(plan, NonPie, NonPie + 0x10_0000), NonPie + 0x10_0000));
    }

    public static TheoryData<string, string> IndirectCalls() => new()
    {
        { "FFD3", "jmp rbx" },                       // call rbx
        { "FF542410", "jmp qword ptr [rsp+18h]" },   // call [rsp+10h]: read 8 bytes lower after the push
        { "FF5708", "jmp qword ptr [rdi+8]" },       // call [rdi+8]
        { "FF1500100000", $"jmp qword ptr [{Pie + 3 + 6 + 0x1000:X}h]" }, // call [rip+1000h]: same absolute pointer
    };

    [Theory]
    [MemberData(nameof(IndirectCalls))]
    public void Indirect_calls_push_the_original_return_address_then_jump_through_the_same_operand(string hex, string jump)
    {
        // mov rax,rdi first, so that the call returns at or past site+5.
        var call = Convert.FromHexString(hex);
        var f = new CodeRange(Pie, [0x48, 0x89, 0xF8, .. call, 0x90, 0xC3]);
        var plan = Assert.IsType<PatchablePlan>(Analyze(f));
        ulong back = Pie + (ulong)plan.DisplacedLength;
        ulong at = Pie + 0x100_0000;
        var text = Disassemble(PatchSiteAnalyzer.Relocate(plan, Pie, at), at);
        Assert.Equal(["mov rax,rdi", "lea rsp,[rsp-8]", "push rax", $"mov rax,{back:X}h", "mov [rsp+8],rax", "pop rax", jump],
            text.Take(7));
        Assert.Equal($"jmp {back:X}h", text[^1]);
    }

    [Fact]
    public void Rip_relative_operands_keep_their_absolute_address()
    {
        var f = PatchSiteFixture.All["cet:tail_got"];
        ulong site = f.Range.Address;
        var plan = Plan(f);
        ulong target = plan.Displaced[1].IPRelativeMemoryAddress;
        foreach (var at in new[] { site + 0x7000_0000, site - 0x7000_0000, site + 0x40 })
        {
            var code = Decode(PatchSiteAnalyzer.Relocate(plan, site, at), at);
            Assert.Equal(Code.Endbr64, code[0].Code);
            Assert.Equal(target, code[1].IPRelativeMemoryAddress);
            Assert.Equal(site + 11, code[^1].NearBranch64);
        }
    }

    [Fact]
    public void A_trampoline_out_of_reach_of_a_rip_relative_operand_is_an_argument_exception()
    {
        var f = PatchSiteFixture.All["tail_got"];
        var plan = Plan(f);
        var error = Assert.Throws<ArgumentException>(() => PatchSiteAnalyzer.Relocate(plan, f.Range.Address, f.Range.Address + 0x1_0000_0000));
        Assert.Contains("cannot place the 7 displaced bytes", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_branch_to_the_site_leaves_the_trampoline_for_the_site()
    {
        // sub rdi,1; jne site: relocated, the jne must reach the site's jmp (a new hit), not loop inside the copy.
        var f = Asm(Pie, a => { var top = a.CreateLabel(); a.Label(ref top); a.sub(rdi, 1); a.jne(top); a.ret(); });
        var plan = Assert.IsType<PatchablePlan>(Analyze(f));
        ulong at = Pie + 0x100_0000;
        var code = Decode(PatchSiteAnalyzer.Relocate(plan, Pie, at), at);
        Assert.Equal(Mnemonic.Jne, code[1].Mnemonic);
        Assert.Equal(Pie, code[1].NearBranch64);
        Assert.Equal(Pie + 6, code[^1].NearBranch64);
    }

    [Fact]
    public void Far_branches_are_relocated_through_a_literal()
    {
        // A jcc in the patch whose target is over 2 GB from the trampoline.
        var f = Asm(Pie, a => { a.test(edi, edi); a.jne(Pie + 0x40); a.nop(); a.ret(); });
        var plan = Assert.IsType<PatchablePlan>(Analyze(f));
        ulong at = Pie + 0x1_0000_0000;
        var text = SlotDisassembly.Render(PatchSiteAnalyzer.Relocate(plan, Pie, at), at);
        // test; je over a jmp through a literal holding the jne's target; nop; jmp back (through a literal too).
        Assert.StartsWith("test edi,edi; je ", text, StringComparison.Ordinal);
        Assert.Contains($"dq {Pie + 0x40:X}h", text, StringComparison.Ordinal);
        Assert.Contains($"dq {Pie + (ulong)plan.DisplacedLength:X}h", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Relocate_refuses_a_plan_that_does_not_start_at_the_site()
    {
        var f = PatchSiteFixture.All["framed"];
        var plan = Plan(f);
        Assert.Throws<ArgumentException>(() => PatchSiteAnalyzer.Relocate(plan, f.Range.Address + 1, f.Range.Address + 0x1000));
    }

    [Fact]
    public void Every_accepted_vector_relocates_anywhere_within_the_proven_reach()
    {
        foreach (var f in PatchSiteFixture.All.Values)
        {
            if (PatchSiteAnalyzer.Analyze(f.Range, f.Range.Address, f.Related) is not PatchablePlan plan)
                continue;
            ulong site = f.Range.Address;
            foreach (var at in new[] { site + PatchSiteAnalyzer.ProvenReach, site - PatchSiteAnalyzer.ProvenReach, site + 0x1000 })
            {
                var code = Decode(PatchSiteAnalyzer.Relocate(plan, site, at), at);
                Assert.All(code, i => Assert.False(i.IsInvalid));
                var last = code[^1];
                if (plan.Displaced[^1].FlowControl is FlowControl.Next or FlowControl.Call or FlowControl.ConditionalBranch)
                    Assert.Equal(site + (ulong)plan.DisplacedLength, last.NearBranch64);
            }
        }
    }
}
