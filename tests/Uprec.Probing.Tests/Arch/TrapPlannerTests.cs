using Iced.Intel;
using Uprec.Probing.Arch;

namespace Uprec.Probing.Tests.Arch;

public class TrapPlannerTests
{
    // Primitive columns so that every row is its own test case, named by its line in the file.
    public static TheoryData<int, string, string, string, string> Vectors()
    {
        var data = new TheoryData<int, string, string, string, string>();
        foreach (var v in TrapPlanVector.Load())
            data.Add(v.Line, Convert.ToHexString(v.Code), v.Ip.ToString("X"), v.Slot.ToString("X"), v.Expected);
        return data;
    }

    [Fact]
    public void Vector_file_is_not_empty()
    {
        Assert.True(TrapPlanVector.Load().Count() >= 100, "the vector file lost its rows");
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Plan_matches_vector(int line, string bytes, string ip, string slot, string expected)
    {
        var vector = TrapPlanVector.Load().Single(v => v.Line == line);
        Assert.Equal((bytes, ip, slot, expected), (Convert.ToHexString(vector.Code), vector.Ip.ToString("X"), vector.Slot.ToString("X"), vector.Expected));
        var plan = TrapPlanner.Plan(vector.Code, vector.Ip, vector.Slot);
        var actual = TrapPlanVector.Describe(plan, vector.Slot);

        // "unsupported" alone accepts any reason; "unsupported: words" requires the reason to contain them.
        if (vector.Expected.StartsWith("unsupported", StringComparison.Ordinal))
        {
            var unsupported = Assert.IsType<UnsupportedPlan>(plan);
            var words = vector.Expected["unsupported".Length..].TrimStart(':').Trim();
            Assert.Contains(words, unsupported.Reason, StringComparison.Ordinal);
            return;
        }
        Assert.Equal(vector.Expected, actual);
        Assert.Equal(DecodedLength(vector), plan.Length);
        Assert.False(string.IsNullOrEmpty(plan.Instruction));
        if (plan is OutOfLinePlan outOfLine)
            Assert.InRange(outOfLine.SlotCode.Length, 1, TrapPlanner.SlotSize);
        if (plan is EmulatePlan emulate)
            Assert.Equal(vector.Ip, emulate.Decoded.IP);
    }

    static int DecodedLength(TrapPlanVector vector)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(vector.Code), vector.Ip, DecoderOptions.None);
        return decoder.Decode().Length;
    }

    [Fact]
    public void No_bytes_is_unsupported_not_an_exception()
    {
        var plan = Assert.IsType<UnsupportedPlan>(TrapPlanner.Plan([], 0x401000, 0x402000));
        Assert.Equal(0, plan.Length);
        Assert.Contains("no bytes", plan.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Only_the_first_instruction_is_displaced()
    {
        // push rbp; mov rbp,rsp; sub rsp,10h: a 16-byte read covers several instructions; only the first moves.
        byte[] code = [0x55, 0x48, 0x89, 0xE5, 0x48, 0x83, 0xEC, 0x10, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90];
        var plan = Assert.IsType<OutOfLinePlan>(TrapPlanner.Plan(code, 0x401000, 0x402000));
        Assert.Equal(1, plan.Length);
        Assert.Equal("push rbp; jmp 401001h", SlotDisassembly.Render(plan.SlotCode, 0x402000));
    }

    [Fact]
    public void Every_byte_string_of_random_garbage_gives_a_plan_without_throwing()
    {
        // Deterministic seed: the point is breadth of odd encodings, not randomness between runs.
        var random = new Random(12345);
        var buffer = new byte[16];
        int outOfLine = 0;
        for (int i = 0; i < 20000; i++)
        {
            random.NextBytes(buffer);
            int length = 1 + random.Next(16);
            ulong ip = 0x5555_5555_0000UL + (ulong)random.Next(0x10000);
            ulong slot = random.Next(2) == 0 ? 0x5555_5556_0000UL : 0x7FFF_F7FF_0000UL;
            var plan = TrapPlanner.Plan(buffer.AsSpan(0, length), ip, slot);
            Assert.InRange(plan.Length, 0, length);
            if (plan is OutOfLinePlan o)
            {
                outOfLine++;
                Assert.InRange(o.SlotCode.Length, 1, TrapPlanner.SlotSize);
                Assert.DoesNotContain("(bad", SlotDisassembly.Render(o.SlotCode, slot), StringComparison.Ordinal);
            }
        }
        Assert.True(outOfLine > 1000, $"only {outOfLine} random instructions ran out of line");
    }

    [Fact]
    public void Every_table_row_explains_itself_and_the_last_row_catches_all()
    {
        Assert.All(TrapPlanner.Table, row => Assert.False(string.IsNullOrWhiteSpace(row.Why)));
        Assert.True(TrapPlanner.Table[^1].Matches(default));
        Assert.Equal(TrapPlanner.Table.Count, TrapPlanner.Table.Select(r => r.Name).Distinct().Count());
    }
}
