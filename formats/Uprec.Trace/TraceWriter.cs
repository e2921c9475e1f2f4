using System.IO.Compression;
using Parquet;
using Parquet.Schema;

namespace Uprec.Trace;

public sealed record TraceWriterOptions
{
    /// <summary>Rows per Parquet row group; the writer's memory is bounded by one row group.</summary>
    public int RowGroupSize { get; init; } = 1 << 20;

    /// <summary>
    /// The probes whose hits will be appended, indexed by <see cref="ProbeMeta.Id"/>. They must be known
    /// up front: the probe column stores each hit's probe name, and the schema needs one column per
    /// captured-argument name before the first row group is written. A hit with an id not listed here is
    /// written under the name "#ID" and its arguments are dropped.
    /// </summary>
    public IReadOnlyList<ProbeMeta> Probes { get; init; } = [];
}

/// <summary>
/// Writes a trace file row group by row group. Rows go to a temporary file next to the target path,
/// which is renamed over the target only by <see cref="Complete"/>, so the target is always either
/// absent, the previous file, or a complete trace. Not thread-safe: one thread appends.
/// </summary>
public sealed class TraceWriter : IDisposable
{
    private readonly string _path;
    private readonly string _tempPath;
    private readonly int _rowGroupSize;
    private readonly FileStream _stream;
    private readonly ParquetWriter _parquet;
    private readonly DataField[] _fixedFields;
    private readonly DataField[] _argFields;
    private readonly IReadOnlyList<ArgColumn> _argColumns;
    // Per probe id: its name, and for each of its arguments the index of the arg column it lands in.
    private readonly Dictionary<int, (ReadOnlyMemory<char> Name, int[] ArgColumn)> _probes = new();

    // Column buffers of the current row group; they grow on demand up to _rowGroupSize.
    private long[] _time = [];
    private int[] _pid = [];
    private int[] _tid = [];
    private ReadOnlyMemory<char>[] _probe = [];
    private HitKind[] _kind = [];
    private long[] _duration = [];
    private string[] _comm = [];
    private object?[][] _args;
    private int _buffered;

    private long _rowsWritten;
    private bool _completed;
    private bool _disposed;

    private static readonly ReadOnlyMemory<char> EntryText = TraceColumns.KindEntry.AsMemory();
    private static readonly ReadOnlyMemory<char> ReturnText = TraceColumns.KindReturn.AsMemory();

    public TraceWriter(string path, TraceWriterOptions? options = null)
    {
        options ??= new TraceWriterOptions();
        if (options.RowGroupSize <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "RowGroupSize must be positive");
        }
        _path = Path.GetFullPath(path);
        _rowGroupSize = options.RowGroupSize;
        _argColumns = ArgColumn.FromProbes(options.Probes);
        var argIndex = _argColumns.Select((c, i) => (c.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);
        foreach (ProbeMeta probe in options.Probes)
        {
            _probes[probe.Id] = (probe.Name.AsMemory(), probe.Args.Select(a => argIndex[a.Name]).ToArray());
        }
        _args = new object?[_argColumns.Count][];
        for (int i = 0; i < _args.Length; i++)
        {
            _args[i] = [];
        }

        string directory = Path.GetDirectoryName(_path) ?? ".";
        // A hidden name in the same directory: the final rename must stay on one filesystem to be atomic.
        _tempPath = Path.Combine(directory, $".{Path.GetFileName(_path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            _stream = new FileStream(_tempPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16);
        }
        catch (DirectoryNotFoundException)
        {
            throw new TraceFormatException($"cannot write trace '{path}': directory '{directory}' does not exist");
        }
        catch (UnauthorizedAccessException)
        {
            throw new TraceFormatException($"cannot write trace '{path}': permission denied in directory '{directory}'");
        }
        catch (IOException e)
        {
            throw new TraceFormatException($"cannot write trace '{path}': {e.Message}", e);
        }

        _fixedFields =
        [
            new DataField<long>(TraceColumns.TimeNs),
            new DataField<int>(TraceColumns.Pid),
            new DataField<int>(TraceColumns.Tid),
            new DataField<string>(TraceColumns.Probe, false),
            new DataField<string>(TraceColumns.Kind, false),
            new DataField<long?>(TraceColumns.DurationNs),
            new DataField<string>(TraceColumns.Comm, false),
        ];
        _argFields = _argColumns.Select(c => c.ToField()).ToArray();
        var schema = new ParquetSchema([.. _fixedFields, .. _argFields]);
        var parquetOptions = new ParquetOptions
        {
            CompressionMethod = CompressionMethod.Snappy,
            // The default level (SmallestSize) makes compression the bottleneck; Fastest keeps the
            // writer above 20 M rows/s while Snappy still shrinks the repetitive columns several-fold.
            CompressionLevel = CompressionLevel.Fastest,
        };
        // Parquet.Net dictionary-encodes a string column only when asked; these repeat a handful of values.
        parquetOptions.ColumnEncodingHints[TraceColumns.Probe] = EncodingHint.Dictionary;
        parquetOptions.ColumnEncodingHints[TraceColumns.Kind] = EncodingHint.Dictionary;
        parquetOptions.ColumnEncodingHints[TraceColumns.Comm] = EncodingHint.Dictionary;
        foreach (ArgColumn arg in _argColumns.Where(a => a.Type == ArgColumnType.String))
        {
            parquetOptions.ColumnEncodingHints[arg.Name] = EncodingHint.Dictionary;
        }
        try
        {
            _parquet = ParquetWriter.CreateAsync(schema, _stream, parquetOptions).GetAwaiter().GetResult();
        }
        catch
        {
            _stream.Dispose();
            File.Delete(_tempPath);
            throw;
        }
    }

