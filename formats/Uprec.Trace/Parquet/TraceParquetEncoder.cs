using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;
using Snappier;

namespace Uprec.Trace.ParquetEncoding;

/// <summary>Physical layout of one trace column (flat schema: every column is a leaf of the root).</summary>
internal enum ColumnKind
{
    RequiredInt64,
    RequiredInt32,
    /// <summary>Required INT64 written DELTA_BINARY_PACKED (timestamps).</summary>
    DeltaInt64,
    /// <summary>Required INT32 written as a dictionary of distinct values plus indices (pids, tids).</summary>
    DictionaryInt32,
    /// <summary>Required UTF8 string written as a dictionary page plus RLE_DICTIONARY indices.</summary>
    DictionaryString,
    OptionalInt64,
    OptionalUInt64,
    /// <summary>Optional UTF8 string, dictionary-encoded like the required ones.</summary>
    OptionalDictionaryString,
}

internal sealed record ColumnDef(string Name, ColumnKind Kind);

/// <summary>
/// A minimal Parquet writer for the trace's flat schema: one Snappy-compressed data page (v1) per
/// column chunk, PLAIN integers, dictionary-encoded strings, definition levels for optional columns,
/// no statistics. Why not Parquet.Net's writer: its string path hashes and re-encodes every value
/// (about 70 ns a value here, three string columns a row), which caps the trace at ~5 M rows/s; the
/// trace writer already knows each string's dictionary slot, so this encoder only packs integers.
/// Files are read back by Parquet.Net (TraceReader) and checked against DuckDB in the tests.
/// Format reference: apache/parquet-format (parquet.thrift, Encodings.md).
/// </summary>
internal sealed class TraceParquetEncoder
{
    private const int TypeInt32 = 1, TypeInt64 = 2, TypeByteArray = 6;
    private const int RepRequired = 0, RepOptional = 1;
    private const int EncPlain = 0, EncRle = 3, EncDeltaBinaryPacked = 5, EncRleDictionary = 8;
    private const int CodecSnappy = 1;
    private const int PageData = 0, PageDictionary = 2;
    private const int ConvertedUtf8 = 0, ConvertedUInt64 = 14;

    private readonly Stream _stream;
    private readonly IReadOnlyList<ColumnDef> _columns;
    private readonly List<RowGroupInfo> _rowGroups = [];
    private readonly ByteBuffer _body = new();
    private readonly ByteBuffer _header = new();
    private byte[] _compressed = [];
    private long _position;
    private RowGroupInfo? _current;

    private sealed record ChunkInfo(ColumnDef Column, long NumValues, long FirstPageOffset, long? DictionaryOffset, long DataOffset,
        long UncompressedSize, long CompressedSize, bool Dictionary, int DataEncoding = EncPlain);

    private static ulong ZigZag(long v) => unchecked((ulong)((v << 1) ^ (v >> 63)));

    private sealed class RowGroupInfo(long rows)
    {
        public long Rows { get; } = rows;
        public List<ChunkInfo> Chunks { get; } = [];
    }

    public TraceParquetEncoder(Stream stream, IReadOnlyList<ColumnDef> columns)
    {
        _stream = stream;
        _columns = columns;
        Write("PAR1"u8);
    }

    public void BeginRowGroup(int rows)
    {
        _current = new RowGroupInfo(rows);
    }

    public void EndRowGroup()
    {
        RowGroupInfo group = _current ?? throw new InvalidOperationException("no row group");
        if (group.Chunks.Count != _columns.Count)
        {
            throw new InvalidOperationException($"row group has {group.Chunks.Count} columns, schema {_columns.Count}");
        }
        _rowGroups.Add(group);
        _current = null;
    }

    private ColumnDef NextColumn(ColumnKind expected)
    {
        ColumnDef column = _columns[_current!.Chunks.Count];
        if (column.Kind != expected)
        {
            throw new InvalidOperationException($"column {column.Name} is {column.Kind}, written as {expected}");
        }
        return column;
    }

