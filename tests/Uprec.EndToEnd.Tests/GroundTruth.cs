using System.Globalization;

namespace Uprec.EndToEnd.Tests;

/// <summary>
/// The facts a testdata program prints about itself: `count NAME N`, `checksum HEX`,
/// `offset SYMBOL N`, `threads N`, `intact yes|no`, and on stderr `task TID FUNCTION N`.
/// </summary>
public sealed class GroundTruth
{
    private readonly Dictionary<string, long> _counts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _facts = new(StringComparer.Ordinal);
    private readonly List<(int Tid, string Function, long Count)> _tasks = [];

    public static GroundTruth Parse(string stdout, string stderr = "")
    {
        var truth = new GroundTruth();
        foreach (string line in Lines(stdout))
        {
            string[] f = line.Split(' ');
            if (f is ["count", var name, var n])
            {
                truth._counts[name] = long.Parse(n, CultureInfo.InvariantCulture);
            }
            else if (f is ["offset", var symbol, var off])
            {
                truth._facts[$"offset {symbol}"] = off;
            }
            else if (f.Length == 2)
            {
                truth._facts[f[0]] = f[1];
            }
            else if (f.Length == 3)
            {
                truth._facts[$"{f[0]} {f[1]}"] = f[2]; // e.g. `returns lj_inner 600`
            }
        }
        foreach (string line in Lines(stderr))
        {
            if (line.Split(' ') is ["task", var tid, var function, var n])
            {
                truth._tasks.Add((int.Parse(tid, CultureInfo.InvariantCulture), function, long.Parse(n, CultureInfo.InvariantCulture)));
            }
        }
        return truth;
    }

    public IReadOnlyDictionary<string, long> Counts => _counts;

    public IReadOnlyList<(int Tid, string Function, long Count)> Tasks => _tasks;

    public long Count(string name) =>
        _counts.TryGetValue(name, out long n) ? n : throw new KeyNotFoundException($"the program printed no 'count {name}' line");

    public string Fact(string key) =>
        _facts.TryGetValue(key, out string? v) ? v : throw new KeyNotFoundException($"the program printed no '{key}' line");

    /// <summary>A numeric fact, e.g. Number("returns lj_inner") or Number("caught").</summary>
    public long Number(string key) => long.Parse(Fact(key), CultureInfo.InvariantCulture);

    public long OffsetOf(string symbol) => long.Parse(Fact($"offset {symbol}"), CultureInfo.InvariantCulture);

    private static IEnumerable<string> Lines(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
