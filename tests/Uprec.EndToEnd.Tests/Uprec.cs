using System.Diagnostics;
using System.Text.Json;

namespace Uprec.EndToEnd.Tests;

/// <summary>latency_ns of a %return probe; Count is the number of calls that returned.</summary>
public sealed record Latency(long Count, long Min, long Mean, long P50, long P90, long P99, long Max);

/// <summary>One probe of the report; Installed and Latency are absent from older reports.</summary>
public sealed record ProbeSummary(string Name, long Count, long Lost, bool? Installed = null, Latency? Latency = null);

public sealed record TaskSummary(int Pid, int Tid, string Comm, string Probe, long Count);

/// <summary>`uprec report --format json`, the fields the tests rely on (DESIGN.md contract).</summary>
public sealed record Report(IReadOnlyList<ProbeSummary> Probes, IReadOnlyList<TaskSummary> Tasks)
{
    public static Report Parse(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement root = doc.RootElement;
        var probes = root.GetProperty("probes").EnumerateArray()
            .Select(p => new ProbeSummary(
                p.GetProperty("name").GetString()!,
                p.GetProperty("count").GetInt64(),
                p.GetProperty("lost").GetInt64(),
                p.TryGetProperty("installed", out JsonElement installed) ? installed.GetBoolean() : null,
                p.TryGetProperty("latency_ns", out JsonElement l) && l.ValueKind == JsonValueKind.Object
                    ? new Latency(l.GetProperty("count").GetInt64(), l.GetProperty("min").GetInt64(), l.GetProperty("mean").GetInt64(),
                        l.GetProperty("p50").GetInt64(), l.GetProperty("p90").GetInt64(), l.GetProperty("p99").GetInt64(),
                        l.GetProperty("max").GetInt64())
                    : null))
            .ToList();
        var tasks = root.GetProperty("tasks").EnumerateArray()
            .Select(t => new TaskSummary(
                t.GetProperty("pid").GetInt32(),
                t.GetProperty("tid").GetInt32(),
                t.GetProperty("comm").GetString()!,
                t.GetProperty("probe").GetString()!,
                t.GetProperty("count").GetInt64()))
            .ToList();
        return new Report(probes, tasks);
    }

    public ProbeSummary Probe(string name)
    {
        var matches = Probes.Where(p => p.Name == name).ToList();
        Assert.True(matches.Count == 1,
            $"expected exactly one probe named '{name}' in the report, found {matches.Count}; probes: {string.Join(", ", Probes.Select(p => p.Name))}");
        return matches[0];
    }

    public long Count(string name) => Probe(name).Count;
}

/// <summary>A recording and the untraced run of the same command, for comparison.</summary>
public sealed record Recording(ProcessResult Traced, ProcessResult Untraced, Report Report, GroundTruth Truth, string TraceFile);

/// <summary>Runs the uprec CLI from the test output directory as a separate process.</summary>
public static class Uprec
{
    // UPREC_BIN: a published uprec executable (e.g. the Native AOT one) to test instead of uprec.dll.
    private static string? Published => Environment.GetEnvironmentVariable("UPREC_BIN") is { Length: > 0 } bin ? bin : null;

    public static ProcessResult Run(IEnumerable<string> args, string stdin = "") =>
        Published is string bin ? Processes.Run(bin, [.. args], stdin) : Processes.Run(Paths.DotnetHost, [Paths.UprecDll, .. args], stdin);

    /// <summary>Starts `uprec ARGS` without waiting, for tests that signal it mid-recording.</summary>
    public static Process Start(IEnumerable<string> args) =>
        Process.Start(Published is string bin ? Processes.StartInfo(bin, [.. args]) : Processes.StartInfo(Paths.DotnetHost, [Paths.UprecDll, .. args]))
        ?? throw new InvalidOperationException("could not start uprec");

    public static Report ReportOf(string traceFile)
    {
        ProcessResult report = Run(["report", "-i", traceFile, "--format", "json"]);
        Assert.True(report.ExitCode == 0, $"uprec report -i {traceFile} failed: {report}");
        try
        {
            return Report.Parse(report.Stdout);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            Assert.Fail($"uprec report --format json printed something that is not the documented JSON ({e.Message}):\n{report.Stdout}");
            throw;
        }
    }

