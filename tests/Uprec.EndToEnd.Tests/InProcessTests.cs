using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Uprec.Trace;

namespace Uprec.EndToEnd.Tests;

/// <summary>
/// The testdata/inproc_* programs, built here with gcc -O2 as PIE (the pattern of
/// RegressionPrograms), so they need no entry in the shared TestPrograms list.
/// </summary>
public sealed class InProcessPrograms : IDisposable
{
    private static readonly string[] Sources = ["inproc_hot2.c", "inproc_scribble.c", "inproc_kill.c", "inproc_churn.c", "inproc_fork.c", "inproc_hooks.c",
        "inproc_throw.cpp", "inproc_fiber.c"];

    private readonly TempDirectory _build = new("uprec-e2e-inproc");

    public InProcessPrograms()
    {
        foreach (string source in Sources)
        {
            List<string> args = ["-O2", "-g", "-Wall", "-fPIE", "-pie", "-o", Path(System.IO.Path.GetFileNameWithoutExtension(source)),
                System.IO.Path.Combine(Paths.TestData, source), "-pthread", "-ldl"];
            string compiler = source.EndsWith(".cpp", StringComparison.Ordinal) ? "g++" : "gcc";
            ProcessResult result = Processes.Run(compiler, args);
            if (result.ExitCode != 0)
            {
                throw new InvalidOperationException($"{compiler} {string.Join(' ', args)} failed:\n{result}");
            }
        }
    }

    public string Path(string name) => _build.File(name);

    public void Dispose() => _build.Dispose();
}

/// <summary>
/// Issue 5, the in-process hit path: a jump to a trampoline instead of a ptrace stop per hit.
/// Exact counts come from counters in the target; samples that did not fit the rings are counted
/// as lost, so Count - Lost is the number of rows. The trap path stays available with
/// --hit-path trap, and a tracer that dies leaves a program that still runs correctly.
/// </summary>
[Collection(EndToEndCollection.Name)]
[Trait("Feature", "inprocess")]
public sealed partial class InProcessTests(TestPrograms shared, InProcessPrograms programs) : IClassFixture<InProcessPrograms>, IDisposable
{
    /// <summary>
    /// Calls per thread in the full-speed run: enough that two threads outrun any drain
    /// (hundreds of MB of records), small enough that the trace writes in a few seconds.
    /// </summary>
    private const int HotCallsPerThread = 5_000_000;

    private readonly TempDirectory _dir = new("uprec-e2e-inproc");

    [Fact]
    public void Two_threads_at_full_speed_go_in_process_and_are_counted_exactly()
    {
        string binary = programs.Path("inproc_hot2");
        // A short run first: if the probe fell back to the trap path, the full run would take
        // minutes of ptrace stops before failing on the same assertion.
        Traced small = Record([], [$"{binary}:hot"], binary, ["1000"]);
        AssertHitPath(small.Probe("hot"), "inprocess");

        Traced r = Record([], [$"{binary}:hot"], binary, [HotCallsPerThread.ToString(CultureInfo.InvariantCulture)]);

        ProbeMeta hot = r.Probe("hot");
        AssertHitPath(hot, "inprocess");
        long calls = r.Truth.Count("hot");
        Assert.Equal(2L * HotCallsPerThread, calls);
        Assert.Equal(calls, hot.Count);
        Assert.Equal(calls, r.Report.Count("hot"));
        Assert.InRange(hot.Lost, 0, calls);
        Assert.Equal(hot.Lost, r.Report.Probe("hot").Lost);
        Assert.True(hot.Count - hot.Lost == r.EntryRows("hot"),
            $"Count {hot.Count} - Lost {hot.Lost} must be the rows of 'hot', the trace has {r.EntryRows("hot")}");

        // Thread identity in the trampoline (not a syscall) must still map to the right tids.
        var programTids = r.Truth.Tasks.Where(t => t.Function == "hot").Select(t => t.Tid).ToHashSet();
        Assert.Equal(2, programTids.Count);
        var reportTasks = r.Report.Tasks.Where(t => t.Probe == "hot").ToList();
        Assert.All(reportTasks, t => Assert.Contains(t.Tid, programTids));
        // Each thread's first records land in an empty ring, so both threads have rows.
        Assert.Equal(programTids.Order(), reportTasks.Select(t => t.Tid).Distinct().Order());
        Assert.Single(reportTasks.Select(t => t.Pid).Distinct());
    }

