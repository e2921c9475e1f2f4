using Iced.Intel;
using Uprec.Native;
using Uprec.Probing.Arch;

namespace Uprec.Probing.Tests.Arch;

public class EmulatorTests
{
    const ulong Ip = 0x5555_5555_5125;
    const ulong NearSlot = 0x5555_5556_0000;
    const ulong FarSlot = 0x7FFF_F7FF_0000;
    const ulong StackTop = 0x7FFF_FFFF_E000;
    const ulong Rsp = StackTop - 0x100;

    // EFLAGS bit positions from the Intel SDM, vol. 1, figure 3-8.
    const ulong CF = 1 << 0, PF = 1 << 2, ZF = 1 << 6, SF = 1 << 7, OF = 1 << 11;
    const ulong ReservedOne = 1 << 1, IF = 1 << 9;

    static user_regs_struct Regs() => new()
    {
        rip = Ip + 1, // as after the int3 stop; the emulator must not depend on it
        rsp = Rsp,
        rax = 0x1111, rbx = 0x2222, rcx = 0x3333, rdx = 0x4444, rsi = 0x5555, rdi = 0x6666, rbp = Rsp + 0x40,
        r8 = 8, r9 = 9, r10 = 10, r11 = 11, r12 = 12, r13 = 13, r14 = 14, r15 = 15,
        eflags = ReservedOne | IF,
        fs_base = 0x7FFF_F7D8_A740,
    };

    static FakeTargetMemory Stack() => new FakeTargetMemory().Map(StackTop - 0x1000, 0x1000);

    static EmulatePlan Emulated(params byte[] code) => Emulated(code, NearSlot);

    static EmulatePlan Emulated(byte[] code, ulong slot) =>
        Assert.IsType<EmulatePlan>(TrapPlanner.Plan(code, Ip, slot));

    // For instructions the planner sends out of line, the emulator is still the fallback; build its plan directly.
    static EmulatePlan Forced(params byte[] code)
    {
        var instr = Decoder.Create(64, new ByteArrayCodeReader(code), Ip, DecoderOptions.None).Decode();
        Assert.NotEqual(Code.INVALID, instr.Code);
        return new EmulatePlan(instr.Length, TrapPlanner.Format(instr), instr);
    }

    static user_regs_struct Run(EmulatePlan plan, user_regs_struct regs, ITargetMemory memory)
    {
        Assert.True(Emulator.TryExecute(plan, ref regs, memory, out var error), error);
        Assert.Null(error);
        return regs;
    }

    static void AssertOnlyChanged(user_regs_struct before, user_regs_struct after, ulong rip, ulong? rsp = null, ulong? rcx = null)
    {
        var expected = before;
        expected.rip = rip;
        expected.rsp = rsp ?? before.rsp;
        expected.rcx = rcx ?? before.rcx;
        Assert.Equal(expected, after);
    }

    // The SDM's Jcc table: condition n (low opcode nibble) is base condition n/2, negated when n is odd.
    static bool ReferenceCondition(int cc, ulong f)
    {
        bool cf = (f & CF) != 0, pf = (f & PF) != 0, zf = (f & ZF) != 0, sf = (f & SF) != 0, of = (f & OF) != 0;
        bool baseCondition = (cc >> 1) switch
        {
            0 => of,              // jo
            1 => cf,              // jb
            2 => zf,              // je
            3 => cf || zf,        // jbe
            4 => sf,              // js
            5 => pf,              // jp
            6 => sf != of,        // jl
            _ => zf || sf != of,  // jle
        };
        return baseCondition ^ ((cc & 1) == 1);
    }

