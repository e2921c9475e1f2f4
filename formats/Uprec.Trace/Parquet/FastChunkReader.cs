using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Snappier;

namespace Uprec.Trace.ParquetEncoding;

/// <summary>Thrown for a column chunk the fast path does not handle; the caller falls back to Parquet.Net.</summary>
internal sealed class FastPathUnsupportedException(string what) : Exception(what);

/// <summary>
/// Decodes flat column chunks directly from the file: data pages v1, PLAIN or (RLE_)DICTIONARY
/// encodings, Snappy or no compression, definition levels of flat optional columns. That covers every
/// trace this writer produces and the common shapes of other writers; anything else raises
/// <see cref="FastPathUnsupportedException"/> and Parquet.Net decodes it. Why: Parquet.Net expands each
/// dictionary column into 16-byte slices per row and allocates per call, which made decoding, not
/// aggregation, the cost of `uprec report` (about 80 ns a row). Every size read from the file is checked.
/// </summary>
internal sealed class FastChunkReader
{
    private readonly Stream _stream;
    private byte[] _chunk = [];
    private byte[] _page = [];
    private int[] _levels = [];
    private int[] _indices = [];
    private long[] _dense = [];
    private byte[] _defined = [];

    public FastChunkReader(Stream stream)
    {
        _stream = stream;
    }

    /// <summary>Where a column chunk lives and how it is compressed (from the footer).</summary>
    public readonly record struct Chunk(long Start, long Length, int Codec, long NumValues);

    private const int CodecNone = 0, CodecSnappy = 1;
    private const int EncPlain = 0, EncPlainDictionary = 2, EncRle = 3, EncDeltaBinaryPacked = 5, EncRleDictionary = 8;

    private sealed class PageHeader
    {
        public int Type = -1;
        public int UncompressedSize;
        public int CompressedSize;
        public int NumValues;
        public int Encoding;
        public int DefinitionEncoding = EncRle;
    }

    public void ReadInt64(Chunk chunk, Span<long> output) => ReadFixed(chunk, MemoryMarshal.AsBytes(output), 8, null);

    public void ReadInt32(Chunk chunk, Span<int> output) => ReadFixed(chunk, MemoryMarshal.AsBytes(output), 4, null);

    /// <summary>An optional INT64 column into nullable values.</summary>
    public void ReadOptionalInt64(Chunk chunk, long?[] output)
    {
        if (_dense.Length < output.Length)
        {
            _dense = new long[output.Length];
            _defined = new byte[output.Length];
        }
        Span<long> dense = _dense.AsSpan(0, output.Length);
        byte[] defined = _defined;
        Array.Clear(defined, 0, output.Length);
        ReadFixed(chunk, MemoryMarshal.AsBytes(dense), 8, defined);
        for (int i = 0; i < output.Length; i++)
        {
            output[i] = defined[i] != 0 ? dense[i] : null;
        }
    }

    /// <summary>
    /// A string column; each distinct value becomes one string instance through <paramref name="intern"/>.
    /// Null rows (optional columns) are null.
    /// </summary>
    public void ReadStrings(Chunk chunk, string?[] output, bool optional, Func<ReadOnlySpan<byte>, string> intern)
    {
        ReadOnlySpan<byte> data = LoadChunk(chunk);
        string[] dictionary = [];
        int row = 0;
        var header = new PageHeader();
        while (!data.IsEmpty && row < output.Length)
        {
            ReadOnlySpan<byte> body = NextPage(ref data, chunk.Codec, header);
            if (header.Type == 2)
            {
                dictionary = new string[header.NumValues];
                int p = 0;
                for (int i = 0; i < dictionary.Length; i++)
                {
                    dictionary[i] = intern(ByteArray(body, ref p));
                }
                continue;
            }
            if (header.Type != 0)
            {
                continue;
            }
            int n = Check(header.NumValues, output.Length - row);
            int present = n;
            int[] levels = [];
            if (optional)
            {
                levels = Levels(ref body, n, header, out present);
            }
            if (header.Encoding is EncRleDictionary or EncPlainDictionary)
            {
                if (body.IsEmpty)
                {
                    throw new FastPathUnsupportedException("dictionary page data without a bit width");
                }
                int width = body[0];
                Span<int> idx = Indices(present);
                DecodeHybrid(body[1..], width, idx);
                for (int i = 0, k = 0; i < n; i++)
                {
                    if (optional && levels[i] == 0)
                    {
                        output[row + i] = null;
                        continue;
                    }
                    int d = idx[k++];
                    output[row + i] = (uint)d < (uint)dictionary.Length ? dictionary[d]
                        : throw new InvalidDataException($"dictionary index {d} out of range ({dictionary.Length})");
                }
            }
            else if (header.Encoding == EncPlain)
            {
                int p = 0;
                for (int i = 0; i < n; i++)
                {
                    output[row + i] = optional && levels[i] == 0 ? null : intern(ByteArray(body, ref p));
                }
            }
            else
            {
                throw new FastPathUnsupportedException($"string encoding {header.Encoding}");
            }
            row += n;
        }
        if (row != output.Length)
        {
            throw new InvalidDataException($"column chunk holds {row} values, the row group {output.Length}");
        }
    }