    public void WriteInt64(ReadOnlySpan<long> values)
    {
        ColumnDef column = NextColumn(ColumnKind.RequiredInt64);
        _body.Clear();
        _body.Append(MemoryMarshal.AsBytes(values));
        long offset = _position;
        (long u, long c) = WritePage(PageData, values.Length, EncPlain);
        _current!.Chunks.Add(new ChunkInfo(column, values.Length, offset, null, offset, u, c, false));
    }

    public void WriteInt32(ReadOnlySpan<int> values)
    {
        ColumnDef column = NextColumn(ColumnKind.RequiredInt32);
        _body.Clear();
        _body.Append(MemoryMarshal.AsBytes(values));
        long offset = _position;
        (long u, long c) = WritePage(PageData, values.Length, EncPlain);
        _current!.Chunks.Add(new ChunkInfo(column, values.Length, offset, null, offset, u, c, false));
    }

    /// <summary>
    /// A required INT64 column as DELTA_BINARY_PACKED: timestamps in order differ by small amounts, so
    /// their deltas pack into a byte or two where PLAIN needs eight (and Snappy then has little to do).
    /// Blocks of 128 deltas in 4 miniblocks of 32, each with its own bit width (Encodings.md).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void WriteInt64Delta(ReadOnlySpan<long> values)
    {
        ColumnDef column = NextColumn(ColumnKind.DeltaInt64);
        _body.Clear();
        const int blockSize = 128, miniblocks = 4, miniSize = blockSize / miniblocks;
        _body.AppendVarInt(blockSize);
        _body.AppendVarInt(miniblocks);
        _body.AppendVarInt((ulong)values.Length);
        _body.AppendVarInt(ZigZag(values.IsEmpty ? 0 : values[0]));
        Span<ulong> relative = stackalloc ulong[blockSize];
        Span<byte> widths = stackalloc byte[miniblocks];
        for (int start = 1; start < values.Length; start += blockSize)
        {
            int count = Math.Min(blockSize, values.Length - start);
            // Each delta minus the block's smallest, as unsigned; slots past the last delta are zero.
            long min = count == blockSize && Vector128.IsHardwareAccelerated
                ? RelativeDeltasOfFullBlock(values, start, relative)
                : RelativeDeltas(values, start, count, relative);
            _body.AppendVarInt(ZigZag(min));
            int used = (count + miniSize - 1) / miniSize;
            widths.Clear();
            for (int m = 0; m < used; m++)
            {
                // The widest value's bit length is the bit length of all of them or'ed together.
                ulong any = 0;
                foreach (ulong v in relative.Slice(m * miniSize, miniSize))
                {
                    any |= v;
                }
                widths[m] = (byte)(64 - ulong.LeadingZeroCount(any));
            }
            _body.Append(widths);
            for (int m = 0; m < used; m++)
            {
                // A miniblock is always 32 values wide.
                PackBits(relative.Slice(m * miniSize, miniSize), widths[m], _body.Reserve(miniSize * widths[m] / 8));
            }
        }
        long offset = _position;
        (long u, long c) = WritePage(PageData, values.Length, EncDeltaBinaryPacked);
        _current!.Chunks.Add(new ChunkInfo(column, values.Length, offset, null, offset, u, c, false, EncDeltaBinaryPacked));
    }

    /// <summary>The deltas of values[start - 1 .. start + count] minus their minimum (returned), zero-padded to relative's length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static long RelativeDeltas(ReadOnlySpan<long> values, int start, int count, Span<ulong> relative)
    {
        long min = long.MaxValue;
        for (int i = 0; i < count; i++)
        {
            min = Math.Min(min, unchecked(values[start + i] - values[start + i - 1]));
        }
        for (int i = 0; i < count; i++)
        {
            relative[i] = unchecked((ulong)(values[start + i] - values[start + i - 1] - min));
        }
        relative[count..].Clear();
        return min;
    }