    /// <summary>
    /// Records PROGRAM ARGS with the given probes, runs it untraced as well, and checks what
    /// every recording must satisfy: uprec exits with the program's exit code, the program's
    /// stdout is byte-for-byte the untraced one (unless it prints times: sameStdout false), and
    /// the trace can be reported.
    /// </summary>
    public static Recording Record(TempDirectory dir, IEnumerable<string> probeSpecs, string program, string[]? args = null,
        string stdin = "", int expectedExitCode = 0, bool sameStdout = true, string[]? options = null,
        IReadOnlyDictionary<string, string>? filters = null)
    {
        args ??= [];
        string trace = dir.File($"trace-{Guid.NewGuid():N}.parquet");
        List<string> uprecArgs = ["record", "-o", trace, .. options ?? []];
        foreach (string spec in probeSpecs)
        {
            uprecArgs.AddRange(["-e", spec]);
            if (filters?.TryGetValue(spec, out string? filter) == true)
            {
                uprecArgs.AddRange(["--filter", filter]);
            }
        }
        uprecArgs.Add("--");
        uprecArgs.Add(program);
        uprecArgs.AddRange(args);

        ProcessResult untraced = Processes.Run(program, args, stdin);
        Assert.True(untraced.ExitCode == expectedExitCode, $"the program itself misbehaved untraced: {untraced}");

        ProcessResult traced = Run(uprecArgs, stdin);
        Assert.True(traced.ExitCode == untraced.ExitCode,
            $"uprec {string.Join(' ', uprecArgs)} exited {traced.ExitCode}, the program alone exits {untraced.ExitCode}: {traced}");
        if (sameStdout)
        {
            Assert.Equal(untraced.Stdout, traced.Stdout);
        }

        Report report = ReportOf(trace);
        return new Recording(traced, untraced, report, GroundTruth.Parse(traced.Stdout, traced.Stderr), trace);
    }

    /// <summary>The hit path the trace's metadata gives each probe, by name, with the reason.</summary>
    public static IReadOnlyDictionary<string, (string Path, string? Reason)> HitPaths(string trace)
    {
        using global::Uprec.Trace.TraceReader reader = global::Uprec.Trace.TraceReader.Open(trace);
        return reader.Metadata.Probes.ToDictionary(p => p.Name, p => (p.HitPath, p.HitPathReason));
    }
}

/// <summary>Symbol and segment facts from binutils, independent of uprec's own ELF reader.</summary>
public static class Binutils
{
    /// <summary>The file offset of SYMBOL+DELTA, from `nm` and the PT_LOAD headers of `readelf -lW`.</summary>
    public static long FileOffsetOf(string binary, string symbol, long delta = 0)
    {
        ProcessResult nm = Processes.Run("nm", [binary]);
        Assert.True(nm.ExitCode == 0, $"nm {binary}: {nm}");
        ulong? address = null;
        foreach (string line in nm.Stdout.Split('\n'))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length == 3 && f[2] == symbol)
            {
                address = Convert.ToUInt64(f[0], 16) + (ulong)delta;
            }
        }
        Assert.True(address is not null, $"nm shows no symbol {symbol} in {binary}");

        ProcessResult readelf = Processes.Run("readelf", ["-lW", binary]);
        Assert.True(readelf.ExitCode == 0, $"readelf -lW {binary}: {readelf}");
        foreach (string line in readelf.Stdout.Split('\n'))
        {
            // LOAD Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align (Flg may contain spaces).
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 6 && f[0] == "LOAD")
            {
                ulong offset = Convert.ToUInt64(f[1], 16), vaddr = Convert.ToUInt64(f[2], 16), filesz = Convert.ToUInt64(f[4], 16);
                if (address >= vaddr && address < vaddr + filesz)
                {
                    return (long)(address.Value - vaddr + offset);
                }
            }
        }
        Assert.Fail($"no PT_LOAD segment of {binary} holds {symbol} at 0x{address:x}");
        return -1;
    }
}