    public static TheoryData<int, bool> Conditions()
    {
        var data = new TheoryData<int, bool>();
        for (int cc = 0; cc < 16; cc++)
        {
            data.Add(cc, false);
            data.Add(cc, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Conditions))]
    public void Jcc_follows_eflags_for_every_flag_combination(int cc, bool near)
    {
        byte[] code = near ? [0x0F, (byte)(0x80 + cc), 0x00, 0x10, 0x00, 0x00] : [(byte)(0x70 + cc), 0x10];
        ulong next = Ip + (ulong)code.Length;
        ulong target = next + (near ? 0x1000UL : 0x10UL);
        var plan = Emulated(code);
        int taken = 0, notTaken = 0;
        for (int combo = 0; combo < 32; combo++)
        {
            var regs = Regs();
            regs.eflags |= ((combo & 1) != 0 ? CF : 0) | ((combo & 2) != 0 ? PF : 0) | ((combo & 4) != 0 ? ZF : 0)
                | ((combo & 8) != 0 ? SF : 0) | ((combo & 16) != 0 ? OF : 0);
            bool expectTaken = ReferenceCondition(cc, regs.eflags);
            var after = Run(plan, regs, Stack());
            AssertOnlyChanged(regs, after, expectTaken ? target : next);
            if (expectTaken) taken++; else notTaken++;
        }
        Assert.True(taken > 0 && notTaken > 0, $"condition {cc:X} was never both taken and not taken");
    }

    [Theory]
    [InlineData(new byte[] { 0xEB, 0x10 }, Ip + 2 + 0x10)]
    [InlineData(new byte[] { 0xEB, 0xFE }, Ip)]
    [InlineData(new byte[] { 0xEB, 0x80 }, Ip + 2 - 0x80)]
    [InlineData(new byte[] { 0xE9, 0x00, 0x10, 0x00, 0x00 }, Ip + 5 + 0x1000)]
    [InlineData(new byte[] { 0xE9, 0xFB, 0xFF, 0xFF, 0xFF }, Ip)]
    public void Jmp_rel_sets_rip_to_the_target(byte[] code, ulong target)
    {
        var regs = Regs();
        AssertOnlyChanged(regs, Run(Emulated(code, FarSlot), regs, Stack()), target);
    }

    [Theory]
    [InlineData(new byte[] { 0xE3, 0x10 }, 0UL, true)]
    [InlineData(new byte[] { 0xE3, 0x10 }, 1UL, false)]
    [InlineData(new byte[] { 0xE3, 0x10 }, 0x1_0000_0000UL, false)]
    [InlineData(new byte[] { 0x67, 0xE3, 0x10 }, 0x1_0000_0000UL, true)]
    [InlineData(new byte[] { 0x67, 0xE3, 0x10 }, 0x1_0000_0001UL, false)]
    public void Jrcxz_and_jecxz_test_the_count_register(byte[] code, ulong rcx, bool taken)
    {
        var regs = Regs();
        regs.rcx = rcx;
        ulong next = Ip + (ulong)code.Length;
        AssertOnlyChanged(regs, Run(Emulated(code), regs, Stack()), taken ? next + 0x10 : next);
    }

    [Theory]
    // loop: decrement, branch while the count is not zero
    [InlineData(new byte[] { 0xE2, 0xF0 }, 5UL, false, 4UL, true)]
    [InlineData(new byte[] { 0xE2, 0xF0 }, 1UL, false, 0UL, false)]
    [InlineData(new byte[] { 0xE2, 0xF0 }, 0UL, false, ulong.MaxValue, true)]
    // loope: also requires ZF=1; loopne: requires ZF=0
    [InlineData(new byte[] { 0xE1, 0xF0 }, 5UL, true, 4UL, true)]
    [InlineData(new byte[] { 0xE1, 0xF0 }, 5UL, false, 4UL, false)]
    [InlineData(new byte[] { 0xE1, 0xF0 }, 1UL, true, 0UL, false)]
    [InlineData(new byte[] { 0xE0, 0xF0 }, 5UL, false, 4UL, true)]
    [InlineData(new byte[] { 0xE0, 0xF0 }, 5UL, true, 4UL, false)]
    [InlineData(new byte[] { 0xE0, 0xF0 }, 1UL, false, 0UL, false)]
    // 67h: ecx is the count, and writing it clears the upper half of rcx
    [InlineData(new byte[] { 0x67, 0xE2, 0xF0 }, 0x1_0000_0001UL, false, 0UL, false)]
    [InlineData(new byte[] { 0x67, 0xE2, 0xF0 }, 0x1_0000_0005UL, false, 4UL, true)]
    public void Loop_decrements_rcx_and_branches(byte[] code, ulong rcx, bool zf, ulong rcxAfter, bool taken)
    {
        var regs = Regs();
        regs.rcx = rcx;
        if (zf)
            regs.eflags |= ZF;
        ulong next = Ip + (ulong)code.Length;
        var after = Run(Emulated(code), regs, Stack());
        AssertOnlyChanged(regs, after, taken ? next - 0x10 : next, rcx: rcxAfter);
    }

