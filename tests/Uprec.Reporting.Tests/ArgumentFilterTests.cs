using Uprec.Reporting.Diff;
using Uprec.Trace;

namespace Uprec.Reporting.Tests;

/// <summary>Filters over captured-argument columns, in uprec and in the SQL it prints.</summary>
public class ArgumentFilterTests
{
    private static readonly ProbeMeta[] Probes =
    [
        new() { Id = 0, Name = "read", Spec = "libc:read", Installed = true, Count = -1,
            Args = [new ArgMeta("fd", "s32", "arg1"), new ArgMeta("len", "u64", "arg3")] },
        new() { Id = 1, Name = "open", Spec = "libc:open", Installed = true, Count = -1, Args = [new ArgMeta("path", "string", "arg1")] },
    ];

    /// <summary>read(fd = i % 5, len = i * 1000 or a huge value every 97th call); open(path) every 3rd call.</summary>
    private static string Write(TempDir dir, out List<(int Probe, long Fd, ulong Len, string? Path)> truth)
    {
        truth = [];
        string path = dir.File("args.parquet");
        using var writer = new TraceWriter(path, new TraceWriterOptions { Probes = Probes, RowGroupSize = 100 });
        for (int i = 0; i < 1000; i++)
        {
            bool open = i % 3 == 0;
            ulong len = i % 97 == 0 ? ulong.MaxValue - (ulong)i : (ulong)i * 1000;
            string file = i % 2 == 0 ? $"/etc/f{i % 7}" : $"/tmp/t{i % 4}";
            writer.Append(new HitRecord
            {
                TimeNs = 1000 + i, Pid = 9, Tid = 9, ProbeId = open ? 1 : 0, Kind = HitKind.Entry, DurationNs = -1, Comm = "io",
                Args = open ? [file] : [(long)(i % 5), len],
            });
            truth.Add(open ? (1, 0, 0, file) : (0, i % 5, len, null));
        }
        writer.Complete(new TraceMetadata { Probes = Probes, StartTimeNs = 1000 });
        return path;
    }

    [Theory]
    [InlineData("fd == 3 && len < 500000")]
    [InlineData("len > 0xfffffffffffff000")]
    [InlineData("path ~ \"/etc/*\" || fd == 0")]
    [InlineData("!(path ~ \"/tmp/*\")")]
    public void ArgumentFiltersCountLikeTheTruthAndLikeDuckDb(string filter)
    {
        using var dir = new TempDir();
        string path = Write(dir, out var truth);
        Func<(int Probe, long Fd, ulong Len, string? Path), bool> keep = filter switch
        {
            "fd == 3 && len < 500000" => t => t.Probe == 0 && t.Fd == 3 && t.Len < 500000,
            "len > 0xfffffffffffff000" => t => t.Probe == 0 && t.Len > 0xfffffffffffff000,
            "path ~ \"/etc/*\" || fd == 0" => t => (t.Probe == 1 && t.Path!.StartsWith("/etc/")) || (t.Probe == 0 && t.Fd == 0),
            // A row without a path fails the comparison, so the negation keeps it.
            _ => t => !(t.Probe == 1 && t.Path!.StartsWith("/tmp/")),
        };
        var request = new ReportRequest { Inputs = [path], Filter = filter };
        Report report = ReportEngine.Run(request);
        Assert.Equal(truth.Count(keep), report.RowsMatched);
        foreach (ProbeSummary p in report.Probes)
        {
            int id = p.Name == "read" ? 0 : 1;
            Assert.Equal(truth.Count(t => t.Probe == id && keep(t)), p.Count);
        }

        using var connection = new DuckDB.NET.Data.DuckDBConnection("DataSource=:memory:");
        connection.Open();
        string sql = ReportSql.Build(request);
        string view = sql.Split(";\n")[0];
        using (var command = connection.CreateCommand())
        {
            command.CommandText = view[view.IndexOf("CREATE", StringComparison.Ordinal)..];
            command.ExecuteNonQuery();
        }
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM uprec_hits";
        Assert.Equal(report.RowsMatched, Convert.ToInt64(count.ExecuteScalar()));
    }

    [Fact]
    public void ARuleForAProbeMissingFromATraceIsAnError()
    {
        using var dir = new TempDir();
        string path = Write(dir, out _);
        var e = Assert.Throws<ReportException>(() => DiffEngine.Run(new DiffRequest { Base = path, New = path, Rules = ["write:count > 5%"] }));
        Assert.Contains("probe 'write' is not in both traces", e.Message);
    }
}
