using System.Buffers.Binary;
using Uprec.Probing.Arch;

namespace Uprec.Probing.Tests.Arch;

/// <summary>
/// A target address space made of a few mapped regions; any access that touches an unmapped byte fails
/// as a whole, like a short process_vm_readv. Writes are logged so tests can prove nothing else was touched.
/// </summary>
sealed class FakeTargetMemory : ITargetMemory
{
    readonly List<(ulong Base, byte[] Bytes)> regions = [];
    public List<(ulong Address, byte[] Data)> Writes { get; } = [];

    public FakeTargetMemory Map(ulong address, int size)
    {
        regions.Add((address, new byte[size]));
        return this;
    }

    public FakeTargetMemory Put64(ulong address, ulong value)
    {
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        if (!Copy(address, bytes.ToArray(), toTarget: true))
            throw new InvalidOperationException($"{address:X} is not mapped in the fake target");
        return this;
    }

    public ulong Get64(ulong address)
    {
        var bytes = new byte[8];
        if (!Copy(address, bytes, toTarget: false))
            throw new InvalidOperationException($"{address:X} is not mapped in the fake target");
        return BinaryPrimitives.ReadUInt64LittleEndian(bytes);
    }

    public bool TryRead(ulong address, Span<byte> buffer)
    {
        var copy = new byte[buffer.Length];
        if (!Copy(address, copy, toTarget: false))
            return false;
        copy.CopyTo(buffer);
        return true;
    }

    public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        if (!Copy(address, data.ToArray(), toTarget: true))
            return false;
        Writes.Add((address, data.ToArray()));
        return true;
    }

    bool Copy(ulong address, byte[] data, bool toTarget)
    {
        foreach (var (start, bytes) in regions)
        {
            if (address < start || address - start > (ulong)bytes.Length || (ulong)data.Length > (ulong)bytes.Length - (address - start))
                continue;
            int offset = (int)(address - start);
            if (toTarget)
                data.CopyTo(bytes, offset);
            else
                bytes.AsSpan(offset, data.Length).CopyTo(data);
            return true;
        }
        return false;
    }
}
