using System.Globalization;
using Parquet;
using Parquet.Schema;
using Uprec.Trace.ParquetEncoding;

namespace Uprec.Trace;

/// <summary>
/// One row group of a trace, column by column. Columns that were not requested are empty arrays
/// (check <see cref="Has"/>). Probe and comm strings repeat per row; compare them with ordinal equality.
/// </summary>
public sealed class TraceBatch
{
    public required int Count { get; init; }
    public required int RowGroup { get; init; }
    public long[] TimeNs { get; init; } = [];
    public int[] Pid { get; init; } = [];
    public int[] Tid { get; init; } = [];
    public string[] Probe { get; init; } = [];
    public HitKind[] Kind { get; init; } = [];
    /// <summary>Entry-to-return nanoseconds; null on entries and on returns whose entry was not seen.</summary>
    public long?[] DurationNs { get; init; } = [];
    public string[] Comm { get; init; } = [];
    /// <summary>Captured-argument columns by name: long?[], ulong?[] or string?[] as <see cref="ArgColumn.Type"/> says.</summary>
    public IReadOnlyDictionary<string, Array> Args { get; init; } = new Dictionary<string, Array>();

    public bool Has(string column) => column switch
    {
        TraceColumns.TimeNs => TimeNs.Length == Count,
        TraceColumns.Pid => Pid.Length == Count,
        TraceColumns.Tid => Tid.Length == Count,
        TraceColumns.Probe => Probe.Length == Count,
        TraceColumns.Kind => Kind.Length == Count,
        TraceColumns.DurationNs => DurationNs.Length == Count,
        TraceColumns.Comm => Comm.Length == Count,
        _ => Args.ContainsKey(column),
    };
}

/// <summary>
/// Opens a uprec trace and streams it one row group at a time, so a reader's memory is bounded by the
/// largest row group. Every failure to read is a <see cref="TraceFormatException"/> naming the file.
/// </summary>
public sealed class TraceReader : IDisposable
{
    /// <summary>How long decoding a footer may take before the file is called damaged.</summary>
    private static readonly TimeSpan FooterTimeout = TimeSpan.FromSeconds(5);

    private readonly Stream _stream;
    private readonly ParquetReader _parquet;
    private readonly Dictionary<string, DataField> _fields;

    private TraceReader(string path, Stream stream, ParquetReader parquet, TraceMetadata metadata,
        Dictionary<string, DataField> fields, IReadOnlyList<ArgColumn> argColumns)
    {
        Path = path;
        _stream = stream;
        _parquet = parquet;
        Metadata = metadata;
        _fields = fields;
        ArgColumns = argColumns;
        RowGroupCount = parquet.RowGroupCount;
        RowCount = parquet.Metadata?.RowGroups.Sum(g => g.NumRows) ?? 0;
    }

    public string Path { get; }
    public TraceMetadata Metadata { get; }
    public IReadOnlyList<ArgColumn> ArgColumns { get; }
    public int RowGroupCount { get; }
    public long RowCount { get; }

    public static TraceReader Open(string path)
    {
        if (Directory.Exists(path))
        {
            throw new TraceFormatException($"trace '{path}' is a directory, not a trace file");
        }
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new TraceFormatException($"trace '{path}' does not exist (record one with 'uprec record -o {path} ...')");
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            throw new TraceFormatException($"cannot open trace '{path}': {e.Message}", e);
        }

