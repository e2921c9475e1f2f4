using System.Diagnostics;

namespace Uprec.EndToEnd.Tests;

/// <summary>
/// A signal to uprec alone during a recording (testdata/longrun.c): uprec removes its patches,
/// detaches, ends the workload it started and writes a valid trace. The program then checks
/// its own code bytes against the file and prints `intact yes`.
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed class SignalTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    [Theory]
    [InlineData("INT", Linkage.Pie)]
    [InlineData("TERM", Linkage.Pie)]
    [InlineData("INT", Linkage.NoPie)]
    [InlineData("TERM", Linkage.NoPie)]
    public async Task A_signal_to_uprec_leaves_a_valid_trace_and_an_intact_program(string signal, Linkage linkage)
    {
        string binary = programs.Path("longrun", linkage);
        string trace = _dir.File("longrun.parquet");
        using LongRun run = await LongRun.Record(["record", "-o", trace, "-e", $"{binary}:spin_work", "--", binary]);

        // The intact check below means something only if it sees a patch while one is there.
        Assert.Equal("now patched", await run.CheckBytesNow());
        ProcessResult result = run.SignalUprecAndFinish(signal);

        Assert.True(result.ExitCode == 0, $"longrun exits 0 after SIGTERM, so uprec should too: {result}");
        GroundTruth truth = GroundTruth.Parse(result.Stdout);
        Assert.Equal("yes", truth.Fact("intact"));
        long programCount = truth.Count("spin_work");
        long recorded = Uprec.ReportOf(trace).Count("spin_work");
        Assert.InRange(recorded, 1, programCount);
    }

    public void Dispose() => _dir.Dispose();
}

/// <summary>testdata/longrun.c running under `uprec record`, driven through its signals.</summary>
public sealed class LongRun : IDisposable
{
    private readonly Process _uprec;
    private readonly Task<string> _stderr;

    private LongRun(Process uprec, int targetPid)
    {
        _uprec = uprec;
        TargetPid = targetPid;
        _stderr = uprec.StandardError.ReadToEndAsync();
    }

    public int TargetPid { get; }

    /// <summary>Starts uprec with ARGS (which run longrun) and waits for longrun's `ready PID`.</summary>
    public static async Task<LongRun> Record(string[] args)
    {
        Process uprec = Uprec.Start(args);
        uprec.StandardInput.Close();
        // The program's stdout passes straight through uprec: `ready` means it runs and has called spin_work.
        string? first = await uprec.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit);
        if (first is null || !first.StartsWith("ready ", StringComparison.Ordinal))
        {
            uprec.Kill(entireProcessTree: true);
            Assert.Fail($"longrun did not print 'ready PID' under uprec; first line: {first ?? "(none)"}; stderr: {uprec.StandardError.ReadToEnd()}");
        }
        return new LongRun(uprec, int.Parse(first["ready ".Length..]));
    }

    /// <summary>SIGUSR1 to longrun: it prints `now intact` or `now patched` and runs on.</summary>
    public async Task<string?> CheckBytesNow()
    {
        Processes.Signal(TargetPid, "USR1");
        return await _uprec.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit);
    }

    public ProcessResult SignalUprecAndFinish(string signal)
    {
        Processes.Signal(_uprec.Id, signal);
        return Processes.Finish(_uprec, _uprec.StandardOutput.ReadToEndAsync(), _stderr, $"uprec record ({signal})");
    }

    public void Dispose()
    {
        if (!_uprec.HasExited)
        {
            _uprec.Kill(entireProcessTree: true);
        }
        _uprec.Dispose();
    }
}