    /// <summary>
    /// <see cref="RelativeDeltas"/> of a whole block, two lanes at a time (a trace's timestamps are most of
    /// its encoding work). 128-bit vectors, not 256: the Native AOT build targets a baseline x64 without
    /// AVX, where Vector256 is not accelerated (measured: the scalar path ran instead).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static long RelativeDeltasOfFullBlock(ReadOnlySpan<long> values, int start, Span<ulong> relative)
    {
        ref long v = ref MemoryMarshal.GetReference(values);
        ref ulong r = ref MemoryMarshal.GetReference(relative);
        Vector128<long> min = Vector128.Create(long.MaxValue);
        for (int i = 0; i < relative.Length; i += Vector128<long>.Count)
        {
            // Wrapping subtraction, as the scalar path's unchecked one.
            Vector128<long> delta = Vector128.LoadUnsafe(ref v, (nuint)(start + i)) - Vector128.LoadUnsafe(ref v, (nuint)(start + i - 1));
            delta.AsUInt64().StoreUnsafe(ref r, (nuint)i);
            min = Vector128.Min(min, delta);
        }
        long least = Math.Min(min[0], min[1]);
        Vector128<ulong> subtract = Vector128.Create(unchecked((ulong)least));
        for (int i = 0; i < relative.Length; i += Vector128<ulong>.Count)
        {
            (Vector128.LoadUnsafe(ref r, (nuint)i) - subtract).StoreUnsafe(ref r, (nuint)i);
        }
        return least;
    }

    /// <summary>Optional INT64/UINT64: <paramref name="defined"/>[i] is 1 for a value, 0 for a null (the levels are written as given); undefined slots are skipped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void WriteOptionalInt64(ReadOnlySpan<long> values, ReadOnlySpan<byte> defined, bool unsigned)
    {
        ColumnDef column = NextColumn(unsigned ? ColumnKind.OptionalUInt64 : ColumnKind.OptionalInt64);
        _body.Clear();
        AppendDefinitionLevels(defined);
        for (int i = 0; i < values.Length; i++)
        {
            if (defined[i] != 0)
            {
                _body.AppendInt64(values[i]);
            }
        }
        long offset = _position;
        (long u, long c) = WritePage(PageData, values.Length, EncPlain);
        _current!.Chunks.Add(new ChunkInfo(column, values.Length, offset, null, offset, u, c, false));
    }

    /// <summary>
    /// A dictionary-encoded string column: <paramref name="indices"/>[i] is the slot of row i in
    /// <paramref name="dictionary"/>, or -1 for null (optional columns only).
    /// </summary>
    public void WriteDictionary(ReadOnlySpan<int> indices, IReadOnlyList<string> dictionary, bool optional)
    {
        ColumnDef column = NextColumn(optional ? ColumnKind.OptionalDictionaryString : ColumnKind.DictionaryString);
        long dictionaryOffset = _position;
        _body.Clear();
        foreach (string value in dictionary)
        {
            _body.AppendString(value);
        }
        (long u1, long c1) = WritePage(PageDictionary, dictionary.Count, EncPlain);

        _body.Clear();
        int present = indices.Length;
        if (optional)
        {
            Span<byte> defined = indices.Length <= 4096 ? stackalloc byte[indices.Length] : new byte[indices.Length];
            present = 0;
            for (int i = 0; i < indices.Length; i++)
            {
                defined[i] = indices[i] >= 0 ? (byte)1 : (byte)0;
                present += defined[i];
            }
            AppendDefinitionLevels(defined);
        }
        int width = Math.Max(1, 32 - int.LeadingZeroCount(Math.Max(0, dictionary.Count - 1)));
        _body.AppendByte((byte)width);
        if (optional)
        {
            var dense = new int[present];
            int k = 0;
            foreach (int index in indices)
            {
                if (index >= 0)
                {
                    dense[k++] = index;
                }
            }
            AppendHybrid(dense, width);
        }
        else
        {
            AppendHybrid(indices, width);
        }
        long dataOffset = _position;
        (long u2, long c2) = WritePage(PageData, indices.Length, EncRleDictionary);
        _current!.Chunks.Add(new ChunkInfo(column, indices.Length, dictionaryOffset, dictionaryOffset, dataOffset, u1 + u2, c1 + c2, true));
    }

