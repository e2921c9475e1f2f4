namespace Uprec.EndToEnd.Tests;

/// <summary>Threads calling one probed function at the same time (testdata/threads.c).</summary>
[Collection(EndToEndCollection.Name)]
public sealed class ThreadTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    [Theory]
    [InlineData(Linkage.Pie, 4, 50_000)]
    [InlineData(Linkage.NoPie, 4, 50_000)]
    [InlineData(Linkage.Pie, 8, 5_000)]
    public void Concurrent_hits_on_every_thread_are_counted_exactly(Linkage linkage, int threads, int callsPerThread)
    {
        string binary = programs.Path("threads", linkage);

        Recording r = Uprec.Record(_dir, [$"{binary}:work"], binary, [threads.ToString(), callsPerThread.ToString()]);

        // The program printed each task's tid and call count on stderr (passed through by uprec).
        var expected = r.Truth.Tasks.Where(t => t.Function == "work").ToDictionary(t => t.Tid, t => t.Count);
        var actual = r.Report.Tasks.Where(t => t.Probe == "work").ToList();
        // On a miss, say which task lost what (per-task counts come from rows; lost says how many were
        // dropped) and what uprec said, so a rare miss can be told from a ring that overflowed.
        string Diagnosis() =>
            $"work: the program made {r.Truth.Count("work")} calls, the report counts {r.Report.Count("work")} (lost {r.Report.Probe("work").Lost}); " +
            $"per task, program vs report rows: {string.Join(", ", expected.Select(kv => $"{kv.Key}: {kv.Value} vs {actual.Where(t => t.Tid == kv.Key).Sum(t => t.Count)}"))}\n" +
            $"uprec stderr:\n{r.Traced.Stderr}";
        Assert.True(r.Truth.Count("work") == r.Report.Count("work"), Diagnosis());
        Assert.True(int.Parse(r.Truth.Fact("threads")) == expected.Count,
            $"the program printed 'threads {r.Truth.Fact("threads")}' but {expected.Count} task lines on stderr:\n{r.Traced.Stderr}");
        Assert.Equal(expected.Count, actual.Count);
        // Every hit has its row (no ring overflows at these counts): a row missing is a record lost in the drain.
        Assert.True(r.Report.Count("work") == actual.Sum(t => t.Count), Diagnosis());
        foreach (TaskSummary task in actual)
        {
            Assert.True(expected.TryGetValue(task.Tid, out long calls), $"the report has task {task.Tid}, which the program never reported");
            Assert.Equal(calls, task.Count);
        }
        int mainPid = r.Truth.Tasks[0].Tid;
        Assert.All(actual, t => Assert.Equal(mainPid, t.Pid));
    }

    public void Dispose() => _dir.Dispose();
}
