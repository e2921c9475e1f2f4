using System.Globalization;

namespace Uprec.Symbols;

/// <summary>
/// One line of /proc/PID/maps. Offset, device and inode are kept: a probe is keyed by (file, offset), and the
/// inode identifies the file even after it was replaced on disk. <see cref="Path"/> is null for anonymous memory,
/// "[vdso]"-style for the kernel's pseudo mappings, and without the kernel's " (deleted)" marker (see <see cref="Deleted"/>).
/// </summary>
public sealed record MapEntry(ulong Start, ulong End, string Perms, ulong Offset, uint DevMajor, uint DevMinor, ulong Inode, string? Path)
{
    public bool Executable => Perms.Length > 2 && Perms[2] == 'x';

    /// <summary>The file was unlinked or replaced after being mapped (the kernel appended " (deleted)").</summary>
    public bool Deleted { get; init; }

    /// <summary>[heap], [stack], [vdso], [vvar], [vsyscall]...: kernel-provided, not backed by a file.</summary>
    public bool IsPseudo => Path is not null && Path.StartsWith('[') && Inode == 0;

    public bool IsFileBacked => Path is not null && Inode != 0;

    public ulong Size => End - Start;
}

/// <summary>Parses /proc/PID/maps text. Span-based; malformed lines are skipped, never thrown.</summary>
public static class ProcMaps
{
    private const string DeletedSuffix = " (deleted)";

    public static IReadOnlyList<MapEntry> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var entries = new List<MapEntry>();
        foreach (ReadOnlySpan<char> line in text.AsSpan().EnumerateLines())
        {
            if (TryParseLine(line, out MapEntry entry))
            {
                entries.Add(entry);
            }
        }
        return entries;
    }

    /// <summary>
    /// Parses "start-end perms offset major:minor inode [path]". The path is everything after the whitespace that
    /// follows the inode, so paths with spaces survive.
    /// </summary>
    public static bool TryParseLine(ReadOnlySpan<char> line, out MapEntry entry)
    {
        entry = null!;
        ReadOnlySpan<char> rest = line;
        if (!NextField(ref rest, out ReadOnlySpan<char> range)
            || !NextField(ref rest, out ReadOnlySpan<char> perms)
            || !NextField(ref rest, out ReadOnlySpan<char> offsetText)
            || !NextField(ref rest, out ReadOnlySpan<char> dev)
            || !NextField(ref rest, out ReadOnlySpan<char> inodeText))
        {
            return false;
        }
        int dash = range.IndexOf('-');
        int colon = dev.IndexOf(':');
        if (dash <= 0 || colon <= 0
            || !ulong.TryParse(range[..dash], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong start)
            || !ulong.TryParse(range[(dash + 1)..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong end)
            || end < start
            || perms.Length != 4
            || !ulong.TryParse(offsetText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong offset)
            || !uint.TryParse(dev[..colon], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint major)
            || !uint.TryParse(dev[(colon + 1)..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint minor)
            || !ulong.TryParse(inodeText, NumberStyles.None, CultureInfo.InvariantCulture, out ulong inode))
        {
            return false;
        }
        foreach (char c in perms)
        {
            if (c is not ('r' or 'w' or 'x' or 'p' or 's' or '-'))
            {
                return false;
            }
        }

        ReadOnlySpan<char> pathSpan = rest.TrimStart(' ').TrimStart('\t').TrimEnd('\r');
        string? path = null;
        bool deleted = false;
        if (!pathSpan.IsEmpty)
        {
            if (pathSpan.EndsWith(DeletedSuffix, StringComparison.Ordinal))
            {
                deleted = true;
                pathSpan = pathSpan[..^DeletedSuffix.Length];
            }
            path = pathSpan.ToString();
        }
        entry = new MapEntry(start, end, perms.ToString(), offset, major, minor, inode, path) { Deleted = deleted };
        return true;
    }

    /// <summary>
    /// The address where byte <paramref name="fileOffset"/> of the file at <paramref name="path"/> is mapped, or null.
    /// An executable mapping is preferred when several cover the offset.
    /// </summary>
    public static ulong? FileOffsetToAddress(IReadOnlyList<MapEntry> maps, string path, long fileOffset) =>
        FileOffsetToAddress(maps, e => e.Path == path, fileOffset);

    /// <summary>Same, matching the file by device and inode (robust against renames, symlinks and deleted files).</summary>
    public static ulong? FileOffsetToAddress(IReadOnlyList<MapEntry> maps, uint devMajor, uint devMinor, ulong inode, long fileOffset) =>
        FileOffsetToAddress(maps, e => e.Inode == inode && e.DevMajor == devMajor && e.DevMinor == devMinor && inode != 0, fileOffset);

    private static ulong? FileOffsetToAddress(IReadOnlyList<MapEntry> maps, Func<MapEntry, bool> sameFile, long fileOffset)
    {
        if (fileOffset < 0)
        {
            return null;
        }
        ulong offset = (ulong)fileOffset;
        ulong? fallback = null;
        foreach (MapEntry e in maps)
        {
            if (!sameFile(e) || offset < e.Offset || offset - e.Offset >= e.Size)
            {
                continue;
            }
            ulong address = e.Start + (offset - e.Offset);
            if (e.Executable)
            {
                return address;
            }
            fallback ??= address;
        }
        return fallback;
    }

    private static bool NextField(ref ReadOnlySpan<char> rest, out ReadOnlySpan<char> field)
    {
        rest = rest.TrimStart(' ');
        int space = rest.IndexOf(' ');
        if (rest.IsEmpty)
        {
            field = default;
            return false;
        }
        field = space < 0 ? rest : rest[..space];
        rest = space < 0 ? ReadOnlySpan<char>.Empty : rest[space..];
        return true;
    }
}