        try
        {
            if (stream.Length == 0)
            {
                throw new TraceFormatException($"trace '{path}' is empty (was the recording interrupted before it started?)");
            }
            if (!HasParquetMagic(stream))
            {
                throw new TraceFormatException($"'{path}' is not a Parquet file, or it is truncated");
            }
            ParquetReader parquet;
            try
            {
                // Parquet.Net 6.1.0 can loop forever on some damaged footers: a footer of ours decodes in
                // milliseconds, so one that takes longer than this is refused as damaged rather than hanging.
                Task<ParquetReader> opening = Task.Run(() => ParquetReader.CreateAsync(stream, new ParquetOptions(), leaveStreamOpen: true));
                if (!opening.Wait(FooterTimeout))
                {
                    throw new TraceFormatException($"'{path}' is not a readable Parquet file (its footer could not be decoded in {FooterTimeout.TotalSeconds:0} s; the file is damaged)");
                }
                parquet = opening.GetAwaiter().GetResult();
            }
            catch (TraceFormatException)
            {
                throw;
            }
            catch (Exception e)
            {
                Exception inner = e is AggregateException { InnerException: { } only } ? only : e;
                throw new TraceFormatException($"'{path}' is not a readable Parquet file ({OneLine(inner.Message)})", inner);
            }
            try
            {
                return Create(path, stream, parquet);
            }
            catch (Exception e) when (e is not TraceFormatException and not OutOfMemoryException)
            {
                // Parquet.Net decodes parts of the footer lazily; a damaged one fails here, in any way.
                parquet.DisposeAsync().AsTask().GetAwaiter().GetResult();
                throw new TraceFormatException($"'{path}' has an unreadable Parquet footer ({OneLine(e.Message)})", e);
            }
            catch
            {
                parquet.DisposeAsync().AsTask().GetAwaiter().GetResult();
                throw;
            }
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    private static TraceReader Create(string path, Stream stream, ParquetReader parquet)
    {
        Dictionary<string, string> custom = parquet.CustomMetadata ?? new Dictionary<string, string>();
        if (!custom.TryGetValue(TraceColumns.SchemaVersionKey, out string? versionText))
        {
            throw new TraceFormatException(
                $"'{path}' is a Parquet file but not a uprec trace (no '{TraceColumns.SchemaVersionKey}' in its footer)");
        }
        if (!int.TryParse(versionText, NumberStyles.None, CultureInfo.InvariantCulture, out int version) || version < 1)
        {
            throw new TraceFormatException($"trace '{path}' has an invalid schema version '{versionText}'");
        }
        if (version > TraceSchema.Version)
        {
            throw new TraceFormatException(
                $"trace '{path}' has schema version {version}; this uprec reads up to {TraceSchema.Version}: upgrade uprec");
        }
        if (!custom.TryGetValue(TraceColumns.MetadataKey, out string? json))
        {
            throw new TraceFormatException($"trace '{path}' has no '{TraceColumns.MetadataKey}' footer entry");
        }
        TraceMetadata metadata = TraceMetadataJson.Deserialize(json, path);

        var fields = new Dictionary<string, DataField>(StringComparer.Ordinal);
        foreach (DataField field in parquet.Schema.DataFields)
        {
            fields[field.Name] = field;
        }
        RequireColumn(path, fields, TraceColumns.TimeNs, typeof(long));
        RequireColumn(path, fields, TraceColumns.Pid, typeof(int));
        RequireColumn(path, fields, TraceColumns.Tid, typeof(int));
        RequireColumn(path, fields, TraceColumns.Probe, typeof(ReadOnlyMemory<char>), typeof(string));
        RequireColumn(path, fields, TraceColumns.Kind, typeof(ReadOnlyMemory<char>), typeof(string));
        RequireColumn(path, fields, TraceColumns.DurationNs, typeof(long));
        RequireColumn(path, fields, TraceColumns.Comm, typeof(ReadOnlyMemory<char>), typeof(string));

        var args = new List<ArgColumn>();
        foreach (DataField field in parquet.Schema.DataFields)
        {
            if (TraceColumns.Fixed.Contains(field.Name))
            {
                continue;
            }
            ArgColumnType type = field.ClrType == typeof(long) ? ArgColumnType.Int64
                : field.ClrType == typeof(ulong) ? ArgColumnType.UInt64
                : field.ClrType == typeof(string) || field.ClrType == typeof(ReadOnlyMemory<char>) ? ArgColumnType.String
                : throw new TraceFormatException(
                    $"trace '{path}' has argument column '{field.Name}' of unsupported type {field.ClrType.Name}");
            args.Add(new ArgColumn(field.Name, type));
        }
        return new TraceReader(path, stream, parquet, metadata, fields, args);
    }

    private static void RequireColumn(string path, Dictionary<string, DataField> fields, string name, params Type[] types)
    {
        if (!fields.TryGetValue(name, out DataField? field))
        {
            throw new TraceFormatException($"trace '{path}' lacks the '{name}' column");
        }
        if (!types.Contains(field.ClrType))
        {
            throw new TraceFormatException($"trace '{path}' column '{name}' has type {field.ClrType.Name}, expected {types[0].Name}");
        }
    }

    private static bool HasParquetMagic(Stream stream)
    {
        if (stream.Length < 12)
        {
            return false;
        }
        Span<byte> head = stackalloc byte[4];
        Span<byte> tail = stackalloc byte[4];
        stream.Position = 0;
        stream.ReadExactly(head);
        stream.Position = stream.Length - 4;
        stream.ReadExactly(tail);
        stream.Position = 0;
        return head.SequenceEqual("PAR1"u8) && tail.SequenceEqual("PAR1"u8);
    }

    /// <summary>The number of rows in row group <paramref name="index"/>, from the footer (no data read).</summary>
    public long RowGroupRows(int index) => _parquet.Metadata!.RowGroups[index].NumRows;

    /// <summary>
    /// Reads one row group. <paramref name="columns"/> names the columns to read (fixed or argument
    /// columns); null reads all. Unknown argument names are ignored (their column is absent).
    /// </summary>
    /// <param name="recycle">
    /// A batch this reader returned earlier that the caller no longer uses: its arrays are reused when
    /// the sizes match, which keeps a long scan from churning the large-object heap.
    /// </param>
    public TraceBatch ReadRowGroup(int index, IReadOnlySet<string>? columns = null, TraceBatch? recycle = null)
    {
        if (index < 0 || index >= RowGroupCount)
        {
            throw new ArgumentOutOfRangeException(nameof(index));
        }
        try
        {
            using ParquetRowGroupReader group = _parquet.OpenRowGroupReader(index);
            int n = checked((int)group.RowCount);
            bool Want(string c) => columns is null || columns.Contains(c);

            var args = new Dictionary<string, Array>(StringComparer.Ordinal);
            foreach (ArgColumn arg in ArgColumns)
            {
                if (!Want(arg.Name))
                {
                    continue;
                }
                DataField field = _fields[arg.Name];
                args[arg.Name] = arg.Type switch
                {
                    ArgColumnType.Int64 => Fast<long?[]>(index, field, c => { var v = new long?[n]; _fast!.ReadOptionalInt64(c, v); return v; },
                        () => ReadNullable<long>(group, field, n)),
                    ArgColumnType.UInt64 => Fast<ulong?[]>(index, field, c =>
                        {
                            var raw = new long?[n];
                            _fast!.ReadOptionalInt64(c, raw);
                            return raw.Select(x => x is long v ? (ulong?)unchecked((ulong)v) : null).ToArray();
                        },
                        () => ReadNullable<ulong>(group, field, n)),
                    _ => Fast<string?[]>(index, field, c => { var v = new string?[n]; _fast!.ReadStrings(c, v, optional: true, Decode); return v; },
                        () => ReadStrings(group, field, n)),
                };
            }
            return new TraceBatch
            {
                Count = n,
                RowGroup = index,
                TimeNs = Want(TraceColumns.TimeNs) ? ReadLongs(index, group, Reuse(recycle?.TimeNs, n)) : [],
                Pid = Want(TraceColumns.Pid) ? ReadInts(index, group, _fields[TraceColumns.Pid], Reuse(recycle?.Pid, n)) : [],
                Tid = Want(TraceColumns.Tid) ? ReadInts(index, group, _fields[TraceColumns.Tid], Reuse(recycle?.Tid, n)) : [],
                Probe = Want(TraceColumns.Probe) ? ReadNames(index, group, _fields[TraceColumns.Probe], Reuse(recycle?.Probe, n)) : [],
                Kind = Want(TraceColumns.Kind) ? ReadKindColumn(index, group, Reuse(recycle?.Kind, n)) : [],
                DurationNs = Want(TraceColumns.DurationNs)
                    ? Fast(index, _fields[TraceColumns.DurationNs],
                        c => { long?[] v = Reuse(recycle?.DurationNs, n); _fast!.ReadOptionalInt64(c, v); return v; },
                        () => ReadNullable(group, _fields[TraceColumns.DurationNs], Reuse(recycle?.DurationNs, n)))
                    : [],
                Comm = Want(TraceColumns.Comm) ? ReadNames(index, group, _fields[TraceColumns.Comm], Reuse(recycle?.Comm, n)) : [],
                Args = args,
            };
        }
        catch (TraceFormatException)
        {
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new TraceFormatException($"trace '{Path}' row group {index} is unreadable ({OneLine(e.Message)})", e);
        }
    }

    /// <summary>Streams all row groups in file order.</summary>
    public IEnumerable<TraceBatch> ReadBatches(IReadOnlySet<string>? columns = null)
    {
        for (int i = 0; i < RowGroupCount; i++)
        {
            yield return ReadRowGroup(i, columns);
        }
    }

    /// <summary>Turns off the direct decoder (tests compare both paths).</summary>
    internal static bool DisableFastPath { get; set; }

    private FastChunkReader? _fast;
    private static long _fallbacks;

    /// <summary>Column chunks decoded by Parquet.Net because the fast path did not support their shape.</summary>
    internal static long FastPathFallbacks => Interlocked.Read(ref _fallbacks);
    private string?[] _kindText = [];

    /// <summary>
    /// Decodes with <see cref="FastChunkReader"/> when the chunk's shape allows, else with Parquet.Net.
    /// Malformed data is an error either way (wrapped by the caller); only an unsupported shape falls back.
    /// </summary>
    private T Fast<T>(int rowGroup, DataField field, Func<FastChunkReader.Chunk, T> fast, Func<T> slow)
    {
        if (!DisableFastPath && ChunkOf(rowGroup, field.Name) is FastChunkReader.Chunk chunk)
        {
            _fast ??= new FastChunkReader(_stream);
            try
            {
                return fast(chunk);
            }
            catch (FastPathUnsupportedException)
            {
                Interlocked.Increment(ref _fallbacks);
            }
        }
        return slow();
    }

    private FastChunkReader.Chunk? ChunkOf(int rowGroup, string column)
    {
        foreach (Parquet.Meta.ColumnChunk c in _parquet.Metadata!.RowGroups[rowGroup].Columns)
        {
            Parquet.Meta.ColumnMetaData? m = c.MetaData;
            if (m is null || m.PathInSchema.Count != 1 || m.PathInSchema[0] != column)
            {
                continue;
            }
            long start = m.DictionaryPageOffset is long d && d > 0 && d < m.DataPageOffset ? d : m.DataPageOffset;
            return new FastChunkReader.Chunk(start, m.TotalCompressedSize, (int)m.Codec, m.NumValues);
        }
        return null;
    }

    // Other writers (DuckDB, pyarrow) declare every column optional even when it has no nulls. The fast
    // decoder's fixed-width path reads required columns only (an optional page starts with its definition
    // levels), so such columns go through Parquet.Net, and a null in them is an error, not a zero.
    private long[] ReadLongs(int index, ParquetRowGroupReader group, long[] values) =>
        _fields[TraceColumns.TimeNs].IsNullable
            ? NoNulls(ReadNullable<long>(group, _fields[TraceColumns.TimeNs], values.Length), values, TraceColumns.TimeNs)
            : Fast(index, _fields[TraceColumns.TimeNs], c => { _fast!.ReadInt64(c, values); return values; },
                () => Read(group, _fields[TraceColumns.TimeNs], values));

    private int[] ReadInts(int index, ParquetRowGroupReader group, DataField field, int[] values) =>
        field.IsNullable
            ? NoNulls(ReadNullable<int>(group, field, values.Length), values, field.Name)
            : Fast(index, field, c => { _fast!.ReadInt32(c, values); return values; }, () => Read(group, field, values));

    private T[] NoNulls<T>(T?[] read, T[] values, string column) where T : struct
    {
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = read[i] ?? throw new TraceFormatException($"trace '{Path}' has null values in the required column '{column}'");
        }
        return values;
    }