    /// <summary>
    /// A required INT32 column given as runs of equal values (<paramref name="values"/>[r] repeated
    /// <paramref name="lengths"/>[r] times): pids and tids, which the writer keeps per batch of one
    /// task rather than per row. A dictionary of the distinct values, and an RLE run per run.
    /// </summary>
    public void WriteInt32DictionaryRuns(ReadOnlySpan<int> values, ReadOnlySpan<int> lengths)
    {
        ColumnDef column = NextColumn(ColumnKind.DictionaryInt32);
        if (_intIndices.Length < values.Length)
        {
            _intIndices = new int[values.Length];
        }
        _intSlots.Clear();
        _intDictionary.Clear();
        for (int r = 0; r < values.Length; r++)
        {
            if (!_intSlots.TryGetValue(values[r], out int slot))
            {
                slot = _intDictionary.Count;
                _intSlots[values[r]] = slot;
                _intDictionary.Add(values[r]);
            }
            _intIndices[r] = slot;
        }
        long dictionaryOffset = _position;
        _body.Clear();
        _body.Append(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(_intDictionary)));
        (long u1, long c1) = WritePage(PageDictionary, _intDictionary.Count, EncPlain);
        WriteRunsPage(column, _intIndices.AsSpan(0, values.Length), lengths, _intDictionary.Count, dictionaryOffset, u1, c1);
    }

    /// <summary>A required string column given as runs of dictionary slots (see <see cref="WriteInt32DictionaryRuns"/>).</summary>
    public void WriteDictionaryRuns(ReadOnlySpan<int> indices, ReadOnlySpan<int> lengths, IReadOnlyList<string> dictionary)
    {
        ColumnDef column = NextColumn(ColumnKind.DictionaryString);
        long dictionaryOffset = _position;
        _body.Clear();
        foreach (string value in dictionary)
        {
            _body.AppendString(value);
        }
        (long u1, long c1) = WritePage(PageDictionary, dictionary.Count, EncPlain);
        WriteRunsPage(column, indices, lengths, dictionary.Count, dictionaryOffset, u1, c1);
    }

    /// <summary>The RLE_DICTIONARY data page of runs: one RLE run of the hybrid per run of equal slots (neighbours merged).</summary>
    private void WriteRunsPage(ColumnDef column, ReadOnlySpan<int> indices, ReadOnlySpan<int> lengths, int dictionarySize,
        long dictionaryOffset, long u1, long c1)
    {
        _body.Clear();
        int width = Math.Max(1, 32 - int.LeadingZeroCount(Math.Max(0, dictionarySize - 1)));
        _body.AppendByte((byte)width);
        long rows = 0;
        for (int r = 0; r < indices.Length; )
        {
            int index = indices[r];
            long length = 0;
            for (; r < indices.Length && indices[r] == index; r++)
            {
                length += lengths[r];
            }
            if (length == 0)
            {
                continue;
            }
            rows += length;
            _body.AppendVarInt((ulong)length << 1);
            for (int b = 0; b < (width + 7) / 8; b++)
            {
                _body.AppendByte((byte)(index >> (8 * b)));
            }
        }
        long dataOffset = _position;
        (long u2, long c2) = WritePage(PageData, (int)rows, EncRleDictionary);
        _current!.Chunks.Add(new ChunkInfo(column, rows, dictionaryOffset, dictionaryOffset, dataOffset, u1 + u2, c1 + c2, true));
    }

    private readonly Dictionary<int, int> _intSlots = new();
    private readonly List<int> _intDictionary = [];
    private int[] _intIndices = [];

    /// <summary>
    /// Definition levels of a flat optional column: RLE/bit-packed hybrid, width 1, with a 4-byte length
    /// prefix (data page v1). Rows come in batches of one kind, so a return probe's duration column
    /// is runs of present values between runs of entry rows' nulls: a few bytes per batch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AppendDefinitionLevels(ReadOnlySpan<byte> defined)
    {
        int lengthAt = _body.Length;
        _body.AppendInt32(0);
        int start = _body.Length;
        AppendHybrid(defined, 1);
        _body.PatchInt32(lengthAt, _body.Length - start);
    }

    /// <summary>
    /// Values in the RLE/bit-packed hybrid: a run of 8 or more equal values becomes one RLE run (a
    /// varint and the value), the rest bit-packed runs of whole groups of 8. Rows come in batches of
    /// one task and one probe, so pid, tid, comm, kind and probe are long runs: RLE costs a few bytes
    /// per run where bit-packing touches every value.
    /// </summary>
    private void AppendHybrid<T>(ReadOnlySpan<T> values, int width) where T : unmanaged, IBinaryInteger<T>
    {
        int i = 0;
        while (i < values.Length)
        {
            int run = RunFrom(values, i, int.MaxValue);
            if (run >= 8)
            {
                _body.AppendVarInt((ulong)run << 1);
                ulong value = ulong.CreateTruncating(values[i]);
                for (int b = 0; b < (width + 7) / 8; b++)
                {
                    _body.AppendByte((byte)(value >> (8 * b)));
                }
                i += run;
                continue;
            }
            // Groups of 8 until one starts a run of 8 (a bit-packed run holds whole groups; only the
            // last one of the data may be padded).
            int end = i + 8;
            while (end < values.Length && RunFrom(values, end, 8) < 8)
            {
                end += 8;
            }
            end = Math.Min(end, values.Length);
            AppendBitPacked(values[i..end], width);
            i = end;
        }
    }

    /// <summary>How many values from <paramref name="start"/> equal the one there, counting no further than <paramref name="limit"/>.</summary>
    private static int RunFrom<T>(ReadOnlySpan<T> values, int start, int limit) where T : unmanaged, IBinaryInteger<T>
    {
        ReadOnlySpan<T> rest = values.Slice(start, Math.Min(values.Length - start, limit));
        int other = rest.IndexOfAnyExcept(values[start]); // vectorised: runs are thousands of rows long
        return other < 0 ? rest.Length : other;
    }

    /// <summary>One bit-packed run of the RLE/bit-packed hybrid: groups of 8 values, LSB first; the tail group is padded.</summary>
    private void AppendBitPacked<T>(ReadOnlySpan<T> values, int width) where T : unmanaged, IBinaryInteger<T>
    {
        int groups = (values.Length + 7) / 8;
        _body.AppendVarInt(((ulong)groups << 1) | 1);
        Span<byte> packed = _body.Reserve(groups * width);
        Span<ulong> group = stackalloc ulong[8];
        for (int g = 0; g < groups; g++)
        {
            for (int j = 0; j < 8; j++)
            {
                int i = g * 8 + j;
                // Indices and levels are never negative: the value's bits are the value.
                group[j] = i < values.Length ? ulong.CreateTruncating(values[i]) : 0;
            }
            // 8 values of width bits fill exactly width bytes.
            PackBits(group, width, packed.Slice(g * width, width));
        }
    }

    /// <summary>
    /// <paramref name="values"/>, <paramref name="width"/> bits each, LSB first, into <paramref name="packed"/>
    /// (values.Length * width / 8 bytes: callers pack multiples of 8 values). Up to 56 bits a 64-bit
    /// accumulator holds a value plus the fewer than 8 bits still waiting; wider values need 128.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBits(ReadOnlySpan<ulong> values, int width, Span<byte> packed)
    {
        if (width == 0)
        {
            return;
        }
        int bits = 0, o = 0;
        if (width <= 32 && values.Length * width % 32 == 0)
        {
            // Whole 32-bit words (a delta miniblock: 32 values): a store per word, not per byte.
            ulong word = 0;
            foreach (ulong v in values)
            {
                word |= v << bits;
                bits += width;
                if (bits >= 32)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(packed[o..], (uint)word);
                    o += 4;
                    word >>= 32;
                    bits -= 32;
                }
            }
            return;
        }
        if (width <= 56)
        {
            ulong acc = 0;
            foreach (ulong v in values)
            {
                acc |= v << bits;
                for (bits += width; bits >= 8; bits -= 8)
                {
                    packed[o++] = (byte)acc;
                    acc >>= 8;
                }
            }
            return;
        }
        UInt128 wide = 0;
        foreach (ulong v in values)
        {
            wide |= (UInt128)v << bits;
            for (bits += width; bits >= 8; bits -= 8)
            {
                packed[o++] = (byte)wide;
                wide >>= 8;
            }
        }
    }

    /// <summary>Compresses the body, writes header and page; returns (uncompressed, compressed) sizes including the header.</summary>
    private (long Uncompressed, long Compressed) WritePage(int pageType, int numValues, int encoding)
    {
        ReadOnlySpan<byte> body = _body.Span;
        int max = Snappy.GetMaxCompressedLength(body.Length);
        if (_compressed.Length < max)
        {
            _compressed = new byte[Math.Max(max, _compressed.Length * 2)];
        }
        int compressedLength = Snappy.Compress(body, _compressed);

        _header.Clear();
        var t = new ThriftCompactWriter(_header);
        t.BeginStruct();
        t.I32Field(1, pageType);
        t.I32Field(2, body.Length);
        t.I32Field(3, compressedLength);
        if (pageType == PageData)
        {
            t.StructField(5);
            t.I32Field(1, numValues);
            t.I32Field(2, encoding);
            t.I32Field(3, EncRle);
            t.I32Field(4, EncRle);
            t.EndStruct();
        }
        else
        {
            t.StructField(7);
            t.I32Field(1, numValues);
            t.I32Field(2, encoding);
            t.EndStruct();
        }
        t.EndStruct();
        Write(_header.Span);
        Write(_compressed.AsSpan(0, compressedLength));
        return (_header.Length + body.Length, _header.Length + compressedLength);
    }

    /// <summary>Writes the footer (schema, row groups, key/value metadata), its length and the closing magic.</summary>
    public void Finish(IReadOnlyDictionary<string, string> keyValues, string createdBy)
    {
        var footer = new ByteBuffer();
        var t = new ThriftCompactWriter(footer);
        t.BeginStruct();
        t.I32Field(1, 1);
        t.ListField(2, ThriftCompactWriter.Struct, _columns.Count + 1);
        t.BeginStruct();
        t.StringField(4, "schema");
        t.I32Field(5, _columns.Count);
        t.EndStruct();
        foreach (ColumnDef c in _columns)
        {
            WriteSchemaElement(t, c);
        }
        t.I64Field(3, _rowGroups.Sum(g => g.Rows));
        t.ListField(4, ThriftCompactWriter.Struct, _rowGroups.Count);
        foreach (RowGroupInfo g in _rowGroups)
        {
            t.BeginStruct();
            t.ListField(1, ThriftCompactWriter.Struct, g.Chunks.Count);
            foreach (ChunkInfo chunk in g.Chunks)
            {
                t.BeginStruct();
                t.I64Field(2, chunk.FirstPageOffset);
                t.StructField(3);
                t.I32Field(1, PhysicalType(chunk.Column.Kind));
                int[] encodings = chunk.Dictionary ? [EncPlain, EncRle, EncRleDictionary]
                    : chunk.DataEncoding == EncDeltaBinaryPacked ? [EncDeltaBinaryPacked, EncRle]
                    : [EncPlain, EncRle];
                t.ListField(2, ThriftCompactWriter.I32, encodings.Length);
                foreach (int e in encodings)
                {
                    t.I32Value(e);
                }
                t.ListField(3, ThriftCompactWriter.Binary, 1);
                t.StringValue(chunk.Column.Name);
                t.I32Field(4, CodecSnappy);
                t.I64Field(5, chunk.NumValues);
                t.I64Field(6, chunk.UncompressedSize);
                t.I64Field(7, chunk.CompressedSize);
                t.I64Field(9, chunk.DataOffset);
                if (chunk.DictionaryOffset is long d)
                {
                    t.I64Field(11, d);
                }
                t.EndStruct();
                t.EndStruct();
            }
            t.I64Field(2, g.Chunks.Sum(c => c.UncompressedSize));
            t.I64Field(3, g.Rows);
            t.EndStruct();
        }
        t.ListField(5, ThriftCompactWriter.Struct, keyValues.Count);
        foreach ((string key, string value) in keyValues)
        {
            t.BeginStruct();
            t.StringField(1, key);
            t.StringField(2, value);
            t.EndStruct();
        }
        t.StringField(6, createdBy);
        t.EndStruct();
        Write(footer.Span);
        Span<byte> tail = stackalloc byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(tail, footer.Length);
        "PAR1"u8.CopyTo(tail[4..]);
        Write(tail);
    }

    private static int PhysicalType(ColumnKind kind) => kind switch
    {
        ColumnKind.RequiredInt32 => TypeInt32,
        ColumnKind.DictionaryInt32 => TypeInt32,
        ColumnKind.RequiredInt64 or ColumnKind.DeltaInt64 or ColumnKind.OptionalInt64 or ColumnKind.OptionalUInt64 => TypeInt64,
        _ => TypeByteArray,
    };

    private static void WriteSchemaElement(ThriftCompactWriter t, ColumnDef c)
    {
        t.BeginStruct();
        t.I32Field(1, PhysicalType(c.Kind));
        t.I32Field(3, c.Kind is ColumnKind.RequiredInt32 or ColumnKind.RequiredInt64 or ColumnKind.DeltaInt64
            or ColumnKind.DictionaryInt32 or ColumnKind.DictionaryString ? RepRequired : RepOptional);
        t.StringField(4, c.Name);
        switch (c.Kind)
        {
            case ColumnKind.DictionaryString or ColumnKind.OptionalDictionaryString:
                t.I32Field(6, ConvertedUtf8);
                t.StructField(10);      // LogicalType union
                t.StructField(1);       // STRING
                t.EndStruct();
                t.EndStruct();
                break;
            case ColumnKind.OptionalUInt64:
                t.I32Field(6, ConvertedUInt64);
                t.StructField(10);
                t.StructField(10);      // INTEGER
                t.ByteField(1, 64);
                t.BoolField(2, false);
                t.EndStruct();
                t.EndStruct();
                break;
        }
        t.EndStruct();
    }

    private void Write(ReadOnlySpan<byte> bytes)
    {
        _stream.Write(bytes);
        _position += bytes.Length;
    }
}

