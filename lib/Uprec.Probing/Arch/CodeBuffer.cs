using Iced.Intel;

namespace Uprec.Probing.Arch;

/// <summary>Collects the bytes Iced's encoders write: the one CodeWriter of the out-of-line copies, patches and trampolines.</summary>
internal sealed class CodeBuffer : CodeWriter
{
    private readonly List<byte> _bytes = new(64);

    public int Count => _bytes.Count;

    public override void WriteByte(byte value) => _bytes.Add(value);

    public byte[] ToArray() => [.. _bytes];

    /// <summary>The machine code <paramref name="build"/> assembles, placed at <paramref name="address"/>.</summary>
    public static byte[] Assemble(ulong address, Action<Assembler> build)
    {
        var a = new Assembler(64);
        build(a);
        var buffer = new CodeBuffer();
        a.Assemble(buffer, address);
        return buffer.ToArray();
    }
}
