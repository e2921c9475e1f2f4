using System.Buffers.Binary;
using Uprec.Native;
using Uprec.Probing.Arch;

namespace Uprec.Probing.Tests.Arch;

/// <summary>
/// Plans every instruction of real compiler output (this machine's libc, linear sweep of .text) as if it
/// were a probe site. Hand-written vectors cover what we thought of; this covers what compilers emit.
/// </summary>
public class RealCodeSweepTests
{
    const string Libc = "/lib/x86_64-linux-gnu/libc.so.6";

    // Reads .text of an ELF64 little-endian file: (file bytes, section offset, size, address).
    static (byte[] File, int Offset, int Size, ulong Address) Text(string path)
    {
        var file = File.ReadAllBytes(path);
        var span = file.AsSpan();
        Assert.True(span[..4].SequenceEqual((byte[])[0x7F, (byte)'E', (byte)'L', (byte)'F']), $"{path} is not ELF");
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(span[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
        int shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3E..]);
        ulong strtab = BinaryPrimitives.ReadUInt64LittleEndian(span.Slice((int)shoff + shstrndx * shentsize + 0x18));
        for (int i = 0; i < shnum; i++)
        {
            var h = span.Slice((int)shoff + i * shentsize, shentsize);
            int name = (int)BinaryPrimitives.ReadUInt32LittleEndian(h);
            var nameBytes = span[(int)((int)strtab + name)..];
            if (!nameBytes[..6].SequenceEqual(".text\0"u8))
                continue;
            return (file, (int)BinaryPrimitives.ReadUInt64LittleEndian(h[0x18..]),
                (int)BinaryPrimitives.ReadUInt64LittleEndian(h[0x20..]), BinaryPrimitives.ReadUInt64LittleEndian(h[0x10..]));
        }
        throw new InvalidOperationException($"{path} has no .text");
    }

    /// <summary>Every address readable (zeros) and writable: only an instruction the emulator does not know can fail.</summary>
    sealed class AnyMemory : ITargetMemory
    {
        public bool TryRead(ulong address, Span<byte> buffer) { buffer.Clear(); return true; }
        public bool TryWrite(ulong address, ReadOnlySpan<byte> data) => true;
    }

    [Fact]
    public void Every_libc_instruction_gets_a_sound_plan()
    {
        Assert.True(File.Exists(Libc), $"{Libc} is missing: this test expects Debian/Ubuntu's x86-64 libc");
        var (file, offset, size, address) = Text(Libc);
        // A PIE-like load address, the slot 256 MB above the site: every rip-relative operand of libc is in reach.
        ulong loadBias = 0x7F00_0000_0000;
        int outOfLine = 0, emulated = 0;
        var unsupported = new Dictionary<string, int>();
        var memory = new AnyMemory();
        for (int pos = 0; pos < size;)
        {
            ulong ip = loadBias + address + (ulong)pos;
            ulong slot = ip + 0x1000_0000;
            var plan = TrapPlanner.Plan(file.AsSpan(offset + pos, Math.Min(16, size - pos)), ip, slot);
            switch (plan)
            {
                case OutOfLinePlan o:
                    outOfLine++;
                    Assert.InRange(o.SlotCode.Length, 1, TrapPlanner.SlotSize);
                    break;
                case EmulatePlan e:
                    emulated++;
                    var regs = new user_regs_struct { rsp = 0x7FFF_0000_0000 };
                    Assert.True(Emulator.TryExecute(e, ref regs, memory, out var error), $"{ip:X} {plan.Instruction}: {error}");
                    break;
                case UnsupportedPlan u:
                    var cls = u.Reason.Split(':')[0];
                    unsupported[cls] = unsupported.GetValueOrDefault(cls) + 1;
                    break;
            }
            pos += Math.Max(1, plan.Length);
        }

        // Only deliberate refusals: a reason outside the table (an encoder failure, a decoding problem) is a bug.
        var known = TrapPlanner.Table.Where(r => r.Handling == TrapPlanner.Handling.Unsupported).Select(r => r.Name).ToHashSet();
        Assert.All(unsupported.Keys, cls => Assert.Contains(cls, known));
        int total = outOfLine + emulated + unsupported.Values.Sum();
        Assert.True(total > 100_000, $"only {total} instructions in libc's .text");
        Assert.True(unsupported.Values.Sum() < total / 1000, $"{unsupported.Values.Sum()} of {total} refused: {string.Join(", ", unsupported)}");
        Assert.True(emulated > total / 20, $"{emulated} of {total} emulated: relative branches should be common");
    }
}