    /// <summary>Fixed-width PLAIN values; with <paramref name="defined"/>, an optional column whose values land at their rows.</summary>
    private void ReadFixed(Chunk chunk, Span<byte> output, int width, byte[]? defined)
    {
        int rows = output.Length / width;
        ReadOnlySpan<byte> data = LoadChunk(chunk);
        int row = 0;
        var header = new PageHeader();
        byte[]? dictionary = null;
        int dictionaryCount = 0;
        while (!data.IsEmpty && row < rows)
        {
            ReadOnlySpan<byte> body = NextPage(ref data, chunk.Codec, header);
            if (header.Type == 2)
            {
                if (defined is not null || header.Encoding is not (EncPlain or EncPlainDictionary))
                {
                    throw new FastPathUnsupportedException("dictionary of an optional integer column");
                }
                dictionaryCount = Check(header.NumValues, body.Length / width);
                dictionary = body[..(dictionaryCount * width)].ToArray();
                continue;
            }
            if (header.Type != 0)
            {
                continue;
            }
            int n = Check(header.NumValues, rows - row);
            if (defined is null && header.Encoding is EncRleDictionary or EncPlainDictionary)
            {
                if (dictionary is null || body.IsEmpty)
                {
                    throw new InvalidDataException("dictionary-encoded page without a dictionary");
                }
                Span<int> idx = Indices(n);
                DecodeHybrid(body[1..], body[0], idx);
                Span<byte> target = output[(row * width)..];
                if (width == 4)
                {
                    // A typed copy: a 4-byte Span.CopyTo per row was a Memmove call per row (~5% of report).
                    ReadOnlySpan<int> values = MemoryMarshal.Cast<byte, int>(dictionary.AsSpan(0, dictionaryCount * 4));
                    Span<int> into = MemoryMarshal.Cast<byte, int>(target)[..n];
                    for (int i = 0; i < n; i++)
                    {
                        int d = idx[i];
                        into[i] = (uint)d < (uint)values.Length ? values[d]
                            : throw new InvalidDataException($"dictionary index {d} out of range ({dictionaryCount})");
                    }
                }
                else
                {
                    for (int i = 0; i < n; i++)
                    {
                        int d = idx[i];
                        if ((uint)d >= (uint)dictionaryCount)
                        {
                            throw new InvalidDataException($"dictionary index {d} out of range ({dictionaryCount})");
                        }
                        dictionary.AsSpan(d * width, width).CopyTo(target.Slice(i * width, width));
                    }
                }
            }
            else if (defined is null && header.Encoding == EncDeltaBinaryPacked && width == 8)
            {
                DecodeDelta(body, MemoryMarshal.Cast<byte, long>(output[(row * width)..])[..n]);
            }
            else if (header.Encoding != EncPlain)
            {
                throw new FastPathUnsupportedException($"integer encoding {header.Encoding}");
            }
            else if (defined is null)
            {
                body[..Check(n * width, body.Length)].CopyTo(output[(row * width)..]);
            }
            else
            {
                int[] levels = Levels(ref body, n, header, out int present);
                if (present * width > body.Length)
                {
                    throw new InvalidDataException("page shorter than its values");
                }
                if (width == 8 && present > 0)
                {
                    // Nulls and values interleave at random (entries and returns), so no branch per row:
                    // every row gets the next value (or the last, past the end) and its level as the flag.
                    ReadOnlySpan<long> values = MemoryMarshal.Cast<byte, long>(body[..(present * 8)]);
                    Span<long> into = MemoryMarshal.Cast<byte, long>(output);
                    for (int i = 0, k = 0; i < n; i++)
                    {
                        int level = levels[i];
                        into[row + i] = values[Math.Min(k, values.Length - 1)];
                        defined[row + i] = (byte)level;
                        k += level;
                    }
                }
                else
                {
                    for (int i = 0, k = 0; i < n; i++)
                    {
                        if (levels[i] != 0)
                        {
                            body.Slice(k++ * width, width).CopyTo(output.Slice((row + i) * width, width));
                            defined[row + i] = 1;
                        }
                    }
                }
            }
            row += n;
        }
        if (row != rows)
        {
            throw new InvalidDataException($"column chunk holds {row} values, the row group {rows}");
        }
    }

