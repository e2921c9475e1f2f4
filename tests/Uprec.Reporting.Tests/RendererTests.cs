using Uprec.Reporting.Rendering;
using Uprec.Trace;

namespace Uprec.Reporting.Tests;

/// <summary>
/// Exact output of every format on a hand-made trace whose numbers are easy to check by hand:
/// work (%return) is called 3 times with durations 100 ns, 2 us, 1.5 ms (p50 = 2 us by nearest rank,
/// p90 and above = 1.5 ms, mean = 1502100 / 3 = 500700); malloc twice; ghost never installed.
/// </summary>
public class RendererTests
{
    private static readonly ProbeMeta[] Probes =
    [
        new() { Id = 0, Name = "work", Spec = "./p:work%return", IsReturn = true, Installed = true, Count = 3 },
        new() { Id = 1, Name = "malloc", Spec = "libc:malloc", Installed = true, Count = 2, Lost = 1 },
        new() { Id = 2, Name = "ghost", Spec = "libx:ghost", Installed = false, HitPath = "none", Count = 0 },
    ];

    private static string WriteTrace(TempDir dir)
    {
        string path = dir.File("small.parquet");
        HitRecord E(long t, int tid, int probe, string comm) => new() { TimeNs = t, Pid = 10, Tid = tid, ProbeId = probe, Kind = HitKind.Entry, DurationNs = -1, Comm = comm };
        HitRecord R(long t, int tid, long d, string comm) => new() { TimeNs = t, Pid = 10, Tid = tid, ProbeId = 0, Kind = HitKind.Return, DurationNs = d, Comm = comm };
        using var writer = new TraceWriter(path, new TraceWriterOptions { Probes = Probes });
        foreach (HitRecord h in new[]
        {
            E(1000, 10, 0, "app"), R(1100, 10, 100, "app"),
            E(2000, 10, 0, "app"), R(4000, 10, 2000, "app"),
            E(5000, 11, 1, "app-worker"), E(6000, 11, 0, "app-worker"), R(1_506_000, 11, 1_500_000, "app-worker"),
            E(1_600_000, 11, 1, "app-worker"),
        })
        {
            writer.Append(h);
        }
        writer.Complete(new TraceMetadata { Probes = Probes, StartTimeNs = 500 });
        return path;
    }

    private static string Render(string format, Func<ReportRequest, ReportRequest>? tweak = null)
    {
        using var dir = new TempDir();
        var request = new ReportRequest { Inputs = [WriteTrace(dir)] };
        Report report = ReportEngine.Run(tweak is null ? request : tweak(request));
        var output = new StringWriter { NewLine = "\n" };
        ReportRenderers.Create(format).Render(report, output);
        return output.ToString();
    }

    [Fact]
    public void Table()
    {
        string expected = """
            # uprec report: 1 trace(s), 8 rows read, 8 used
            # latency percentiles within 0.1% (HdrHistogram); count, min, max, mean, total exact
            #
            # probe                 count  lost     min    mean     p50     p90     p99   p99.9     max   total
              work                      3     0   100ns   501us  2.00us  1.50ms  1.50ms  1.50ms  1.50ms  1.50ms
              malloc                    2     1
              ghost                     0     0 not installed

            # pid/tid         comm             probe                 count    mean     p50     p99     max
              10/10           app              work                      2  1.05us   100ns  2.00us  2.00us
              10/11           app-worker       malloc                    2
              10/11           app-worker       work                      1  1.50ms  1.50ms  1.50ms  1.50ms

            """;
        string actual = Render("table");
        Assert.Equal(expected, actual);
        Assert.All(actual.Split('\n'), line => Assert.True(line.Length <= 100, $"{line.Length} columns: {line}"));
    }

    [Fact]
    public void Json()
    {
        const string lat = "\"latency_ns\":{\"count\":3,\"min\":100,\"mean\":500700,\"p50\":2000,\"p90\":1500000,\"p99\":1500000,\"p999\":1500000,\"max\":1500000,\"total\":1502100}";
        string expected =
            "{\"probes\":[" +
            "{\"name\":\"work\",\"count\":3,\"lost\":0,\"installed\":true," + lat + "}," +
            "{\"name\":\"malloc\",\"count\":2,\"lost\":1,\"installed\":true}," +
            "{\"name\":\"ghost\",\"count\":0,\"lost\":0,\"installed\":false}]," +
            "\"tasks\":[" +
            "{\"pid\":10,\"tid\":10,\"comm\":\"app\",\"probe\":\"work\",\"count\":2,\"latency_ns\":{\"count\":2,\"min\":100,\"mean\":1050,\"p50\":100,\"p90\":2000,\"p99\":2000,\"p999\":2000,\"max\":2000,\"total\":2100}}," +
            "{\"pid\":10,\"tid\":11,\"comm\":\"app-worker\",\"probe\":\"malloc\",\"count\":2}," +
            "{\"pid\":10,\"tid\":11,\"comm\":\"app-worker\",\"probe\":\"work\",\"count\":1,\"latency_ns\":{\"count\":1,\"min\":1500000,\"mean\":1500000,\"p50\":1500000,\"p90\":1500000,\"p99\":1500000,\"p999\":1500000,\"max\":1500000,\"total\":1500000}}]}\n";
        Assert.Equal(expected, Render("json"));
    }