    [Fact]
    public void Call_rel32_pushes_the_original_return_address()
    {
        var regs = Regs();
        var memory = Stack();
        var after = Run(Forced(0xE8, 0x9B, 0x01, 0x00, 0x00), regs, memory);
        AssertOnlyChanged(regs, after, Ip + 5 + 0x19B, rsp: Rsp - 8);
        Assert.Equal(Ip + 5, memory.Get64(Rsp - 8));
        Assert.Equal([Rsp - 8], memory.Writes.Select(w => w.Address));
    }

    [Fact]
    public void Call_through_the_got_reads_the_pointer_when_the_slot_is_out_of_reach()
    {
        // call [rip+10h]: the planner cannot re-encode the operand 2 GB away from the slot, so it emulates.
        var plan = Emulated([0xFF, 0x15, 0x10, 0x00, 0x00, 0x00], FarSlot);
        ulong got = Ip + 6 + 0x10;
        var memory = Stack().Map(got & ~0xFFFUL, 0x1000).Put64(got, 0x7FFF_F7E0_1234);
        var regs = Regs();
        var after = Run(plan, regs, memory);
        AssertOnlyChanged(regs, after, 0x7FFF_F7E0_1234, rsp: Rsp - 8);
        Assert.Equal(Ip + 6, memory.Get64(Rsp - 8));
    }

    [Fact]
    public void Call_rax_jumps_to_rax()
    {
        var regs = Regs();
        regs.rax = 0x4011_7700;
        var memory = Stack();
        AssertOnlyChanged(regs, Run(Forced(0xFF, 0xD0), regs, memory), 0x4011_7700, rsp: Rsp - 8);
        Assert.Equal(Ip + 2, memory.Get64(Rsp - 8));
    }

    [Fact]
    public void Call_rsp_relative_evaluates_its_operand_before_the_push()
    {
        // call [rsp+8]: the pointer is read at the old rsp+8; after the push that would be [rsp+16].
        var memory = Stack().Put64(Rsp + 8, 0xAAAA_0000).Put64(Rsp + 16, 0xBBBB_0000).Put64(Rsp, 0xCCCC_0000);
        var regs = Regs();
        var after = Run(Forced(0xFF, 0x54, 0x24, 0x08), regs, memory);
        AssertOnlyChanged(regs, after, 0xAAAA_0000, rsp: Rsp - 8);
        Assert.Equal(Ip + 4, memory.Get64(Rsp - 8));
    }

    [Fact]
    public void Call_rsp_register_jumps_to_the_old_stack_pointer()
    {
        var plan = Emulated(0xFF, 0xD4);
        var memory = Stack();
        var regs = Regs();
        AssertOnlyChanged(regs, Run(plan, regs, memory), Rsp, rsp: Rsp - 8);
        Assert.Equal(Ip + 2, memory.Get64(Rsp - 8));
    }

    [Fact]
    public void Call_through_fs_uses_the_thread_fs_base()
    {
        var regs = Regs();
        var memory = Stack().Map(regs.fs_base & ~0xFFFUL, 0x1000).Put64(regs.fs_base + 0x28, 0x5555_5555_9000);
        var after = Run(Forced(0x64, 0xFF, 0x14, 0x25, 0x28, 0x00, 0x00, 0x00), regs, memory);
        AssertOnlyChanged(regs, after, 0x5555_5555_9000, rsp: Rsp - 8);
    }

    [Fact]
    public void Call_through_a_table_uses_index_and_scale()
    {
        var regs = Regs();
        regs.rax = 3;
        var memory = Stack().Map(0x40_1000, 0x1000).Put64(0x40_1000 + 3 * 8, 0x40_2222);
        var after = Run(Forced(0xFF, 0x14, 0xC5, 0x00, 0x10, 0x40, 0x00), regs, memory);
        AssertOnlyChanged(regs, after, 0x40_2222, rsp: Rsp - 8);
    }

