using System.Text.Json;
using Uprec.Reporting.Script;
using Uprec.Trace;

namespace Uprec.Reporting.Tests;

public class ScriptTests
{
    private static readonly ProbeMeta[] Probes =
    [
        new() { Id = 0, Name = "open", Spec = "libc:open%return", IsReturn = true, Installed = true,
            Args = [new ArgMeta("path", "string", "arg1"), new ArgMeta("flags", "x64", "arg2")] },
        new() { Id = 1, Name = "read", Spec = "libc:read", Installed = true, Args = [new ArgMeta("len", "u64", "arg3")] },
    ];

    private static string Write(TempDir dir, string name, params HitRecord[] hits)
    {
        string path = dir.File(name);
        using var writer = new TraceWriter(path, new TraceWriterOptions { Probes = Probes, RowGroupSize = 2 });
        foreach (HitRecord h in hits)
        {
            writer.Append(h);
        }
        writer.Complete(new TraceMetadata { Probes = Probes });
        return path;
    }

    private static HitRecord Hit(long t, int tid, int probe, HitKind kind = HitKind.Entry, long d = -1, object?[]? args = null) =>
        new() { TimeNs = t, Pid = 7, Tid = tid, ProbeId = probe, Kind = kind, DurationNs = d, Comm = tid == 7 ? "main" : "worker", Args = args };

    private static string Run(ScriptRequest request)
    {
        var output = new StringWriter();
        ScriptEngine.Run(request, output);
        return output.ToString();
    }

    [Fact]
    public void TextLinesAreInTimeOrderAcrossRowGroupsAndInputs()
    {
        using var dir = new TempDir();
        // Row groups of 2: the first group is out of order within itself, the second input interleaves.
        string a = Write(dir, "a.parquet",
            Hit(3_000_000_500, 7, 0, args: ["/etc/passwd", 0x80000L]),
            Hit(1_000_000_001, 7, 1, args: [4096UL]),
            Hit(3_000_002_500, 7, 0, HitKind.Return, 2000));
        string b = Write(dir, "b.parquet", Hit(2_000_000_000, 8, 1, args: [ulong.MaxValue]));

        string expected =
            "            main       7/7           1.000000001: read: entry len=4096\n" +
            "          worker       7/8           2.000000000: read: entry len=18446744073709551615\n" +
            "            main       7/7           3.000000500: open: entry path=\"/etc/passwd\" flags=524288\n" +
            "            main       7/7           3.000002500: open: return duration_ns=2000\n";
        Assert.Equal(expected, Run(new ScriptRequest { Inputs = [a, b] }));
    }

    [Fact]
    public void JsonLinesCarryArgumentsAndDurations()
    {
        using var dir = new TempDir();
        string a = Write(dir, "a.parquet",
            Hit(10, 7, 0, args: ["quote\"d", 1L]),
            Hit(20, 7, 0, HitKind.Return, 10),
            Hit(30, 8, 1, args: [null]));
        string[] lines = Run(new ScriptRequest { Inputs = [a], Format = ScriptFormat.JsonLines }).TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.Equal("{\"time_ns\":10,\"pid\":7,\"tid\":7,\"comm\":\"main\",\"probe\":\"open\",\"kind\":\"entry\",\"args\":{\"path\":\"quote\\u0022d\",\"flags\":1}}", lines[0]);
        Assert.Equal("{\"time_ns\":20,\"pid\":7,\"tid\":7,\"comm\":\"main\",\"probe\":\"open\",\"kind\":\"return\",\"duration_ns\":10}", lines[1]);
        Assert.Equal("{\"time_ns\":30,\"pid\":7,\"tid\":8,\"comm\":\"worker\",\"probe\":\"read\",\"kind\":\"entry\"}", lines[2]);
        foreach (string line in lines)
        {
            using JsonDocument doc = JsonDocument.Parse(line);
        }
        using JsonDocument first = JsonDocument.Parse(lines[0]);
        Assert.Equal("quote\"d", first.RootElement.GetProperty("args").GetProperty("path").GetString());
    }

    [Fact]
    public void FilterAppliesPerRow()
    {
        using var dir = new TempDir();
        SyntheticTrace spec = new() { Probes = [new SyntheticProbe("work", 500, new LatencyModel.Uniform(1, 100))], RowGroupSize = 64 };
        spec.Write(dir.File("s.parquet"));
        string output = Run(new ScriptRequest { Inputs = [dir.File("s.parquet")], Filter = "kind == \"return\" && duration_ns < 50", Format = ScriptFormat.JsonLines });
        string[] lines = output.TrimEnd('\n').Split('\n');
        Assert.Equal(spec.Hits().Count(h => h.Kind == HitKind.Return && h.DurationNs < 50), lines.Length);
        long last = 0;
        foreach (string line in lines)
        {
            using JsonDocument doc = JsonDocument.Parse(line);
            long t = doc.RootElement.GetProperty("time_ns").GetInt64();
            Assert.True(t >= last);
            last = t;
            Assert.True(doc.RootElement.GetProperty("duration_ns").GetInt64() < 50);
        }
    }

    [Fact]
    public void AnUnknownFormatIsAnError()
    {
        Assert.Contains("unknown format 'xml'", Assert.Throws<ReportException>(() => ScriptRequest.ParseFormat("xml")).Message);
    }
}