/// <summary>A growable byte buffer for page bodies, headers and the footer.</summary>
internal sealed class ByteBuffer
{
    private byte[] _data = new byte[1024];
    private int _length;

    public int Length => _length;
    public ReadOnlySpan<byte> Span => _data.AsSpan(0, _length);

    public void Clear() => _length = 0;

    private void Ensure(int extra)
    {
        if (_length + extra > _data.Length)
        {
            Array.Resize(ref _data, Math.Max(_length + extra, _data.Length * 2));
        }
    }

    public Span<byte> Reserve(int count)
    {
        Ensure(count);
        Span<byte> span = _data.AsSpan(_length, count);
        span.Clear();
        _length += count;
        return span;
    }

    public void Append(ReadOnlySpan<byte> bytes)
    {
        Ensure(bytes.Length);
        bytes.CopyTo(_data.AsSpan(_length));
        _length += bytes.Length;
    }

    public void AppendByte(byte b)
    {
        Ensure(1);
        _data[_length++] = b;
    }

    public void AppendInt32(int v)
    {
        Ensure(4);
        BinaryPrimitives.WriteInt32LittleEndian(_data.AsSpan(_length), v);
        _length += 4;
    }

    public void AppendInt64(long v)
    {
        Ensure(8);
        BinaryPrimitives.WriteInt64LittleEndian(_data.AsSpan(_length), v);
        _length += 8;
    }

    public void PatchInt32(int at, int v) => BinaryPrimitives.WriteInt32LittleEndian(_data.AsSpan(at), v);

    public void AppendVarInt(ulong v)
    {
        while (v >= 0x80)
        {
            AppendByte((byte)(v | 0x80));
            v >>= 7;
        }
        AppendByte((byte)v);
    }

    /// <summary>PLAIN BYTE_ARRAY: 4-byte little-endian length, then the UTF-8 bytes.</summary>
    public void AppendString(string s)
    {
        int max = Encoding.UTF8.GetMaxByteCount(s.Length);
        Ensure(4 + max);
        int n = Encoding.UTF8.GetBytes(s, _data.AsSpan(_length + 4));
        BinaryPrimitives.WriteInt32LittleEndian(_data.AsSpan(_length), n);
        _length += 4 + n;
    }
}
