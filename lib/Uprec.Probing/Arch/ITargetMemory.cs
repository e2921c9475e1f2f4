namespace Uprec.Probing.Arch;

/// <summary>
/// The traced process's memory as the emulator sees it. A read or write that cannot be done in full
/// (unmapped page, short transfer) returns false rather than throwing, as clrmd's reader does: a bad
/// pointer in the target is an expected condition, not a bug in uprec.
/// </summary>
public interface ITargetMemory
{
    bool TryRead(ulong address, Span<byte> buffer);

    bool TryWrite(ulong address, ReadOnlySpan<byte> data);
}