    /// <summary>
    /// Threads started one after another reuse a TCB, hence an fs base: each thread's calls are
    /// its own, and an exiting thread's last samples are drained, not lost or given to the next.
    /// Every thread makes at most a few thousand calls, far fewer than a ring holds, so nothing
    /// may be dropped at all.
    /// </summary>
    [Fact]
    public void Threads_that_come_and_go_keep_their_own_exact_counts_and_every_sample()
    {
        string binary = programs.Path("inproc_churn");

        Traced r = Record([], [$"{binary}:churn"], binary, ["8", "4"]);

        ProbeMeta churn = r.Probe("churn");
        AssertHitPath(churn, "inprocess");
        Assert.Equal(r.Truth.Count("churn"), churn.Count);
        Assert.Equal(r.Truth.Count("churn"), r.Report.Count("churn"));
        Assert.True(churn.Lost == 0, $"{churn.Lost} samples lost although no thread made more than a few thousand calls");
        Assert.Equal(churn.Count, r.EntryRows("churn"));
        Assert.Equal(r.Truth.Number("threads"), r.Truth.Tasks.Count);
        AssertPerTaskCountsExact(r, "churn");
    }

    /// <summary>
    /// %return in process on two threads at once, each with its own shadow stack: a run whose records
    /// fit the rings times every call exactly, per thread; a full-speed run still counts every call
    /// exactly and times no more returns than calls (a return's record may be kept where its entry's
    /// was dropped: the drain made room in between).
    /// </summary>
    [Fact]
    public void Return_probes_on_two_threads_time_every_call()
    {
        string binary = programs.Path("inproc_hot2");
        // 20,000 calls a thread: 40,000 records, within one ring, so nothing is dropped however slow the drain.
        Traced fits = Record([], [$"{binary}:hot%return"], binary, ["20000"]);

        ProbeMeta hot = fits.Probe("hot");
        AssertHitPath(hot, "inprocess");
        Assert.Equal(40_000, fits.Truth.Count("hot"));
        Assert.Equal(fits.Truth.Count("hot"), hot.Count);
        Assert.Equal(0, hot.Lost);
        ProbeSummary reported = fits.Report.Probe("hot");
        Assert.True(reported.Latency is { } l && l.Count == hot.Count && l.Min > 0 && l.Min <= l.P50 && l.P50 <= l.Max,
            $"hot%return: {reported.Latency} for {hot.Count} calls");
        AssertPerTaskCountsExact(fits, "hot");

        Traced full = Record([], [$"{binary}:hot%return"], binary, [HotCallsPerThread.ToString(CultureInfo.InvariantCulture)]);

        hot = full.Probe("hot");
        Assert.Equal(2L * HotCallsPerThread, full.Truth.Count("hot"));
        Assert.Equal(full.Truth.Count("hot"), hot.Count);
        Assert.Equal(hot.Count - hot.Lost, full.EntryRows("hot"));
        reported = full.Report.Probe("hot");
        Assert.True(reported.Latency is { } lf && lf.Count > 0 && lf.Count <= hot.Count,
            $"hot%return at full speed: {reported.Latency?.Count} returns timed of {hot.Count} calls");
    }

    /// <summary>
    /// A fiber moved between threads with a %return-probed call in flight: the call returns on a thread
    /// whose shadow stack does not have its entry. uprec finds the entry on the other thread's stack and
    /// sends the return where it belongs, so the program runs as untraced; the migrated calls are
    /// counted, and only the returns made on their own thread are timed (here none).
    /// </summary>
    [Fact]
    public void A_call_that_returns_on_another_thread_returns_where_it_belongs()
    {
        string binary = programs.Path("inproc_fiber");

        Traced r = Record([], [$"{binary}:P%return"], binary, []);

        ProbeMeta p = r.Probe("P");
        AssertHitPath(p, "inprocess");
        Assert.Equal(r.Truth.Count("P"), p.Count);
        long timed = r.Truth.Number("returns P") - r.Truth.Number("migrated");
        Assert.Equal(timed, r.Report.Probe("P").Latency?.Count ?? 0);
    }

