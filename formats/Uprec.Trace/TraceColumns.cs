using Parquet.Schema;

namespace Uprec.Trace;

/// <summary>The fixed column names of the trace schema (see SCHEMA.md).</summary>
public static class TraceColumns
{
    public const string TimeNs = "time_ns";
    public const string Pid = "pid";
    public const string Tid = "tid";
    public const string Probe = "probe";
    public const string Kind = "kind";
    public const string DurationNs = "duration_ns";
    public const string Comm = "comm";

    /// <summary>The argument column a %return probe's return value (rax) goes to: its last argument.</summary>
    public const string ReturnValue = "retval";

    public const string KindEntry = "entry";
    public const string KindReturn = "return";

    /// <summary>Footer key holding the schema version as a decimal string.</summary>
    public const string SchemaVersionKey = "uprec.schema_version";
    /// <summary>Footer key holding <see cref="TraceMetadata"/> as camelCase JSON.</summary>
    public const string MetadataKey = "uprec.metadata";

    public static IReadOnlyList<string> Fixed { get; } = [TimeNs, Pid, Tid, Probe, Kind, DurationNs, Comm];
}

/// <summary>How a captured-argument column is stored.</summary>
public enum ArgColumnType
{
    /// <summary>Nullable INT64: every signed type, x64, and u8..u32.</summary>
    Int64,
    /// <summary>Nullable UINT64 (INT(64,false)): used when every probe declaring the name types it u64.</summary>
    UInt64,
    /// <summary>Nullable UTF-8 string: string arguments, or a name declared with both string and integer types.</summary>
    String,
}

/// <summary>One captured-argument column: the union of same-named arguments across probes.</summary>
public sealed record ArgColumn(string Name, ArgColumnType Type)
{
    /// <summary>
    /// Merges the probes' argument declarations into one column per distinct name, in first-seen order.
    /// A name typed differently by two probes widens: any string makes it a string column; u64 stays
    /// unsigned only if every declaration is u64 (otherwise INT64, and u64 values above 2^63-1 keep their
    /// bit pattern, i.e. read back negative).
    /// </summary>
    public static IReadOnlyList<ArgColumn> FromProbes(IEnumerable<ProbeMeta> probes)
    {
        var order = new List<string>();
        var types = new Dictionary<string, ArgColumnType>(StringComparer.Ordinal);
        foreach (ProbeMeta probe in probes)
        {
            foreach (ArgMeta arg in probe.Args)
            {
                ArgColumnType type = Classify(arg.Type);
                if (TraceColumns.Fixed.Contains(arg.Name))
                {
                    throw new TraceFormatException(
                        $"probe '{probe.Name}' captures an argument named '{arg.Name}', which is a fixed trace column; rename it");
                }
                if (!types.TryGetValue(arg.Name, out ArgColumnType existing))
                {
                    order.Add(arg.Name);
                    types[arg.Name] = type;
                }
                else if (existing != type)
                {
                    types[arg.Name] = existing == ArgColumnType.String || type == ArgColumnType.String
                        ? ArgColumnType.String
                        : ArgColumnType.Int64;
                }
            }
        }
        return order.Select(n => new ArgColumn(n, types[n])).ToList();
    }

    public static ArgColumnType Classify(string type) => type.ToLowerInvariant() switch
    {
        "u64" => ArgColumnType.UInt64,
        "u8" or "u16" or "u32" or "s8" or "s16" or "s32" or "s64" or "x64" => ArgColumnType.Int64,
        "string" or "str" => ArgColumnType.String,
        _ when type.StartsWith("string", StringComparison.OrdinalIgnoreCase) => ArgColumnType.String,
        _ => throw new TraceFormatException($"unknown argument type '{type}' (expected u8..u64, s8..s64, x64 or string)"),
    };

    internal DataField ToField() => Type switch
    {
        ArgColumnType.Int64 => new DataField<long?>(Name),
        ArgColumnType.UInt64 => new DataField<ulong?>(Name),
        _ => new DataField<string>(Name, true),
    };
}