    private string[] ReadNames(int index, ParquetRowGroupReader group, DataField field, string[] values) =>
        Fast(index, field, c =>
            {
                _fast!.ReadStrings(c, values!, optional: field.IsNullable, Intern);
                if (field.IsNullable && Array.IndexOf(values, null) >= 0)
                {
                    throw new TraceFormatException($"trace '{Path}' has null values in the required column '{field.Name}'");
                }
                return values;
            },
            () => ReadRequiredStrings(group, field, values));

    private HitKind[] ReadKindColumn(int index, ParquetRowGroupReader group, HitKind[] kinds) =>
        Fast(index, _fields[TraceColumns.Kind], c =>
            {
                if (_kindText.Length != kinds.Length)
                {
                    _kindText = new string?[kinds.Length];
                }
                string?[] text = _kindText;
                _fast!.ReadStrings(c, text, optional: _fields[TraceColumns.Kind].IsNullable, Intern);
                // Interned: each row holds one of a few instances, so a reference check decides.
                // Entries and returns interleave at random, so the loop avoids data-dependent branches:
                // it computes the kind from one reference compare and checks validity once at the end.
                string entry = Intern("entry"u8), ret = Intern("return"u8);
                bool unknown = false;
                for (int i = 0; i < kinds.Length; i++)
                {
                    string? k = text[i];
                    bool isReturn = ReferenceEquals(k, ret);
                    unknown |= !isReturn & !ReferenceEquals(k, entry);
                    kinds[i] = (HitKind)(isReturn ? 1 : 0);
                }
                if (unknown)
                {
                    string? k = text.First(t => !ReferenceEquals(t, entry) && !ReferenceEquals(t, ret));
                    throw new TraceFormatException(k is null
                        ? $"trace '{Path}' has null values in the required column '{TraceColumns.Kind}'"
                        : $"trace '{Path}' has an unknown kind '{k}' (expected entry or return)");
                }
                return kinds;
            },
            () => ReadKinds(group, kinds));

