using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Uprec.Trace;

namespace Uprec.Reporting.Script;

public enum ScriptFormat
{
    Text,
    JsonLines,
}

public sealed record ScriptRequest
{
    public IReadOnlyList<string> Inputs { get; init; } = ["uprec.parquet"];
    public ScriptFormat Format { get; init; } = ScriptFormat.Text;
    public string? Filter { get; init; }

    public static ScriptFormat ParseFormat(string text) => text.Trim().ToLowerInvariant() switch
    {
        "text" => ScriptFormat.Text,
        "jsonl" or "json" => ScriptFormat.JsonLines,
        _ => throw new ReportException($"unknown format '{text}' (valid: text, jsonl)"),
    };
}

/// <summary>
/// `uprec script`: one line per hit in time order, like `perf script`. Each row group is sorted by time
/// (the engine's drains interleave threads within a group) and several inputs are merged by time, one
/// row group per input in memory. Rows of one input are assumed ordered across its row groups, which
/// holds for traces the engine writes (it flushes what it has drained, in drain order, about once a second).
/// </summary>
public static class ScriptEngine
{
    /// <summary>Writes every (matching) hit to <paramref name="output"/>; returns the number of lines.</summary>
    public static long Run(ScriptRequest request, TextWriter output)
    {
        IReadOnlyList<string> inputs = TraceInputs.Expand(request.Inputs);
        var readers = new List<TraceReader>();
        try
        {
            foreach (string input in inputs)
            {
                readers.Add(TraceReader.Open(input));
            }
            RowFilter? filter = request.Filter is null ? null : RowFilter.Create(request.Filter, readers);
            var cursors = readers.Select(r => new Cursor(r)).Where(c => c.Advance()).ToList();
            var line = new StringBuilder();
            long lines = 0;
            // Few inputs: a linear scan for the earliest head is simpler than a heap and as fast.
            while (cursors.Count > 0)
            {
                Cursor next = cursors[0];
                foreach (Cursor c in cursors)
                {
                    if (c.Time < next.Time)
                    {
                        next = c;
                    }
                }
                int row = next.Row;
                if (filter is null || filter.Matches(next.Batch!, row))
                {
                    line.Clear();
                    if (request.Format == ScriptFormat.Text)
                    {
                        FormatText(line, next.Batch!, row);
                    }
                    else
                    {
                        FormatJson(line, next.Batch!, row);
                    }
                    output.Write(line);
                    output.Write('\n');
                    lines++;
                }
                if (!next.Advance())
                {
                    cursors.Remove(next);
                }
            }
            return lines;
        }
        finally
        {
            foreach (TraceReader r in readers)
            {
                r.Dispose();
            }
        }
    }

    private sealed class Cursor(TraceReader reader)
    {
        private int _group = -1;
        private int[] _order = [];
        private int _index;

        public TraceBatch? Batch { get; private set; }
        public int Row => _order[_index];
        public long Time => Batch!.TimeNs[Row];

        /// <summary>Moves to the next row, loading and sorting the next row group when needed; false at the end.</summary>
        public bool Advance()
        {
            if (Batch is not null && ++_index < _order.Length)
            {
                return true;
            }
            while (++_group < reader.RowGroupCount)
            {
                Batch = reader.ReadRowGroup(_group);
                if (Batch.Count == 0)
                {
                    continue;
                }
                _order = Enumerable.Range(0, Batch.Count).ToArray();
                long[] keys = (long[])Batch.TimeNs.Clone();
                // Array.Sort is unstable; ties keep file order through the index as a secondary key.
                Array.Sort(_order, (x, y) => keys[x] != keys[y] ? keys[x].CompareTo(keys[y]) : x.CompareTo(y));
                _index = 0;
                return true;
            }
            return false;
        }
    }

    /// <summary>perf script style: "comm pid/tid seconds.nanoseconds: probe: entry|return [duration] [name=value...]".</summary>
    internal static void FormatText(StringBuilder s, TraceBatch b, int i)
    {
        long t = b.TimeNs[i];
        s.Append(CultureInfo.InvariantCulture, $"{b.Comm[i],16} {b.Pid[i],7}/{b.Tid[i],-7} {t / 1_000_000_000,5}.{t % 1_000_000_000:D9}: {b.Probe[i]}: ");
        if (b.Kind[i] == HitKind.Return)
        {
            s.Append("return");
            if (b.DurationNs[i] is long d)
            {
                s.Append(CultureInfo.InvariantCulture, $" duration_ns={d}");
            }
        }
        else
        {
            s.Append("entry");
        }
        foreach ((string name, Array column) in b.Args)
        {
            switch (column)
            {
                case long?[] l when l[i] is long v:
                    s.Append(CultureInfo.InvariantCulture, $" {name}={v}");
                    break;
                case ulong?[] u when u[i] is ulong v:
                    s.Append(CultureInfo.InvariantCulture, $" {name}={v}");
                    break;
                case string?[] str when str[i] is string v:
                    s.Append(' ').Append(name).Append('=').Append(Quote(v));
                    break;
            }
        }
    }

    internal static void FormatJson(StringBuilder s, TraceBatch b, int i)
    {
        s.Append(CultureInfo.InvariantCulture, $"{{\"time_ns\":{b.TimeNs[i]},\"pid\":{b.Pid[i]},\"tid\":{b.Tid[i]},\"comm\":");
        s.Append(Quote(b.Comm[i])).Append(",\"probe\":").Append(Quote(b.Probe[i]));
        s.Append(b.Kind[i] == HitKind.Return ? ",\"kind\":\"return\"" : ",\"kind\":\"entry\"");
        if (b.DurationNs[i] is long d)
        {
            s.Append(CultureInfo.InvariantCulture, $",\"duration_ns\":{d}");
        }
        bool any = false;
        foreach ((string name, Array column) in b.Args)
        {
            string? value = column switch
            {
                long?[] l => l[i]?.ToString(CultureInfo.InvariantCulture),
                ulong?[] u => u[i]?.ToString(CultureInfo.InvariantCulture),
                string?[] str => str[i] is string v ? Quote(v) : null,
                _ => null,
            };
            if (value is null)
            {
                continue;
            }
            s.Append(any ? "," : ",\"args\":{").Append(Quote(name)).Append(':').Append(value);
            any = true;
        }
        if (any)
        {
            s.Append('}');
        }
        s.Append('}');
    }

    /// <summary>A JSON string literal, escaped as System.Text.Json does by default.</summary>
    private static string Quote(string value) => JsonSerializer.Serialize(value, ScriptJsonContext.Default.String);
}

// Source-generated so script works in a Native AOT uprec, where reflection-based serialization is off.
[JsonSerializable(typeof(string))]
internal sealed partial class ScriptJsonContext : JsonSerializerContext;
