using Uprec.Trace;

namespace Uprec.EndToEnd.Tests;

/// <summary>Issue 3: `--filter EXPR` after an `-e`, with exact expected counts from argfilter.c.</summary>
[Collection(EndToEndCollection.Name)]
[Trait("Feature", "filters")]
public sealed class FilterTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    [Theory]
    [InlineData("arg1 < 100", "af_f_arg1_lt_100")]
    [InlineData("arg2 == 3", "af_f_arg2_eq_3")]
    [InlineData("arg2 == 0x3 && arg1 < 1000000", "af_f_arg2_eq_3")]
    [InlineData("!(arg1 >= 100)", "af_f_arg1_lt_100")]
    public void An_argument_filter_keeps_exactly_the_matching_calls(string filter, string expectedCountLine)
    {
        string binary = programs.Path("argfilter");
        string trace = _dir.File("filter.parquet");

        ProcessResult traced = Uprec.Run(["record", "-o", trace, "-e", $"{binary}:af_f", "--filter", filter, "--", binary]);

        Assert.True(traced.ExitCode == 0, traced.ToString());
        Assert.Equal(Processes.Run(binary, []).Stdout, traced.Stdout);
        GroundTruth truth = GroundTruth.Parse(traced.Stdout);
        Assert.Equal(truth.Count(expectedCountLine), Uprec.ReportOf(trace).Count("af_f"));
    }

    /// <summary>
    /// Issue 5: an argument filter runs inside the trampoline (no stop per hit), with the trap path's
    /// semantics: typed captures are truncated and sign-extended, and a literal outside a field's
    /// range decides the comparison for every value instead of wrapping around.
    /// </summary>
    [Theory]
    [InlineData("af_f", "arg1 < 100", "af_f_arg1_lt_100")]
    [InlineData("af_f k=arg2:s32", "k == 3", "af_f_arg2_eq_3")]
    [InlineData("af_f k=arg2:u8", "k >= 3 && k <= 3", "af_f_arg2_eq_3")]
    [InlineData("af_f k=arg2:s16 i=arg1", "(k == 3 || k < -40000) && i < 18446744073709551615", "af_f_arg2_eq_3")]
    [InlineData("af_f k=arg2:s64", "!(k != 3) && k > -1000000000000", "af_f_arg2_eq_3")]
    [InlineData("af_f i=arg1:u32", "i < 100 || i == 4294967296", "af_f_arg1_lt_100")]
    public void An_argument_filter_runs_in_the_trampoline_with_exact_counts(string spec, string filter, string expectedCountLine)
    {
        string binary = programs.Path("argfilter");
        string trace = _dir.File("inproc-filter.parquet");

        ProcessResult traced = Uprec.Run(["record", "-o", trace, "--hit-path", "inprocess", "-e", $"{binary}:{spec}", "--filter", filter, "--", binary]);

        Assert.True(traced.ExitCode == 0, traced.ToString());
        Assert.Equal(Processes.Run(binary, []).Stdout, traced.Stdout);
        using (var reader = TraceReader.Open(trace))
        {
            ProbeMeta probe = Assert.Single(reader.Metadata.Probes);
            Assert.True(probe.HitPath == "inprocess", $"hit path {probe.HitPath} ({probe.HitPathReason})");
        }
        GroundTruth truth = GroundTruth.Parse(traced.Stdout);
        Assert.Equal(truth.Count(expectedCountLine), Uprec.ReportOf(trace).Count("af_f"));
    }

    [Fact]
    public void A_task_filter_no_task_matches_leaves_the_probe_without_hits()
    {
        string binary = programs.Path("argfilter");
        string trace = _dir.File("filter.parquet");

        ProcessResult traced = Uprec.Run(["record", "-o", trace, "-e", $"{binary}:af_f", "--filter", "comm ~ \"nothing-like-this*\"", "--", binary]);

        Assert.True(traced.ExitCode == 0, traced.ToString());
        Assert.Equal(Processes.Run(binary, []).Stdout, traced.Stdout);
        Assert.Equal(0, Uprec.ReportOf(trace).Count("af_f"));
    }

    [Fact]
    public async Task A_process_no_filter_wants_is_never_patched()
    {
        string binary = programs.Path("longrun");
        string trace = _dir.File("unwanted.parquet");
        using LongRun run = await LongRun.Record(
            ["record", "-o", trace, "-e", $"{binary}:spin_work", "--filter", "comm == \"not-longrun\"", "--", binary]);

        Assert.Equal("now intact", await run.CheckBytesNow());
        ProcessResult result = run.SignalUprecAndFinish("INT");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("yes", GroundTruth.Parse(result.Stdout).Fact("intact"));
        Assert.Equal(0, Uprec.ReportOf(trace).Count("spin_work"));
    }

    [Theory]
    [InlineData("comm == \"renamed\"", "rn_work_as_renamed")]
    [InlineData("comm == \"rename\"", "rn_work_as_rename")]
    public void A_comm_filter_follows_a_program_that_renames_itself(string filter, string expectedCountLine)
    {
        string binary = programs.Path("rename");
        string trace = _dir.File("rename.parquet");

        ProcessResult traced = Uprec.Run(["record", "-o", trace, "-e", $"{binary}:rn_work", "--filter", filter, "--", binary]);

        Assert.True(traced.ExitCode == 0, traced.ToString());
        GroundTruth truth = GroundTruth.Parse(traced.Stdout);
        Assert.Equal(truth.Count(expectedCountLine), Uprec.ReportOf(trace).Count("rn_work"));
    }

    [Fact]
    public void A_malformed_filter_is_refused_before_anything_starts()
    {
        string binary = programs.Path("argfilter");

        ProcessResult r = Uprec.Run(["record", "-o", _dir.File("t.parquet"), "-e", $"{binary}:af_f", "--filter", "arg1 < ", "--", binary]);

        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Equal("", r.Stdout);
        string[] lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("uprec: error: ", lines[0]);
        Assert.Matches("[0-9]", lines[0]); // the position of the error
    }

    public void Dispose() => _dir.Dispose();
}