    /// <summary>One string instance per distinct probe name or comm, shared by every row group.</summary>
    private string Intern(ReadOnlySpan<byte> utf8)
    {
        Span<char> chars = utf8.Length <= 512 ? stackalloc char[utf8.Length] : new char[utf8.Length];
        int length = System.Text.Encoding.UTF8.GetChars(utf8, chars);
        HashSet<string>.AlternateLookup<ReadOnlySpan<char>> lookup = _interned.GetAlternateLookup<ReadOnlySpan<char>>();
        if (!lookup.TryGetValue(chars[..length], out string? s))
        {
            s = new string(chars[..length]);
            _interned.Add(s);
        }
        return s;
    }

    // Argument strings (paths, names) are not interned: their variety is unbounded.
    private static string Decode(ReadOnlySpan<byte> utf8) => System.Text.Encoding.UTF8.GetString(utf8);

    private static T[] Reuse<T>(T[]? old, int n) => old is not null && old.Length == n ? old : new T[n];

    private HitKind[] ReadKinds(ParquetRowGroupReader group, HitKind[] kinds)
    {
        int n = kinds.Length;
        if (_fields[TraceColumns.Kind].IsNullable)
        {
            string[] text = ReadRequiredStrings(group, _fields[TraceColumns.Kind], new string[n]);
            for (int i = 0; i < n; i++)
            {
                kinds[i] = text[i] == TraceColumns.KindEntry ? HitKind.Entry : text[i] == TraceColumns.KindReturn ? HitKind.Return
                    : throw new TraceFormatException($"trace '{Path}' has an unknown kind '{text[i]}' (expected entry or return)");
            }
            return kinds;
        }
        ReadOnlyMemory<char>[] raw = ReadRaw(group, _fields[TraceColumns.Kind], n);
        ReadOnlyMemory<char> last = default;
        HitKind lastKind = HitKind.Entry;
        for (int i = 0; i < n; i++)
        {
            ReadOnlyMemory<char> k = raw[i];
            // Dictionary-decoded values share the dictionary's memory, so a repeat is a struct compare.
            if (i > 0 && k.Equals(last))
            {
                kinds[i] = lastKind;
                continue;
            }
            lastKind = k.Span.SequenceEqual(TraceColumns.KindEntry) ? HitKind.Entry
                : k.Span.SequenceEqual(TraceColumns.KindReturn) ? HitKind.Return
                : throw new TraceFormatException($"trace '{Path}' has an unknown kind '{k}' (expected entry or return)");
            last = k;
            kinds[i] = lastKind;
        }
        return kinds;
    }