    [Fact]
    public void Call_with_32_bit_addressing_uses_only_eax()
    {
        var regs = Regs();
        regs.rax = 0xFFFF_FFFF_0040_1000;
        var memory = Stack().Map(0x40_1000, 0x1000).Put64(0x40_1000, 0x40_3333);
        var after = Run(Forced(0x67, 0xFF, 0x10), regs, memory);
        AssertOnlyChanged(regs, after, 0x40_3333, rsp: Rsp - 8);
    }

    [Fact]
    public void Jmp_through_the_got_reads_the_pointer_and_leaves_the_stack_alone()
    {
        var plan = Emulated([0xFF, 0x25, 0x10, 0x00, 0x00, 0x00], FarSlot);
        ulong got = Ip + 6 + 0x10;
        var memory = Stack().Map(got & ~0xFFFUL, 0x1000).Put64(got, 0x7FFF_F7E0_5678);
        var regs = Regs();
        AssertOnlyChanged(regs, Run(plan, regs, memory), 0x7FFF_F7E0_5678);
        Assert.Empty(memory.Writes);
    }

    [Theory]
    [InlineData(new byte[] { 0xC3 }, 8UL)]
    [InlineData(new byte[] { 0xC2, 0x10, 0x00 }, 8UL + 0x10)]
    public void Ret_pops_the_return_address(byte[] code, ulong popped)
    {
        var memory = Stack().Put64(Rsp, 0x5555_5555_6000);
        var regs = Regs();
        AssertOnlyChanged(regs, Run(Forced(code), regs, memory), 0x5555_5555_6000, rsp: Rsp + popped);
        Assert.Empty(memory.Writes);
    }

    [Fact]
    public void Unreadable_pointer_fails_and_changes_nothing()
    {
        var plan = Emulated([0xFF, 0x15, 0x10, 0x00, 0x00, 0x00], FarSlot);
        var memory = Stack();
        var regs = Regs();
        var before = regs;
        Assert.False(Emulator.TryExecute(plan, ref regs, memory, out var error));
        Assert.Equal(before, regs);
        Assert.Empty(memory.Writes);
        Assert.Contains((Ip + 6 + 0x10).ToString("X"), error, StringComparison.Ordinal);
    }

    [Fact]
    public void Unwritable_stack_fails_and_changes_nothing()
    {
        var memory = new FakeTargetMemory();
        var regs = Regs();
        var before = regs;
        Assert.False(Emulator.TryExecute(Forced(0xE8, 0x00, 0x00, 0x00, 0x00), ref regs, memory, out var error));
        Assert.Equal(before, regs);
        Assert.Contains("push", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Unreadable_return_address_fails_and_changes_nothing()
    {
        var regs = Regs();
        var before = regs;
        Assert.False(Emulator.TryExecute(Forced(0xC3), ref regs, new FakeTargetMemory(), out var error));
        Assert.Equal(before, regs);
        Assert.NotNull(error);
    }

    [Fact]
    public void An_instruction_outside_the_emulated_set_is_refused()
    {
        var regs = Regs();
        var before = regs;
        Assert.False(Emulator.TryExecute(Forced(0x55), ref regs, Stack(), out var error));
        Assert.Equal(before, regs);
        Assert.Contains("push rbp", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_plan_the_planner_emulates_in_the_vector_file_is_executable()
    {
        int executed = 0;
        foreach (var vector in TrapPlanVector.Load().Where(v => v.Expected == "emulate"))
        {
            var plan = Assert.IsType<EmulatePlan>(TrapPlanner.Plan(vector.Code, vector.Ip, vector.Slot));
            // The stack and the code's pages are mapped; an operand far outside them may fail to read,
            // but no planned instruction may be one the emulator does not know.
            var memory = Stack().Map(vector.Ip & ~0xFFFUL, 0x2000);
            var regs = Regs();
            if (Emulator.TryExecute(plan, ref regs, memory, out var error))
                executed++;
            else
                Assert.StartsWith("cannot read", error, StringComparison.Ordinal);
        }
        Assert.True(executed >= 40, $"only {executed} emulate rows executed");
    }
}