    /// <summary>
    /// fork copies the parent's rings and counters into the child: the calls made before the fork
    /// are the parent's, counted once.
    /// </summary>
    [Fact]
    public void A_forked_child_and_its_parent_are_counted_once_each()
    {
        string binary = programs.Path("inproc_fork");

        Traced r = Record([], [$"{binary}:forked"], binary, ["3001", "2003", "1009"]);

        ProbeMeta forked = r.Probe("forked");
        AssertHitPath(forked, "inprocess");
        Assert.Equal(3001 + 2003 + 1009, r.Truth.Count("forked"));
        Assert.Equal(r.Truth.Count("forked"), forked.Count);
        Assert.Equal(r.Truth.Count("forked"), r.Report.Count("forked"));
        Assert.True(forked.Count - forked.Lost == r.EntryRows("forked"),
            $"Count {forked.Count} - Lost {forked.Lost} must be the rows of 'forked', the trace has {r.EntryRows("forked")}");
        Assert.True(forked.Lost == 0, $"{forked.Lost} samples lost out of a few thousand");
        AssertPerTaskCountsExact(r, "forked");
        // Two single-threaded processes: each task is its own process.
        Assert.All(r.Report.Tasks.Where(t => t.Probe == "forked"), t => Assert.Equal(t.Pid, t.Tid));
    }

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void Every_firstinsn_probe_forced_onto_the_trap_path_counts_exactly(Linkage linkage)
    {
        string binary = shared.Path("firstinsn", linkage);
        List<string> specs = FirstInstructionTests.Functions.Select(f => $"{binary}:{f}").ToList();
        long delta = GroundTruth.Parse(Processes.Run(binary, []).Stdout).OffsetOf("fi_offset");
        specs.Add($"fi_offset_loop={binary}:fi_offset+{delta}");

        Traced r = Record(["--hit-path", "trap"], specs, binary, []);

        foreach (string function in FirstInstructionTests.Functions)
        {
            AssertHitPath(r.Probe(function), "trap");
            Assert.True(r.Truth.Count(function) == r.Report.Count(function),
                $"{function}: program says {r.Truth.Count(function)}, report says {r.Report.Count(function)}");
        }
        AssertHitPath(r.Probe("fi_offset_loop"), "trap");
        Assert.Equal(r.Truth.Count($"fi_offset+{delta}"), r.Report.Count("fi_offset_loop"));
    }

    [Fact]
    public void Threads_forced_onto_the_trap_path_count_exactly_per_task()
    {
        string binary = shared.Path("threads");

        Traced r = Record(["--hit-path", "trap"], [$"{binary}:work"], binary, ["4", "20000"]);

        AssertHitPath(r.Probe("work"), "trap");
        Assert.Equal(r.Truth.Count("work"), r.Report.Count("work"));
        AssertPerTaskCountsExact(r, "work");
    }

    /// <summary>
    /// fi_ret1 is one byte long with another function right after it, and fi_loop's loop
    /// branches back to offset 2: a 5-byte jump at either would corrupt code that still runs.
    /// </summary>
    [Theory]
    [InlineData("fi_ret1")]
    [InlineData("fi_loop")]
    public void A_site_unsafe_for_a_jump_falls_back_to_the_trap_path_by_default(string function)
    {
        string binary = shared.Path("firstinsn");

        Traced r = Record([], [$"{binary}:{function}"], binary, []);

        ProbeMeta probe = r.Probe(function);
        AssertHitPath(probe, "trap");
        Assert.False(string.IsNullOrWhiteSpace(probe.HitPathReason), $"{function} fell back to the trap path without saying why");
        Assert.Equal(r.Truth.Count(function), r.Report.Count(function));
    }