    /// <summary>Decodes the page's definition levels into a reused array (first n entries valid).</summary>
    private int[] Levels(ref ReadOnlySpan<byte> body, int n, PageHeader header, out int present)
    {
        if (header.DefinitionEncoding != EncRle || body.Length < 4)
        {
            throw new FastPathUnsupportedException($"definition level encoding {header.DefinitionEncoding}");
        }
        int length = Check(BinaryPrimitives.ReadInt32LittleEndian(body), body.Length - 4);
        if (_levels.Length < n)
        {
            _levels = new int[n];
        }
        Span<int> levels = _levels.AsSpan(0, n);
        DecodeHybrid(body.Slice(4, length), 1, levels);
        body = body[(4 + length)..];
        present = 0;
        foreach (int l in levels)
        {
            present += l;
        }
        return _levels;
    }

    private Span<int> Indices(int n)
    {
        if (_indices.Length < n)
        {
            _indices = new int[n];
        }
        return _indices.AsSpan(0, n);
    }

    /// <summary>The RLE/bit-packed hybrid: RLE runs (header even) and bit-packed groups of 8 (header odd).</summary>
    private static void DecodeHybrid(ReadOnlySpan<byte> src, int width, Span<int> output)
    {
        if (width is < 0 or > 32)
        {
            throw new InvalidDataException($"bit width {width}");
        }
        int o = 0, p = 0;
        int bytesPerValue = (width + 7) / 8;
        while (o < output.Length)
        {
            ulong h = VarInt(src, ref p);
            // Zero-length runs would make no progress: only a damaged page has them.
            if (h >> 1 == 0)
            {
                throw new InvalidDataException("empty run in RLE/bit-packed data");
            }
            if ((h & 1) == 0)
            {
                int count = Check((long)(h >> 1), output.Length - o);
                if (p + bytesPerValue > src.Length)
                {
                    throw new InvalidDataException("truncated RLE run");
                }
                int value = 0;
                for (int b = 0; b < bytesPerValue; b++)
                {
                    value |= src[p + b] << (8 * b);
                }
                p += bytesPerValue;
                output.Slice(o, count).Fill(value);
                o += count;
            }
            else
            {
                long groups = (long)(h >> 1);
                long bytes = groups * width;
                if (p + bytes > src.Length)
                {
                    throw new InvalidDataException("truncated bit-packed run");
                }
                int runStart = p;
                long values = Math.Min(groups * 8, output.Length - o);
                ulong acc = 0;
                int bits = 0;
                ulong mask = (1UL << width) - 1;
                for (long i = 0; i < values; i++)
                {
                    while (bits < width)
                    {
                        acc |= (ulong)src[p++] << bits;
                        bits += 8;
                    }
                    output[o++] = (int)(acc & mask);
                    acc >>= width;
                    bits -= width;
                }
                // The last group may be padding beyond the values needed: skip the whole run.
                p = runStart + (int)bytes;
            }
        }
    }

    /// <summary>DELTA_BINARY_PACKED INT64 (Encodings.md): header, then blocks of min delta, miniblock widths, packed deltas.</summary>
    private static void DecodeDelta(ReadOnlySpan<byte> src, Span<long> output)
    {
        int p = 0;
        long blockSize = (long)VarInt(src, ref p);
        long miniblocks = (long)VarInt(src, ref p);
        long total = (long)VarInt(src, ref p);
        if (blockSize <= 0 || blockSize % 128 != 0 || miniblocks <= 0 || blockSize % miniblocks != 0 || (blockSize / miniblocks) % 32 != 0
            || miniblocks > 1024 || total != output.Length)
        {
            throw new InvalidDataException($"bad DELTA_BINARY_PACKED header ({blockSize}, {miniblocks}, {total} for {output.Length} rows)");
        }
        int miniSize = (int)(blockSize / miniblocks);
        if (total == 0)
        {
            return;
        }
        long value = UnZigZag(VarInt(src, ref p));
        output[0] = value;
        int o = 1;
        while (o < output.Length)
        {
            long min = UnZigZag(VarInt(src, ref p));
            if (p + miniblocks > src.Length)
            {
                throw new InvalidDataException("truncated delta block");
            }
            ReadOnlySpan<byte> widths = src.Slice(p, (int)miniblocks);
            p += (int)miniblocks;
            for (int m = 0; m < miniblocks && o < output.Length; m++)
            {
                int width = widths[m];
                if (width > 64)
                {
                    throw new InvalidDataException($"delta bit width {width}");
                }
                int bytes = miniSize * width / 8;
                if (p + bytes > src.Length)
                {
                    throw new InvalidDataException("truncated delta miniblock");
                }
                UInt128 acc = 0;
                int bits = 0, q = p;
                ulong mask = width == 64 ? ulong.MaxValue : (1UL << width) - 1;
                int take = Math.Min(miniSize, output.Length - o);
                for (int i = 0; i < take; i++)
                {
                    while (bits < width)
                    {
                        acc |= (UInt128)src[q++] << bits;
                        bits += 8;
                    }
                    ulong delta = (ulong)(acc & mask);
                    acc >>= width;
                    bits -= width;
                    value = unchecked(value + min + (long)delta);
                    output[o++] = value;
                }
                p += bytes;
            }
        }
    }

