using System.Diagnostics;

namespace Uprec.EndToEnd.Tests;

/// <summary>
/// Issue 3: `uprec record -p PID --duration S` attaches to a running program and leaves it
/// running with its code bytes equal to the file's; another process of the same binary is never
/// touched (testdata/longrun.c checks its own bytes).
/// </summary>
[Collection(EndToEndCollection.Name)]
[Trait("Feature", "attach")]
public sealed class AttachTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public async Task Attach_records_then_detaches_leaving_the_program_intact(Linkage linkage)
    {
        string binary = programs.Path("longrun", linkage);
        string trace = _dir.File("attach.parquet");
        using Process target = await StartReady(binary);
        using Process bystander = await StartReady(binary);
        try
        {
            AttachAndCheck(binary, trace, target, bystander);
        }
        finally
        {
            // A failed assertion must not leave the programs running until their own time limit.
            foreach (Process p in new[] { target, bystander }.Where(p => !p.HasExited))
            {
                p.Kill();
            }
        }
    }

    private static void AttachAndCheck(string binary, string trace, Process target, Process bystander)
    {
        ProcessResult uprec = Uprec.Run(["record", "-p", target.Id.ToString(), "--duration", "1", "-o", trace, "-e", $"{binary}:spin_work"]);

        Assert.True(uprec.ExitCode == 0, uprec.ToString());
        Assert.False(target.HasExited, "the attached program must keep running after uprec detaches");
        GroundTruth targetTruth = Stop(target);
        GroundTruth bystanderTruth = Stop(bystander);
        Assert.Equal("yes", targetTruth.Fact("intact"));
        Assert.Equal("yes", bystanderTruth.Fact("intact"));
        Assert.InRange(Uprec.ReportOf(trace).Count("spin_work"), 1, targetTruth.Count("spin_work"));
        Assert.All(Uprec.ReportOf(trace).Tasks, t => Assert.Equal(target.Id, t.Pid));
    }

    private static async Task<Process> StartReady(string binary)
    {
        Process p = Process.Start(Processes.StartInfo(binary, []))!;
        p.StandardInput.Close();
        string? first = await p.StandardOutput.ReadLineAsync().WaitAsync(Processes.Limit);
        Assert.StartsWith("ready ", first);
        return p;
    }

    private static GroundTruth Stop(Process p)
    {
        Processes.Signal(p.Id, "TERM");
        ProcessResult r = Processes.Finish(p, p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync(), "longrun");
        Assert.True(r.ExitCode == 0, r.ToString());
        return GroundTruth.Parse(r.Stdout);
    }

    public void Dispose() => _dir.Dispose();
}
