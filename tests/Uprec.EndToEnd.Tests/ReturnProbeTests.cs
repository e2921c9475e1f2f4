namespace Uprec.EndToEnd.Tests;

/// <summary>
/// Issue 3: `%return` probes count calls and time the ones that return, under recursion,
/// signal handlers (same and alternate stack), longjmp and C++ exceptions, without changing
/// what the program does.
/// </summary>
[Collection(EndToEndCollection.Name)]
[Trait("Feature", "return-probes")]
public sealed class ReturnProbeTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    /// <summary>
    /// Each case on both hit paths: in process by default (return trampolines and a shadow stack in
    /// the target, the unwinder hooks putting its entries back), and forced onto the trap path.
    /// </summary>
    [Theory]
    [InlineData("recursion", new[] { "rec_sum" }, "inprocess")]
    [InlineData("sighandler", new[] { "sh_work" }, "inprocess")]
    [InlineData("longjmp", new[] { "lj_outer", "lj_middle", "lj_inner" }, "inprocess")]
    [InlineData("cxxthrow", new[] { "ct_outer", "ct_middle", "ct_thrower" }, "inprocess")]
    [InlineData("btrace", new[] { "bt_work" }, "inprocess")]
    [InlineData("recursion", new[] { "rec_sum" }, "trap")]
    [InlineData("sighandler", new[] { "sh_work" }, "trap")]
    [InlineData("longjmp", new[] { "lj_outer", "lj_middle", "lj_inner" }, "trap")]
    [InlineData("cxxthrow", new[] { "ct_outer", "ct_middle", "ct_thrower" }, "trap")]
    [InlineData("btrace", new[] { "bt_work" }, "trap")]
    public void Calls_and_returns_match_the_program(string program, string[] functions, string hitPath)
    {
        foreach (Linkage linkage in Enum.GetValues<Linkage>())
        {
            string binary = programs.Path(program, linkage);
            string[] options = hitPath == "trap" ? ["--hit-path", "trap"] : [];

            Recording r = Uprec.Record(_dir, functions.Select(f => $"{binary}:{f}%return"), binary, options: options);

            var paths = Uprec.HitPaths(r.TraceFile);
            foreach (string function in functions)
            {
                Assert.True(paths[function].Path == hitPath,
                    $"{program} ({linkage}) {function}: hit path {paths[function].Path} ({paths[function].Reason}), expected {hitPath}");
                ProbeSummary probe = r.Report.Probe(function);
                Assert.True(r.Truth.Count(function) == probe.Count, $"{program} ({linkage}) {function}: calls {r.Truth.Count(function)}, report {probe.Count}");
                Assert.True(probe.Latency is not null, $"{function}%return has no latency_ns in the report");
                Assert.True(r.Truth.Number($"returns {function}") == probe.Latency.Count,
                    $"{program} ({linkage}) {function}: returns {r.Truth.Number($"returns {function}")}, latency_ns.count {probe.Latency.Count}");
                AssertOrdered(probe.Latency);
            }
        }
    }

    [Fact]
    public void The_median_latency_agrees_with_the_programs_own_clock()
    {
        string binary = programs.Path("napper");

        Recording r = Uprec.Record(_dir, [$"{binary}:nap%return"], binary, sameStdout: false);

        // In process, durations are TSC differences converted to CLOCK_MONOTONIC nanoseconds.
        Assert.Equal("inprocess", Uprec.HitPaths(r.TraceFile)["nap"].Path);
        ProbeSummary nap = r.Report.Probe("nap");
        Assert.Equal(r.Truth.Count("nap"), nap.Count);
        Assert.NotNull(nap.Latency);
        Assert.Equal(nap.Count, nap.Latency.Count);
        double own = r.Truth.Number("median_ns nap");
        Assert.InRange(nap.Latency.P50, (long)(own * 0.9), (long)(own * 1.1));
    }

    private static void AssertOrdered(Latency l)
    {
        if (l.Count == 0)
        {
            return;
        }
        Assert.True(0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max && l.Min <= l.Mean && l.Mean <= l.Max,
            $"latency_ns is not ordered: {l}");
    }

    public void Dispose() => _dir.Dispose();
}
