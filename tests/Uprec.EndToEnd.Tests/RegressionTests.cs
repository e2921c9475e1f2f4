using System.Diagnostics;
using System.Globalization;

namespace Uprec.EndToEnd.Tests;

/// <summary>
/// The testdata/regress_* programs, built here because the shared TestPrograms list is fixed:
/// gcc -O2 as PIE, into a temp directory; the workload script is copied next to them.
/// </summary>
public sealed class RegressionPrograms : IDisposable
{
    private static readonly string[] Sources =
    [
        "regress_ljreuse.c", "regress_coro.c", "regress_mainexit.c", "regress_mainexit_sleep.c",
        "regress_exitspawn.c", "regress_scripted.c", "regress_tailmix.c",
    ];

    private readonly TempDirectory _build = new("uprec-e2e-regress");

    public RegressionPrograms()
    {
        foreach (string source in Sources)
        {
            List<string> args = ["-O2", "-g", "-Wall", "-fPIE", "-pie", "-o", Path(System.IO.Path.GetFileNameWithoutExtension(source)),
                System.IO.Path.Combine(Paths.TestData, source), "-pthread"];
            ProcessResult result = Processes.Run("gcc", args);
            if (result.ExitCode != 0)
            {
                throw new InvalidOperationException($"gcc {string.Join(' ', args)} failed:\n{result}");
            }
        }
        Script = _build.File("regress_script.sh");
        File.Copy(System.IO.Path.Combine(Paths.TestData, "regress_script.sh"), Script);
        // The checkout may have lost the executable bit; the kernel needs it to run the #! line.
        ProcessResult chmod = Processes.Run("chmod", ["u+x", Script]);
        if (chmod.ExitCode != 0)
        {
            throw new InvalidOperationException($"chmod u+x {Script} failed:\n{chmod}");
        }
    }

    public string Path(string name) => _build.File(name);

    public string Script { get; }

    public void Dispose() => _build.Dispose();
}

/// <summary>
/// End-to-end regressions for engine bugs found in review: each program once made uprec
/// change the program's output, miscount, or hang.
/// </summary>
[Collection(EndToEndCollection.Name)]
[Trait("Feature", "regression")]
public sealed class RegressionTests(RegressionPrograms programs) : IClassFixture<RegressionPrograms>, IDisposable
{
    /// <summary>Runs that must end on their own; far above the second or two they take, far below Processes.Limit.</summary>
    private static readonly TimeSpan Finish = TimeSpan.FromSeconds(60);

    private readonly TempDirectory _dir = new("uprec-e2e-regress");

    [Fact]
    public void Longjmp_then_reusing_the_abandoned_frames_slot_keeps_output_and_counts()
    {
        string binary = programs.Path("regress_ljreuse");

        // Only A is probed: a return probe on f as well hid the bug (f's own frame resynchronised it).
        Recording r = Uprec.Record(_dir, [$"{binary}:A%return"], binary);

        Assert.Equal("0", r.Truth.Fact("wrong"));
        AssertCallsAndReturns(r, "A");
    }

    [Fact]
    public void A_probed_function_that_switches_stacks_before_returning_keeps_output_and_counts()
    {
        string binary = programs.Path("regress_coro");

        Recording r = Uprec.Record(_dir, [$"{binary}:P%return"], binary);

        Assert.Equal("11", r.Truth.Fact("ra"));
        Assert.Equal("21", r.Truth.Fact("rb"));
        AssertCallsAndReturns(r, "P");
    }

    [Fact]
    public void A_tail_call_chain_through_both_hit_paths_returns_through_each()
    {
        string binary = programs.Path("regress_tailmix");

        // A per-hit filter keeps a %return probe on the trap path: A and C trap, B is in process.
        Recording r = Uprec.Record(_dir, [$"{binary}:A%return", $"{binary}:B%return", $"{binary}:C%return"], binary,
            filters: new Dictionary<string, string> { [$"{binary}:A%return"] = "arg1 >= 0", [$"{binary}:C%return"] = "arg1 >= 0" });

        var paths = Uprec.HitPaths(r.TraceFile);
        Assert.Equal(("trap", "inprocess", "trap"), (paths["A"].Path, paths["B"].Path, paths["C"].Path));
        foreach (string function in new[] { "A", "B", "C" })
        {
            ProbeSummary probe = r.Report.Probe(function);
            Assert.True(r.Truth.Count(function) == probe.Count, $"{function}: calls {r.Truth.Count(function)}, report {probe.Count}");
            Assert.True(probe.Latency is not null && r.Truth.Number($"returns {function}") == probe.Latency.Count,
                $"{function}: returns {r.Truth.Number($"returns {function}")}, latency_ns.count {probe.Latency?.Count}");
        }
    }

    [Fact]
    public void Main_calling_pthread_exit_while_threads_work_is_counted_exactly()
    {
        string binary = programs.Path("regress_mainexit");

        Recording r = Uprec.Record(_dir, [$"{binary}:work"], binary);

        Assert.Equal(r.Truth.Count("work"), r.Report.Count("work"));
    }