    // Scratch for raw string slices, reused across columns and row groups of this reader.
    private ReadOnlyMemory<char>[] _raw = [];

    private ReadOnlyMemory<char>[] ReadRaw(ParquetRowGroupReader group, DataField field, int n)
    {
        if (_raw.Length < n)
        {
            _raw = new ReadOnlyMemory<char>[n];
        }
        group.ReadRawAsync<ReadOnlyMemory<char>>(field, _raw.AsMemory(0, n), null, null).AsTask().GetAwaiter().GetResult();
        return _raw;
    }

    private static T[] Read<T>(ParquetRowGroupReader group, DataField field, T[] values) where T : struct
    {
        group.ReadAsync<T>(field, values.AsMemory()).AsTask().GetAwaiter().GetResult();
        return values;
    }

    private static T?[] ReadNullable<T>(ParquetRowGroupReader group, DataField field, int n) where T : struct =>
        ReadNullable(group, field, new T?[n]);

    private static T?[] ReadNullable<T>(ParquetRowGroupReader group, DataField field, T?[] values) where T : struct
    {
        group.ReadAsync<T>(field, values.AsMemory()).AsTask().GetAwaiter().GetResult();
        return values;
    }

    private static string?[] ReadStrings(ParquetRowGroupReader group, DataField field, int n)
    {
        var values = new string?[n];
        group.ReadAsync(field, values.AsMemory()).AsTask().GetAwaiter().GetResult();
        return values;
    }

