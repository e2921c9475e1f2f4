using System.Buffers.Binary;
using Iced.Intel;
using Uprec.Probing.Arch;

namespace Uprec.Probing.Tests.Arch;

/// <summary>
/// Renders slot code the way the vector file spells it: instructions formatted at their slot addresses,
/// joined by "; ", and the 8-byte literals that rip-relative operands point at inside the slot as "dq".
/// Decoding the bytes back (rather than comparing hex) checks that the slot really decodes to that code.
/// </summary>
static class SlotDisassembly
{
    public static string Render(byte[] code, ulong slot)
    {
        var literals = new HashSet<ulong>();
        var parts = new List<string>();
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), slot, DecoderOptions.None);
        ulong end = slot + (ulong)code.Length;
        while (decoder.IP < end)
        {
            ulong at = decoder.IP;
            if (literals.Contains(at) && at + 8 <= end)
            {
                ulong value = BinaryPrimitives.ReadUInt64LittleEndian(code.AsSpan((int)(at - slot), 8));
                parts.Add($"dq {value:X}h");
                decoder = Decoder.Create(64, new ByteArrayCodeReader(code, (int)(at + 8 - slot), (int)(end - at - 8)), at + 8, DecoderOptions.None);
                continue;
            }
            decoder.Decode(out var instr);
            if (instr.Code == Code.INVALID)
            {
                parts.Add($"(bad at +{at - slot:X})");
                break;
            }
            if (instr.IsIPRelativeMemoryOperand && instr.IPRelativeMemoryAddress >= slot && instr.IPRelativeMemoryAddress < end)
                literals.Add(instr.IPRelativeMemoryAddress);
            parts.Add(TrapPlanner.Format(instr));
        }
        return string.Join("; ", parts);
    }
}