    [Fact]
    public void Duration_ends_the_recording_while_a_thread_sleeps_after_main_pthread_exit()
    {
        string binary = programs.Path("regress_mainexit_sleep");
        string trace = _dir.File("sleep.parquet");
        ProcessResult untraced = Processes.Run(binary, []);
        Assert.True(untraced.ExitCode == 0, $"the program itself misbehaved untraced: {untraced}");

        var clock = Stopwatch.StartNew();
        ProcessResult traced = Uprec.Run(["record", "--duration", "1", "-o", trace, "-e", $"{binary}:work", "--", binary]);
        clock.Stop();

        Assert.True(clock.Elapsed < Finish, $"uprec record --duration 1 took {clock.Elapsed}");
        Assert.True(traced.ExitCode == 0, $"uprec record --duration 1 exited {traced.ExitCode}: {traced}");
        // The detached program keeps the pipe open until it ends, so this includes its late line.
        Assert.Equal(untraced.Stdout, traced.Stdout);
        Assert.Equal(GroundTruth.Parse(untraced.Stdout).Count("work"), Uprec.ReportOf(trace).Count("work"));
    }

    [Fact]
    public void Exit_while_threads_keep_spawning_threads_ends_with_the_programs_exit_code()
    {
        string binary = programs.Path("regress_exitspawn");
        ProcessResult untraced = Processes.Run(binary, []);
        Assert.True(untraced.ExitCode == 3, $"the program itself misbehaved untraced: {untraced}");
        long atLeast = long.Parse(untraced.Stdout.Split('\n')[0].Split(' ')[2], CultureInfo.InvariantCulture);

        // The race between exit_group and new clones differs run to run; one pass proves little.
        for (int run = 0; run < 3; run++)
        {
            string trace = _dir.File($"exitspawn-{run}.parquet");
            var clock = Stopwatch.StartNew();
            ProcessResult traced = Uprec.Run(["record", "-o", trace, "-e", $"{binary}:work", "--", binary]);
            clock.Stop();

            Assert.True(clock.Elapsed < Finish, $"run {run}: uprec record took {clock.Elapsed}");
            Assert.True(traced.ExitCode == untraced.ExitCode,
                $"run {run}: uprec exited {traced.ExitCode}, the program alone exits {untraced.ExitCode}: {traced}");
            Assert.Equal(untraced.Stdout, traced.Stdout);
            Assert.True(Uprec.ReportOf(trace).Count("work") >= atLeast, $"run {run}: fewer hits than main's own call");
        }
    }

    [Fact]
    public void A_probe_on_a_program_run_by_a_shell_script_counts_both_runs()
    {
        string binary = programs.Path("regress_scripted");

        Recording r = Uprec.Record(_dir, [$"{binary}:work"], programs.Script, [binary]);

        // The script runs the program twice; GroundTruth keeps only the last `count` line.
        long calls = r.Untraced.Stdout.Split('\n')
            .Select(line => line.Split(' '))
            .Where(f => f is ["count", "work", _])
            .Sum(f => long.Parse(f[2], CultureInfo.InvariantCulture));
        Assert.Equal(223, calls);
        Assert.Equal(calls, r.Report.Count("work"));
    }

    [Fact]
    public void A_libc_probe_counts_the_hits_of_a_shell_script_workload()
    {
        string binary = programs.Path("regress_scripted");
        Recording alone = Uprec.Record(_dir, ["libc:malloc"], binary);

        Recording r = Uprec.Record(_dir, ["libc:malloc"], programs.Script, [binary]);

        // The script runs the program twice; anything beyond that is the shell's own mallocs,
        // which went unprobed when the workload was a script (only the C runs were counted).
        long programsOnly = 2 * alone.Report.Count("malloc");
        Assert.True(r.Report.Count("malloc") > programsOnly,
            $"malloc hits under the script: {r.Report.Count("malloc")}, the two program runs alone account for {programsOnly}: the shell itself was not probed");
    }

    private static void AssertCallsAndReturns(Recording r, string function)
    {
        var path = Uprec.HitPaths(r.TraceFile)[function];
        Assert.True(path.Path == "inprocess", $"{function}: hit path {path.Path} ({path.Reason}), expected inprocess (the default)");
        ProbeSummary probe = r.Report.Probe(function);
        Assert.True(r.Truth.Count(function) == probe.Count, $"{function}: calls {r.Truth.Count(function)}, report {probe.Count}");
        Assert.True(probe.Latency is not null, $"{function}%return has no latency_ns in the report");
        Assert.True(r.Truth.Number($"returns {function}") == probe.Latency.Count,
            $"{function}: returns {r.Truth.Number($"returns {function}")}, latency_ns.count {probe.Latency.Count}");
    }

    public void Dispose() => _dir.Dispose();
}