    /// <summary>
    /// Reads a required string column as shared string instances: Parquet.Net's string API allocates a
    /// new string per row (over 100 ns a row here), while its raw API hands out slices of the column
    /// dictionary, which repeat and are interned once per distinct value.
    /// </summary>
    private string[] ReadRequiredStrings(ParquetRowGroupReader group, DataField field, string[] values)
    {
        int n = values.Length;
        if (field.IsNullable)
        {
            group.ReadAsync(field, values.AsMemory()!).AsTask().GetAwaiter().GetResult();
            if (n > 0 && Array.IndexOf(values, null) >= 0)
            {
                throw new TraceFormatException($"trace '{Path}' has null values in the required column '{field.Name}'");
            }
            return values;
        }
        ReadOnlyMemory<char>[] raw = ReadRaw(group, field, n);
        HashSet<string>.AlternateLookup<ReadOnlySpan<char>> lookup = _interned.GetAlternateLookup<ReadOnlySpan<char>>();
        // The distinct slices met in this row group (a dictionary has few), searched before hashing.
        Span<ReadOnlyMemory<char>> seen = new ReadOnlyMemory<char>[16];
        var seenStrings = new string[16];
        int seenCount = 0;
        for (int i = 0; i < n; i++)
        {
            ReadOnlyMemory<char> v = raw[i];
            int j = 0;
            while (j < seenCount && !seen[j].Equals(v))
            {
                j++;
            }
            if (j < seenCount)
            {
                values[i] = seenStrings[j];
                continue;
            }
            if (!lookup.TryGetValue(v.Span, out string? s))
            {
                s = v.ToString();
                _interned.Add(s);
            }
            if (seenCount < seen.Length)
            {
                seen[seenCount] = v;
                seenStrings[seenCount++] = s;
            }
            values[i] = s;
        }
        return values;
    }

    // Probe names and comms seen so far; the same instances are handed out for every row group.
    private readonly HashSet<string> _interned = new(StringComparer.Ordinal);

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    public void Dispose()
    {
        _parquet.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _stream.Dispose();
    }
}
