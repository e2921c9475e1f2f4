namespace Uprec.EndToEnd.Tests;

/// <summary>
/// Issue 3: a probe belongs to a file and an offset, so it follows the file into children
/// (fork, vfork), exec'd programs and libraries loaded later with dlopen.
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed class FollowTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void Probes_follow_fork_vfork_and_exec(Linkage linkage)
    {
        string binary = programs.Path("forkexec", linkage);
        string child = programs.Path("forkexec_child");

        Recording r = Uprec.Record(_dir, [$"{binary}:fe_work", $"{child}:child_work"], binary);

        Assert.Equal(r.Truth.Count("fe_work"), r.Report.Count("fe_work"));
        Assert.Equal(r.Truth.Count("child_work"), r.Report.Count("child_work"));
        // fe_work ran in the parent and in the forked child; child_work in two exec'd programs.
        Assert.Equal([r.Truth.Count("fe_work_child"), r.Truth.Count("fe_work_parent")],
            PerProcess(r.Report, "fe_work"));
        Assert.Equal(2, PerProcess(r.Report, "child_work").Count);
    }

    /// <summary>
    /// In-process counters live in the child's memory, which exec throws away: uprec reads them at
    /// its own breakpoint on libc's execve. A user probe on execve itself must not take that stop
    /// away by going in process (it did: the forked child's hits were then missing from the count).
    /// </summary>
    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void A_probe_on_execve_keeps_the_counts_of_a_child_that_execs(Linkage linkage)
    {
        string binary = programs.Path("forkexec", linkage);

        Recording r = Uprec.Record(_dir, [$"{binary}:fe_work", "libc:execve"], binary);

        Assert.Equal(r.Truth.Count("fe_work"), r.Report.Count("fe_work"));
        Assert.Equal([r.Truth.Count("fe_work_child"), r.Truth.Count("fe_work_parent")], PerProcess(r.Report, "fe_work"));
        // The forked child and the vforked child each exec once.
        Assert.Equal(2, r.Report.Count("execve"));
    }

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void A_library_probe_follows_dlopen_dlclose_and_a_reload_elsewhere(Linkage linkage)
    {
        string binary = programs.Path("dlreload", linkage);
        string library = programs.Library("libdlplug.so");

        Recording r = Uprec.Record(_dir, [$"{library}:plug_work", $"{library}:plug_run"], binary);

        Assert.Equal("yes", r.Truth.Fact("unloaded"));
        Assert.Equal("yes", r.Truth.Fact("moved"));
        Assert.Equal(r.Truth.Count("plug_work"), r.Report.Count("plug_work"));
        Assert.Equal(r.Truth.Count("plug_run"), r.Report.Count("plug_run"));
    }

    [Fact]
    public void A_probe_on_a_library_never_loaded_is_reported_as_not_installed()
    {
        string binary = programs.Path("firstinsn");

        Recording r = Uprec.Record(_dir, [$"{binary}:fi_push", $"{programs.Library("libdlplug.so")}:plug_work"], binary);

        Assert.Equal(r.Truth.Count("fi_push"), r.Report.Count("fi_push"));
        ProbeSummary never = r.Report.Probe("plug_work");
        Assert.Equal(0, never.Count);
        Assert.False(never.Installed ?? true, "the report must say the probe was never installed");
    }

    /// <summary>Hit counts per process of one probe, ascending.</summary>
    private static List<long> PerProcess(Report report, string probe) =>
        report.Tasks.Where(t => t.Probe == probe).GroupBy(t => t.Pid).Select(g => g.Sum(t => t.Count)).Order().ToList();

    public void Dispose() => _dir.Dispose();
}