    public long RowsWritten => _rowsWritten;

    /// <summary>The argument columns this writer's schema has, in column order.</summary>
    public IReadOnlyList<ArgColumn> ArgColumns => _argColumns;

    public void Append(in HitRecord hit)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException("the trace is already complete");
        }
        int row = _buffered;
        if (row == _time.Length)
        {
            Grow();
        }
        _time[row] = hit.TimeNs;
        _pid[row] = hit.Pid;
        _tid[row] = hit.Tid;
        _kind[row] = hit.Kind;
        _duration[row] = hit.Kind == HitKind.Return ? hit.DurationNs : -1;
        _comm[row] = hit.Comm ?? "";
        if (_probes.TryGetValue(hit.ProbeId, out var probe))
        {
            _probe[row] = probe.Name;
            object?[]? args = hit.Args;
            if (args is not null)
            {
                int n = Math.Min(args.Length, probe.ArgColumn.Length);
                for (int i = 0; i < n; i++)
                {
                    _args[probe.ArgColumn[i]][row] = args[i];
                }
            }
        }
        else
        {
            _probe[row] = ("#" + hit.ProbeId).AsMemory();
        }
        _buffered = row + 1;
        if (_buffered == _rowGroupSize)
        {
            WriteRowGroup();
        }
    }

    /// <summary>Writes the buffered rows as a row group now (nothing when none are buffered).</summary>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            return;
        }
        WriteRowGroup();
        _stream.Flush();
    }

    /// <summary>
    /// Writes the remaining rows and the footer (schema version and <paramref name="metadata"/> as JSON),
    /// syncs the file and renames it over the target path. After this the writer only accepts Dispose.
    /// </summary>
    public void Complete(TraceMetadata metadata)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException("the trace is already complete");
        }
        WriteRowGroup();
        _parquet.CustomMetadata = new Dictionary<string, string>
        {
            [TraceColumns.SchemaVersionKey] = TraceSchema.Version.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [TraceColumns.MetadataKey] = TraceMetadataJson.Serialize(metadata with { SchemaVersion = TraceSchema.Version }),
        };
        _parquet.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
        try
        {
            File.Move(_tempPath, _path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            File.Delete(_tempPath);
            _disposed = true;
            throw new TraceFormatException($"cannot write trace '{_path}': {e.Message}", e);
        }
        _completed = true;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (_completed)
        {
            return;
        }
        try
        {
            _parquet.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        catch (Exception)
        {
            // The footer of an abandoned file does not matter: the file is deleted next.
        }
        _stream.Dispose();
        File.Delete(_tempPath);
    }

    private void Grow()
    {
        int size = Math.Min(_rowGroupSize, Math.Max(1024, _time.Length * 2));
        Array.Resize(ref _time, size);
        Array.Resize(ref _pid, size);
        Array.Resize(ref _tid, size);
        Array.Resize(ref _probe, size);
        Array.Resize(ref _kind, size);
        Array.Resize(ref _duration, size);
        Array.Resize(ref _comm, size);
        for (int i = 0; i < _args.Length; i++)
        {
            Array.Resize(ref _args[i], size);
        }
    }

    private void WriteRowGroup()
    {
        int n = _buffered;
        if (n == 0)
        {
            return;
        }
        using (ParquetRowGroupWriter group = _parquet.CreateRowGroup())
        {
            Wait(group.WriteAsync<long>(_fixedFields[0], _time.AsMemory(0, n)));
            Wait(group.WriteAsync<int>(_fixedFields[1], _pid.AsMemory(0, n)));
            Wait(group.WriteAsync<int>(_fixedFields[2], _tid.AsMemory(0, n)));
            Wait(group.WriteAsync<ReadOnlyMemory<char>>(_fixedFields[3], _probe.AsMemory(0, n)));

            var text = new ReadOnlyMemory<char>[n];
            for (int i = 0; i < n; i++)
            {
                text[i] = _kind[i] == HitKind.Return ? ReturnText : EntryText;
            }
            Wait(group.WriteAsync<ReadOnlyMemory<char>>(_fixedFields[4], text.AsMemory(0, n)));

            var durations = new long?[n];
            for (int i = 0; i < n; i++)
            {
                long d = _duration[i];
                durations[i] = d >= 0 ? d : null;
            }
            Wait(group.WriteAsync<long>(_fixedFields[5], durations.AsMemory(0, n)));

            for (int i = 0; i < n; i++)
            {
                text[i] = _comm[i].AsMemory();
            }
            Wait(group.WriteAsync<ReadOnlyMemory<char>>(_fixedFields[6], text.AsMemory(0, n)));

            for (int c = 0; c < _argFields.Length; c++)
            {
                WriteArgColumn(group, c, n);
            }
            group.CompleteValidate();
        }
        Array.Clear(_probe, 0, n);
        Array.Clear(_comm, 0, n);
        foreach (object?[] column in _args)
        {
            Array.Clear(column, 0, Math.Min(n, column.Length));
        }
        _rowsWritten += n;
        _buffered = 0;
    }

    private void WriteArgColumn(ParquetRowGroupWriter group, int c, int n)
    {
        object?[] values = _args[c];
        DataField field = _argFields[c];
        switch (_argColumns[c].Type)
        {
            case ArgColumnType.Int64:
            {
                var column = new long?[n];
                for (int i = 0; i < n; i++)
                {
                    column[i] = ToInt64(values[i]);
                }
                Wait(group.WriteAsync<long>(field, column.AsMemory()));
                break;
            }
            case ArgColumnType.UInt64:
            {
                var column = new ulong?[n];
                for (int i = 0; i < n; i++)
                {
                    column[i] = values[i] is null ? null : unchecked((ulong)ToInt64(values[i])!.Value);
                }
                Wait(group.WriteAsync<ulong>(field, column.AsMemory()));
                break;
            }
            default:
            {
                var column = new ReadOnlyMemory<char>?[n];
                for (int i = 0; i < n; i++)
                {
                    // The arms are typed explicitly: a bare null would convert through char[] to an empty string.
                    column[i] = values[i] switch
                    {
                        null => (ReadOnlyMemory<char>?)null,
                        string s => s.AsMemory(),
                        byte[] b => System.Text.Encoding.UTF8.GetString(b).AsMemory(),
                        object o => Convert.ToString(o, System.Globalization.CultureInfo.InvariantCulture).AsMemory(),
                    };
                }
                Wait(group.WriteAsync<ReadOnlyMemory<char>>(field, column.AsMemory()));
                break;
            }
        }
    }

    private static long? ToInt64(object? value) => value switch
    {
        null => null,
        long v => v,
        ulong v => unchecked((long)v),
        int v => v,
        uint v => v,
        short v => v,
        ushort v => v,
        sbyte v => v,
        byte v => v,
        nint v => v,
        nuint v => unchecked((long)v),
        // A string captured into a column other probes type as integer cannot be stored there.
        _ => null,
    };

    private static void Wait(Task task) => task.GetAwaiter().GetResult();
}
