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

        using var uprec = Uprec.Start(["record", "-o", trace, "-e", $"{binary}:spin_work", "--", binary]);
        uprec.StandardInput.Close();
        Task<string> stderr = uprec.StandardError.ReadToEndAsync();
        // The program's stdout passes straight through uprec: `ready` means it runs and has called spin_work.
        string? firstLine = await uprec.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit);
        Assert.Equal("ready", firstLine);

        Processes.Signal(uprec.Id, signal);
        ProcessResult result = Processes.Finish(uprec, uprec.StandardOutput.ReadToEndAsync(), stderr, $"uprec record ({signal})");

        Assert.True(result.ExitCode == 0, $"longrun exits 0 after SIGTERM, so uprec should too: {result}");
        GroundTruth truth = GroundTruth.Parse(result.Stdout);
        Assert.Equal("yes", truth.Fact("intact"));
        long programCount = truth.Count("spin_work");
        long recorded = Uprec.ReportOf(trace).Count("spin_work");
        Assert.InRange(recorded, 1, programCount);
    }

    public void Dispose() => _dir.Dispose();
}
