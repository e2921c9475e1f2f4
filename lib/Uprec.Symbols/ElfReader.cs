using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Uprec.Symbols;

/// <summary>
/// Bounds-checked little-endian reads over a byte span. Every read validates, and a failed read names what was
/// being read, so a corrupt file ends as one <see cref="SymbolException"/> instead of an IndexOutOfRange.
/// </summary>
internal ref struct SpanReader(ReadOnlySpan<byte> data, string path)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private readonly string _path = path;

    public readonly int Length => _data.Length;

    public readonly byte U8(long at, string what) => Slice(at, 1, what)[0];
    public readonly ushort U16(long at, string what) => BinaryPrimitives.ReadUInt16LittleEndian(Slice(at, 2, what));
    public readonly uint U32(long at, string what) => BinaryPrimitives.ReadUInt32LittleEndian(Slice(at, 4, what));
    public readonly ulong U64(long at, string what) => BinaryPrimitives.ReadUInt64LittleEndian(Slice(at, 8, what));
    public readonly long S64(long at, string what) => BinaryPrimitives.ReadInt64LittleEndian(Slice(at, 8, what));

    public readonly ReadOnlySpan<byte> Slice(long at, long count, string what)
    {
        if (at < 0 || count < 0 || at > _data.Length - count)
        {
            throw ElfFile.Malformed(_path, $"{what} at 0x{at:x} (+{count}) lies outside its table of {_data.Length} bytes");
        }
        return _data.Slice((int)at, (int)count);
    }

    /// <summary>A NUL-terminated string starting at <paramref name="at"/>, at most <paramref name="maxLength"/> bytes.</summary>
    public readonly string CString(long at, int maxLength, string what)
    {
        if (at < 0 || at >= _data.Length)
        {
            throw ElfFile.Malformed(_path, $"{what}: string offset 0x{at:x} is outside the string table ({_data.Length} bytes)");
        }
        ReadOnlySpan<byte> rest = _data[(int)at..];
        int end = rest.IndexOf((byte)0);
        if (end < 0 || end > maxLength)
        {
            throw ElfFile.Malformed(_path, $"{what}: string at 0x{at:x} is not terminated within {Math.Min(maxLength, rest.Length)} bytes");
        }
        return Encoding.UTF8.GetString(rest[..end]);
    }
}

/// <summary>Reads byte ranges of one open file, refusing ranges past its end or larger than the limits allow.</summary>
internal sealed class ElfFile : IDisposable
{
    private readonly SafeFileHandle _handle;

    public string Path { get; }
    public long Length { get; }
    public SymbolLimits Limits { get; }

    private ElfFile(string path, SafeFileHandle handle, long length, SymbolLimits limits)
    {
        Path = path;
        _handle = handle;
        Length = length;
        Limits = limits;
    }

    public static ElfFile Open(string path, SymbolLimits limits)
    {
        if (Directory.Exists(path))
        {
            throw new SymbolException($"'{path}' is a directory, not an ELF executable or library");
        }
        if (!File.Exists(path))
        {
            throw new SymbolException($"'{path}' does not exist; give the path of an executable or shared library, or a library short name such as 'libc'");
        }
        try
        {
            SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            return new ElfFile(path, handle, RandomAccess.GetLength(handle), limits);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SymbolException($"cannot read '{path}': {e.Message}");
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes at <paramref name="offset"/>, or throws naming <paramref name="what"/>.</summary>
    public byte[] Read(long offset, long count, string what)
    {
        if (count > Limits.MaxTableBytes)
        {
            throw Malformed(Path, $"{what} claims {count} bytes, more than the {Limits.MaxTableBytes}-byte limit");
        }
        if (offset < 0 || count < 0 || offset > Length - count)
        {
            throw new SymbolException(
                $"'{Path}' is truncated or corrupt: {what} spans file offsets 0x{offset:x}..0x{offset + count:x} but the file has only 0x{Length:x} bytes");
        }
        var buffer = new byte[count];
        int done = 0;
        try
        {
            while (done < count)
            {
                int n = RandomAccess.Read(_handle, buffer.AsSpan(done), offset + done);
                if (n == 0)
                {
                    throw new SymbolException($"'{Path}' shrank while being read ({what} at 0x{offset + done:x})");
                }
                done += n;
            }
        }
        catch (IOException e)
        {
            throw new SymbolException($"cannot read '{Path}': {e.Message}");
        }
        return buffer;
    }

    public static SymbolException Malformed(string path, string detail) =>
        new($"'{path}' is a malformed ELF file: {detail}");

    public void Dispose() => _handle.Dispose();
}