    [Fact]
    public void JsonPerProcessAddsProcesses()
    {
        string json = Render("json", r => r with { GroupBy = GroupBy.Process });
        Assert.Contains("\"processes\":[{\"pid\":10,\"comm\":\"app\",\"probe\":\"work\",\"count\":3,\"latency_ns\":{\"count\":3,", json);
        Assert.Contains("{\"pid\":10,\"comm\":\"app\",\"probe\":\"malloc\",\"count\":2}]}", json);
    }

    [Fact]
    public void Csv()
    {
        string expected = """
            probe,count,lost,installed,latency_count,min_ns,mean_ns,p50_ns,p90_ns,p99_ns,p999_ns,max_ns,total_ns
            work,3,0,true,3,100,500700,2000,1500000,1500000,1500000,1500000,1502100
            malloc,2,1,true,,,,,,,,,
            ghost,0,0,false,,,,,,,,,

            """;
        Assert.Equal(expected, Render("csv"));
    }

    [Fact]
    public void CsvPerComm()
    {
        string expected = """
            comm,probe,count,latency_count,min_ns,mean_ns,p50_ns,p90_ns,p99_ns,p999_ns,max_ns,total_ns
            app,work,2,2,100,1050,100,2000,2000,2000,2000,2100
            app-worker,malloc,2,,,,,,,,,
            app-worker,work,1,1,1500000,1500000,1500000,1500000,1500000,1500000,1500000,1500000

            """;
        Assert.Equal(expected, Render("csv", r => r with { GroupBy = GroupBy.Comm }));
    }

    [Fact]
    public void Markdown()
    {
        string expected = """
            | probe | count | lost | min | mean | p50 | p90 | p99 | p99.9 | max | total |
            |:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
            | work | 3 | 0 | 100ns | 501us | 2.00us | 1.50ms | 1.50ms | 1.50ms | 1.50ms | 1.50ms |
            | malloc | 2 | 1 | | | | | | | | |
            | ghost | 0 | 0 | not installed | | | | | | | |

            | pid | tid | comm | probe | count | mean | p50 | p99 | max |
            |--:|--:|:--|:--|--:|--:|--:|--:|--:|
            | 10 | 10 | app | work | 2 | 1.05us | 100ns | 2.00us | 2.00us |
            | 10 | 11 | app-worker | malloc | 2 | | | | |
            | 10 | 11 | app-worker | work | 1 | 1.50ms | 1.50ms | 1.50ms | 1.50ms |

            """;
        Assert.Equal(expected, Render("markdown"));
    }

    [Fact]
    public void HistogramInTheBpftraceLayout()
    {
        string table = Render("table", r => r with { Histograms = true });
        string expected = """
            @work latency (ns):
            [64, 128)                   1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
            [128, 256)                  0 |                                        |
            [256, 512)                  0 |                                        |
            [512, 1K)                   0 |                                        |
            [1K, 2K)                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
            [2K, 4K)                    0 |                                        |
            [4K, 8K)                    0 |                                        |
            [8K, 16K)                   0 |                                        |
            [16K, 32K)                  0 |                                        |
            [32K, 64K)                  0 |                                        |
            [64K, 128K)                 0 |                                        |
            [128K, 256K)                0 |                                        |
            [256K, 512K)                0 |                                        |
            [512K, 1M)                  0 |                                        |
            [1M, 2M)                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

            """;
        Assert.EndsWith(expected, table);
    }

    [Fact]
    public void AnUnknownFormatIsAnError()
    {
        var e = Assert.Throws<ReportException>(() => ReportRenderers.Create("xml"));
        Assert.Contains("unknown format 'xml'", e.Message);
    }

    [Theory]
    [InlineData(0, "0ns")]
    [InlineData(999, "999ns")]
    [InlineData(1_000, "1.00us")]
    [InlineData(12_345, "12.3us")]
    [InlineData(123_456, "123us")]
    [InlineData(1_500_000, "1.50ms")]
    [InlineData(2_000_000_000, "2.00s")]
    public void DurationsInHumanUnits(long ns, string text)
    {
        Assert.Equal(text, Units.Duration(ns));
    }
}