    [Theory]
    [InlineData("fi_ret1")]
    [InlineData("fi_loop")]
    public void A_site_unsafe_for_a_jump_is_not_placed_with_hit_path_inprocess(string function)
    {
        string binary = shared.Path("firstinsn");

        // The unsafe probe is not placed; the program runs untouched (same output as untraced).
        Traced r = Record(["--hit-path", "inprocess"], [$"{binary}:{function}"], binary, []);

        ProbeMeta probe = r.Probe(function);
        AssertHitPath(probe, "none");
        Assert.False(probe.Installed, $"{function} is marked installed although its hit path is none");
        Assert.False(string.IsNullOrWhiteSpace(probe.HitPathReason), $"{function} was not placed and the trace does not say why");
        Assert.Equal(0, r.EntryRows(function));
    }

    [Fact]
    public void A_safe_site_goes_in_process_with_hit_path_inprocess()
    {
        string binary = programs.Path("inproc_hot2");

        Traced r = Record(["--hit-path", "inprocess"], [$"{binary}:hot"], binary, ["1000"]);

        AssertHitPath(r.Probe("hot"), "inprocess");
        Assert.Equal(r.Truth.Count("hot"), r.Report.Count("hot"));
    }

    [Fact]
    public void An_unknown_hit_path_is_refused_in_one_line_before_the_program_starts()
    {
        string binary = programs.Path("inproc_hot2");

        ProcessResult r = Uprec.Run(["record", "--hit-path", "fast", "-o", _dir.File("never.parquet"), "-e", $"{binary}:hot", "--", binary, "10"]);

        Assert.True(r.ExitCode == 2, $"expected exit code 2: {r}");
        string[] lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected exactly one line on stderr: {r}");
        Assert.StartsWith("uprec: error: ", lines[0]);
        Assert.Contains("fast", lines[0]);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void A_target_scribbling_over_its_rings_and_counters_runs_as_untraced_and_uprec_survives()
    {
        string binary = programs.Path("inproc_scribble");

        // Record checks that uprec exits with the program's code (0), that stdout is the
        // untraced one byte for byte, and that `uprec report` reads the trace.
        Traced r = Record([], [$"{binary}:scrib"], binary, ["1000000", "20000"]);

        AssertHitPath(r.Probe("scrib"), "inprocess");
        // Without this the test would pass against a tracer whose rings the program never found.
        Match scribbled = ScribbledLine().Match(r.Result.Traced.Stderr);
        Assert.True(scribbled.Success, $"inproc_scribble printed no 'scribbled' line:\n{r.Result.Traced.Stderr}");
        long mappings = long.Parse(scribbled.Groups["mappings"].Value, CultureInfo.InvariantCulture);
        Assert.True(mappings > 0, $"the program found no writable memfd:uprec-ring mapping to scribble on: {scribbled.Value}");
        Assert.True(r.Report.Probe("scrib").Lost >= 0, $"lost is negative: {r.Report.Probe("scrib").Lost}");
        Assert.True(r.Report.Count("scrib") >= 0, $"count is negative: {r.Report.Count("scrib")}");
        // Counters the program overwrote cannot be trusted, but the report stays consistent: every
        // row was a hit, so Count - Lost is still the number of rows.
        ProbeMeta scrib = r.Probe("scrib");
        Assert.True(scrib.Count - scrib.Lost == r.EntryRows("scrib"),
            $"Count {scrib.Count} - Lost {scrib.Lost} must be the rows of 'scrib', the trace has {r.EntryRows("scrib")}");
    }

    [Theory]
    [InlineData("kwork")]
    [InlineData("kwork%return")] // return trampolines go on working without uprec
    public async Task A_program_whose_tracer_is_killed_while_attached_finishes_with_its_own_checksum(string probe)
    {
        AttachedRun run = await AttachThenSignal("KILL", "killed.parquet", probe);

        Assert.True(run.Program.ExitCode == 0, $"the program did not survive its tracer's SIGKILL: {run.Program}");
        GroundTruth traced = GroundTruth.Parse(run.Program.Stdout);
        Assert.Equal(run.Untraced.Count("kwork"), traced.Count("kwork"));
        Assert.Equal(run.Untraced.Fact("checksum"), traced.Fact("checksum"));
    }

    /// <summary>
    /// uprec's own hooks (the loader's _dl_debug_state, libc's execve) are guarded jumps, not bare int3s:
    /// after uprec is SIGKILLed while attached, the program's next dlopen and exec must not end it with
    /// SIGTRAP. inproc_hooks waits for its probe to be patched, then for SIGUSR1 (sent after the kill),
    /// then dlopens and execs 20 times.
    /// </summary>
    [Fact]
    public async Task A_program_whose_tracer_was_killed_can_still_dlopen_and_exec()
    {
        string binary = programs.Path("inproc_hooks");
        ProcessResult alone = Processes.Run(binary, ["20", "nowait"]);
        Assert.True(alone.ExitCode == 0, $"the program itself misbehaved untraced: {alone}");

        using Process target = Process.Start(Processes.StartInfo(binary, ["20"]))!;
        target.StandardInput.Close();
        Process? tracer = null;
        try
        {
            Assert.Equal($"ready {target.Id}", await target.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit));
            tracer = Uprec.Start(["record", "-p", target.Id.ToString(CultureInfo.InvariantCulture), "-o", _dir.File("hooks.parquet"),
                "-e", $"{binary}:hwork"]);
            tracer.StandardInput.Close();
            _ = tracer.StandardOutput.ReadToEndAsync();
            _ = tracer.StandardError.ReadToEndAsync();
            Assert.Equal("patched", await target.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit));
            tracer.Kill();
            Assert.True(tracer.WaitForExit(Processes.Limit), "uprec did not end after SIGKILL");
            Processes.Signal(target.Id, "USR1");
            ProcessResult finished = Processes.Finish(target, target.StandardOutput.ReadToEndAsync(), target.StandardError.ReadToEndAsync(), "inproc_hooks");
            Assert.True(finished.ExitCode == 0, $"the program did not survive dlopen and exec after its tracer's SIGKILL: {finished}");
            GroundTruth truth = GroundTruth.Parse(finished.Stdout);
            Assert.Equal(20000, truth.Count("hwork_rounds"));
            Assert.Equal(GroundTruth.Parse(alone.Stdout).Fact("checksum"), truth.Fact("checksum"));
        }
        finally
        {
            if (tracer is { HasExited: false }) tracer.Kill();
            tracer?.Dispose();
            if (!target.HasExited) target.Kill();
        }
    }

    /// <summary>
    /// Ctrl-C detaches while two threads keep calling the probed function (often inside a
    /// trampoline at that moment): the bytes are restored, the program finishes with its own
    /// checksum, and the trace holds what was recorded until then.
    /// </summary>
    [Theory]
    [InlineData("kwork")]
    [InlineData("kwork%return")] // hijacked return addresses are put back at detach
    public async Task Detaching_while_threads_run_through_the_trampoline_leaves_the_program_intact(string probe)
    {
        AttachedRun run = await AttachThenSignal("INT", "detached.parquet", probe);

        Assert.True(run.TracerExitCode == 0, $"uprec exited {run.TracerExitCode} after SIGINT: {run.TracerStderr}");
        Assert.True(run.Program.ExitCode == 0, $"the program did not survive the detach: {run.Program}");
        GroundTruth traced = GroundTruth.Parse(run.Program.Stdout);
        Assert.Equal(run.Untraced.Count("kwork"), traced.Count("kwork"));
        Assert.Equal(run.Untraced.Fact("checksum"), traced.Fact("checksum"));
        Assert.Equal("yes", GroundTruth.Parse(run.Program.Stderr).Fact("intact"));

        using TraceReader reader = TraceReader.Open(run.TraceFile);
        ProbeMeta kwork = Assert.Single(reader.Metadata.Probes, p => p.Name == "kwork");
        AssertHitPath(kwork, "inprocess");
        Assert.InRange(kwork.Count, 1, traced.Count("kwork"));
        Assert.InRange(kwork.Lost, 0, kwork.Count);
        ProbeSummary reported = Uprec.ReportOf(run.TraceFile).Probe("kwork");
        Assert.Equal(kwork.Count, reported.Count);
        if (probe.EndsWith("%return", StringComparison.Ordinal))
        {
            // Calls in flight at the detach return untimed. (A return's record may be kept where its
            // entry's was dropped, so the bound is the calls, not the kept entries.)
            Assert.True(reported.Latency is { Count: > 0 } l && l.Count <= kwork.Count,
                $"kwork%return: {reported.Latency?.Count} returns timed of {kwork.Count} calls ({kwork.Lost} lost)");
        }
    }

    /// <summary>
    /// C++ exceptions thrown through a %return-probed frame, and backtrace() called inside it, after
    /// uprec is gone: the frame's return address is uprec's return trampoline, which the unwinder
    /// cannot walk (std::terminate). While uprec lives it puts the real addresses back at its unwinder
    /// hooks; after a SIGKILL the hooks (guarded jumps) do it themselves, and after a detach (SIGINT)
    /// nothing is hijacked any more. Either way the program catches every throw and every backtrace
    /// finds every frame, exactly as untraced.
    /// </summary>
    [Theory]
    [InlineData("KILL")]
    [InlineData("INT")]
    public async Task Throws_and_backtraces_through_a_return_probed_frame_after_the_tracer_is_gone(string signal)
    {
        string binary = programs.Path("inproc_throw");
        ProcessResult alone = Processes.Run(binary, ["2000", "nowait"]);
        Assert.True(alone.ExitCode == 0, $"the program itself misbehaved untraced: {alone}");
        GroundTruth untraced = GroundTruth.Parse(alone.Stdout);

        using Process target = Process.Start(Processes.StartInfo(binary, ["2000"]))!;
        target.StandardInput.Close();
        Process? tracer = null;
        try
        {
            Assert.Equal($"ready {target.Id}", await target.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit));
            tracer = Uprec.Start(["record", "-p", target.Id.ToString(CultureInfo.InvariantCulture), "-o", _dir.File($"throw-{signal}.parquet"),
                "-e", $"{binary}:tw_middle%return"]);
            tracer.StandardInput.Close();
            _ = tracer.StandardOutput.ReadToEndAsync();
            Task<string> tracerErr = tracer.StandardError.ReadToEndAsync();
            Assert.Equal("patched", await target.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit));
            // Return trampolines at work: the program calls tw_middle all the while.
            await Task.Delay(TimeSpan.FromMilliseconds(300));
            if (signal == "KILL") tracer.Kill();
            else Processes.Signal(tracer.Id, signal);
            Assert.True(tracer.WaitForExit(Processes.Limit), $"uprec did not end after SIG{signal}");
            if (signal == "INT") Assert.True(tracer.ExitCode == 0, $"uprec exited {tracer.ExitCode} after SIGINT: {Peek(tracerErr)}");
            Processes.Signal(target.Id, "USR1");
            ProcessResult finished = Processes.Finish(target, target.StandardOutput.ReadToEndAsync(), target.StandardError.ReadToEndAsync(), "inproc_throw");
            Assert.True(finished.ExitCode == 0, $"the program did not survive throwing after its tracer's SIG{signal}: {finished}");
            GroundTruth truth = GroundTruth.Parse(finished.Stdout);
            Assert.Equal(untraced.Fact("caught"), truth.Fact("caught"));
            Assert.Equal(untraced.Fact("frames"), truth.Fact("frames"));
            Assert.Equal(untraced.Fact("checksum"), truth.Fact("checksum"));
        }
        finally
        {
            if (tracer is { HasExited: false }) tracer.Kill();
            if (!target.HasExited) target.Kill();
        }
    }

    /// <summary>What an attach-then-signal run left: the program's own result and uprec's.</summary>
    private sealed record AttachedRun(GroundTruth Untraced, ProcessResult Program, int TracerExitCode, string TracerStderr, string TraceFile);

    /// <summary>
    /// Runs inproc_kill untraced, then again with `uprec record -p` attached; once the program
    /// sees kwork patched, waits 0.5 s (hits flow through the trampoline, rings start filling)
    /// and sends SIGNAL to uprec alone, then waits for both to end.
    /// </summary>
    private async Task<AttachedRun> AttachThenSignal(string signal, string traceName, string probe)
    {
        string binary = programs.Path("inproc_kill");
        // 4000 rounds of a batch and a 1 ms sleep on each of 2 threads: about 4 s. Traced, the
        // counted rounds start only once the program sees kwork patched (it waits up to 120 s for
        // that), so however slowly uprec starts, the signal comes 0.5 s into those 4 s.
        string[] untracedArgs = ["4000", "20000", "0", "2"];
        string[] tracedArgs = ["4000", "20000", "120", "2"];
        ProcessResult alone = Processes.Run(binary, untracedArgs);
        Assert.True(alone.ExitCode == 0, $"the program itself misbehaved untraced: {alone}");
        string trace = _dir.File(traceName);

        using Process target = Process.Start(Processes.StartInfo(binary, tracedArgs))!;
        target.StandardInput.Close();
        Process? tracer = null;
        try
        {
            string? ready = await target.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit);
            Assert.Equal($"ready {target.Id}", ready);
            Task<string> rest = target.StandardOutput.ReadToEndAsync();
            var patched = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            Task<string> stderr = ReadStderrNoting(target, "patched round ", patched);

            tracer = Uprec.Start(["record", "-p", target.Id.ToString(CultureInfo.InvariantCulture), "-o", trace, "-e", $"{binary}:{probe}"]);
            tracer.StandardInput.Close();
            _ = tracer.StandardOutput.ReadToEndAsync();
            Task<string> tracerErr = tracer.StandardError.ReadToEndAsync();

            await Task.WhenAny(patched.Task, stderr, Task.Delay(Processes.Limit));
            Assert.True(patched.Task.IsCompleted,
                $"the program never saw kwork patched (it finished first, or uprec failed); uprec: {(tracer.HasExited ? $"exited {tracer.ExitCode}: {Peek(tracerErr)}" : "still running")}");
            await Task.Delay(TimeSpan.FromMilliseconds(500));
            Assert.False(tracer.HasExited, $"uprec ended before it was signalled: {(tracer.HasExited ? $"exit {tracer.ExitCode}, {Peek(tracerErr)}" : "")}");
            if (signal == "KILL")
            {
                tracer.Kill();
            }
            else
            {
                Processes.Signal(tracer.Id, signal);
            }
            Assert.True(tracer.WaitForExit(Processes.Limit), $"uprec did not end after SIG{signal}");
            tracer.WaitForExit(); // lets the stderr reader reach the end
            string tracerStderr = await tracerErr.WaitAsync(Processes.Limit);

            ProcessResult finished = Processes.Finish(target, rest, stderr, "inproc_kill");
            return new AttachedRun(GroundTruth.Parse(alone.Stdout), finished, tracer.ExitCode, tracerStderr, trace);
        }
        finally
        {
            // A failed assertion must leave neither process running until its own time limit.
            if (tracer is { HasExited: false })
            {
                tracer.Kill();
            }
            tracer?.Dispose();
            if (!target.HasExited)
            {
                target.Kill();
            }
        }
    }

    /// <summary>Reads the target's stderr to the end, completing NOTED with the first line that starts with PREFIX.</summary>
    private static async Task<string> ReadStderrNoting(Process target, string prefix, TaskCompletionSource<string> noted)
    {
        var all = new System.Text.StringBuilder();
        while (await target.StandardError.ReadLineAsync() is { } line)
        {
            all.Append(line).Append('\n');
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                noted.TrySetResult(line);
            }
        }
        return all.ToString();
    }

    /// <summary>The report's per-task counts of PROBE are exactly the `task TID FUNCTION N` lines the program printed.</summary>
    private static void AssertPerTaskCountsExact(Traced r, string probe)
    {
        var expected = r.Truth.Tasks.Where(t => t.Function == probe).ToDictionary(t => t.Tid, t => t.Count);
        var actual = r.Report.Tasks.Where(t => t.Probe == probe).ToDictionary(t => t.Tid, t => t.Count);
        Assert.True(expected.Count > 0, $"the program printed no 'task TID {probe} N' lines:\n{r.Result.Traced.Stderr}");
        Assert.Equal(expected.OrderBy(kv => kv.Key), actual.OrderBy(kv => kv.Key));
    }

    private static string Peek(Task<string> stream) => stream.IsCompletedSuccessfully ? stream.Result : "(output still open)";

    private static void AssertHitPath(ProbeMeta probe, string expected) =>
        Assert.True(probe.HitPath == expected,
            $"probe '{probe.Name}' took hit path '{probe.HitPath}' ({probe.HitPathReason ?? "no reason given"}), expected '{expected}'");

    [GeneratedRegex(@"^scribbled (?<rounds>\d+) rounds (?<mappings>\d+) mappings (?<bytes>\d+) bytes (?<skipped>\d+) read-only$", RegexOptions.Multiline)]
    private static partial Regex ScribbledLine();

    /// <summary>A recording with its trace metadata and its rows counted per probe.</summary>
    private sealed record Traced(Recording Result, TraceMetadata Metadata, IReadOnlyDictionary<string, long> EntryRowsByProbe)
    {
        public GroundTruth Truth => Result.Truth;

        public Report Report => Result.Report;

        public ProbeMeta Probe(string name)
        {
            var matches = Metadata.Probes.Where(p => p.Name == name).ToList();
            Assert.True(matches.Count == 1,
                $"expected one probe named '{name}' in the trace metadata, found {matches.Count}: {string.Join(", ", Metadata.Probes.Select(p => p.Name))}");
            return matches[0];
        }

        public long EntryRows(string probe) => EntryRowsByProbe.TryGetValue(probe, out long n) ? n : 0;
    }

    /// <summary>
    /// Uprec.Record with record OPTIONS (e.g. --hit-path trap) before the probes: the untraced
    /// run, the same exit code and stdout traced, a readable report; plus the footer metadata
    /// and the entry rows of each probe, read with the trace library.
    /// </summary>
    private Traced Record(string[] options, IEnumerable<string> probeSpecs, string program, string[] args)
    {
        string trace = _dir.File($"trace-{Guid.NewGuid():N}.parquet");
        List<string> uprecArgs = ["record", "-o", trace, .. options];
        foreach (string spec in probeSpecs)
        {
            uprecArgs.AddRange(["-e", spec]);
        }
        uprecArgs.AddRange(["--", program, .. args]);

        ProcessResult untraced = Processes.Run(program, args);
        Assert.True(untraced.ExitCode == 0, $"the program itself misbehaved untraced: {untraced}");
        ProcessResult traced = Uprec.Run(uprecArgs);
        Assert.True(traced.ExitCode == untraced.ExitCode,
            $"uprec {string.Join(' ', uprecArgs)} exited {traced.ExitCode}, the program alone exits {untraced.ExitCode}: {traced}");
        Assert.Equal(untraced.Stdout, traced.Stdout);
        Report report = Uprec.ReportOf(trace);

        using TraceReader reader = TraceReader.Open(trace);
        var rows = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (TraceBatch batch in reader.ReadBatches(new HashSet<string> { TraceColumns.Probe, TraceColumns.Kind }))
        {
            for (int i = 0; i < batch.Count; i++)
            {
                if (batch.Kind[i] == HitKind.Entry)
                {
                    rows[batch.Probe[i]] = rows.GetValueOrDefault(batch.Probe[i]) + 1;
                }
            }
        }
        var recording = new Recording(traced, untraced, report, GroundTruth.Parse(traced.Stdout, traced.Stderr), trace);
        return new Traced(recording, reader.Metadata, rows);
    }

    public void Dispose() => _dir.Dispose();
}