    private static long UnZigZag(ulong v) => (long)(v >> 1) ^ -(long)(v & 1);

    private static ulong VarInt(ReadOnlySpan<byte> src, ref int p)
    {
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (p >= src.Length)
            {
                throw new InvalidDataException("truncated varint");
            }
            byte b = src[p++];
            v |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return v;
            }
        }
        throw new InvalidDataException("varint too long");
    }

    private static ReadOnlySpan<byte> ByteArray(ReadOnlySpan<byte> body, ref int p)
    {
        if (p + 4 > body.Length)
        {
            throw new InvalidDataException("truncated byte array");
        }
        int length = BinaryPrimitives.ReadInt32LittleEndian(body[p..]);
        if (length < 0 || p + 4 + length > body.Length)
        {
            throw new InvalidDataException("byte array overruns its page");
        }
        ReadOnlySpan<byte> value = body.Slice(p + 4, length);
        p += 4 + length;
        return value;
    }

    private static int Check(long value, long max) => value >= 0 && value <= max
        ? (int)value
        : throw new InvalidDataException($"size {value} out of range (at most {max})");

    private ReadOnlySpan<byte> LoadChunk(Chunk chunk)
    {
        if (chunk.Codec is not (CodecNone or CodecSnappy))
        {
            throw new FastPathUnsupportedException($"codec {chunk.Codec}");
        }
        if (chunk.Start < 4 || chunk.Length <= 0 || chunk.Length > int.MaxValue || chunk.Start + chunk.Length > _stream.Length)
        {
            throw new InvalidDataException($"column chunk [{chunk.Start}, +{chunk.Length}) outside the file");
        }
        if (_chunk.Length < chunk.Length)
        {
            _chunk = new byte[chunk.Length];
        }
        _stream.Position = chunk.Start;
        _stream.ReadExactly(_chunk, 0, (int)chunk.Length);
        return _chunk.AsSpan(0, (int)chunk.Length);
    }

    /// <summary>Parses a page header, returns the (decompressed) page body and advances past the page.</summary>
    private ReadOnlySpan<byte> NextPage(ref ReadOnlySpan<byte> data, int codec, PageHeader h)
    {
        int p = 0;
        h.Type = -1;
        h.Encoding = -1;
        h.DefinitionEncoding = EncRle;
        var t = new ThriftCompactReader(data);
        while (t.NextField(out short id, out byte type))
        {
            switch (id)
            {
                case 1: h.Type = t.ReadI32(type); break;
                case 2: h.UncompressedSize = t.ReadI32(type); break;
                case 3: h.CompressedSize = t.ReadI32(type); break;
                case 5 or 7 when type == ThriftCompactReader.Struct:
                    short outer = t.EnterStruct();
                    while (t.NextField(out short sid, out byte stype))
                    {
                        switch (sid)
                        {
                            case 1: h.NumValues = t.ReadI32(stype); break;
                            case 2: h.Encoding = t.ReadI32(stype); break;
                            case 3 when id == 5: h.DefinitionEncoding = t.ReadI32(stype); break;
                            default: t.Skip(stype); break;
                        }
                    }
                    t.LeaveStruct(outer);
                    break;
                case 8: throw new FastPathUnsupportedException("data page v2");
                default: t.Skip(type); break;
            }
        }
        p = t.Position;
        if (h.Type < 0 || h.CompressedSize < 0 || h.UncompressedSize < 0 || p + h.CompressedSize > data.Length || h.NumValues < 0)
        {
            throw new InvalidDataException("bad page header");
        }
        ReadOnlySpan<byte> raw = data.Slice(p, h.CompressedSize);
        data = data[(p + h.CompressedSize)..];
        if (codec == CodecNone)
        {
            return raw;
        }
        // A Snappy copy op of 3 bytes yields at most 64 bytes, so no honest page expands more than ~22x:
        // a larger claim is a corrupt or hostile header, refused before it can size an allocation.
        if (h.UncompressedSize > (long)h.CompressedSize * 22 + 64 || Snappy.GetUncompressedLength(raw) != h.UncompressedSize)
        {
            throw new InvalidDataException($"page claims {h.UncompressedSize} bytes from {h.CompressedSize} compressed");
        }
        if (_page.Length < h.UncompressedSize)
        {
            _page = new byte[h.UncompressedSize];
        }
        int length = Snappy.Decompress(raw, _page);
        if (length != h.UncompressedSize)
        {
            throw new InvalidDataException("page decompressed to an unexpected size");
        }
        return _page.AsSpan(0, length);
    }
}
