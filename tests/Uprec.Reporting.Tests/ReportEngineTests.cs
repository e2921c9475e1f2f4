using Uprec.Trace;

namespace Uprec.Reporting.Tests;

public class ReportEngineTests
{
    private static SyntheticTrace Spec(int seed = 3, int dropEvery = 0, int rowGroupSize = 4096) => new()
    {
        Probes =
        [
            new SyntheticProbe("work", 20_000, new LatencyModel.LogNormal(5_000, 1.0)),
            new SyntheticProbe("parse", 6_000, new LatencyModel.Uniform(100, 900)),
            new SyntheticProbe("malloc", 9_000),
        ],
        Processes = 2,
        ThreadsPerProcess = 3,
        Seed = seed,
        DropEvery = dropEvery,
        RowGroupSize = rowGroupSize,
        NeverInstalled = ["ghost"],
    };

    private static Report Run(string path, Func<ReportRequest, ReportRequest>? tweak = null)
    {
        var request = new ReportRequest { Inputs = [path] };
        return ReportEngine.Run(tweak is null ? request : tweak(request));
    }

    [Fact]
    public void PercentilesAreWithinTheStatedBoundAndTheRestIsExact()
    {
        using var dir = new TempDir();
        SyntheticTrace spec = Spec();
        string path = dir.File("t.parquet");
        spec.Write(path);
        Report report = Run(path);
        Assert.Equal(0.001, report.PercentileError);

        HitRecord[] hits = spec.Hits().ToArray();
        foreach ((string name, int id) in new[] { ("work", 0), ("parse", 1) })
        {
            long[] d = Truth.Durations(hits, id);
            LatencyStats l = report.Probes.Single(p => p.Name == name).Latency!;
            Assert.Equal(d.Length, l.Count);
            Assert.Equal(d[0], l.Min);
            Assert.Equal(d[^1], l.Max);
            Assert.Equal(d.Sum(), l.Total);
            Assert.Equal(d.Sum() / d.Length, l.Mean);
            Truth.Near(Truth.Percentile(d, 50), l.P50, report.PercentileError);
            Truth.Near(Truth.Percentile(d, 90), l.P90, report.PercentileError);
            Truth.Near(Truth.Percentile(d, 99), l.P99, report.PercentileError);
            Truth.Near(Truth.Percentile(d, 99.9), l.P999, report.PercentileError);
        }
        Assert.Null(report.Probes.Single(p => p.Name == "malloc").Latency);
    }

    [Fact]
    public void CountsUseExactCountersUnlessRowsAreFiltered()
    {
        using var dir = new TempDir();
        SyntheticTrace spec = Spec(dropEvery: 7);
        string path = dir.File("t.parquet");
        spec.Write(path);
        HitRecord[] hits = spec.Hits().ToArray();

        Report all = Run(path);
        ProbeSummary work = all.Probes.Single(p => p.Name == "work");
        Assert.Equal(20_000, work.Count);
        Assert.Equal(20_000 / 7, work.Lost);
        // Latency can only come from the rows that were written.
        Assert.Equal(hits.Count(h => h.ProbeId == 0 && h.Kind == HitKind.Return), work.Latency!.Count);

        // Any row filter or window makes the count a count of matching entry rows.
        Report filtered = Run(path, r => r with { Filter = "pid > 0" });
        Assert.Equal(hits.Count(h => h.ProbeId == 0 && h.Kind == HitKind.Entry), filtered.Probes.Single(p => p.Name == "work").Count);
        Assert.Equal(20_000 - 20_000 / 7, filtered.Probes.Single(p => p.Name == "work").Count);
    }

    [Fact]
    public void NeverInstalledProbesAppearWithZeroCount()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        Spec().Write(path);
        ProbeSummary ghost = Run(path).Probes.Single(p => p.Name == "ghost");
        Assert.False(ghost.Installed);
        Assert.Equal(0, ghost.Count);
        Assert.Null(ghost.Latency);
    }

    [Fact]
    public void TaskProcessAndCommGroupsMatchTheHits()
    {
        using var dir = new TempDir();
        SyntheticTrace spec = Spec();
        string path = dir.File("t.parquet");
        spec.Write(path);
        HitRecord[] hits = spec.Hits().ToArray();
        string[] names = ["work", "parse", "malloc"];

        var expectedTasks = hits.Where(h => h.Kind == HitKind.Entry)
            .GroupBy(h => (h.Pid, h.Tid, h.Comm, Probe: names[h.ProbeId]))
            .ToDictionary(g => g.Key, g => (long)g.Count());
        Report tasks = Run(path);
        Assert.Equal(expectedTasks.Count, tasks.Tasks.Count);
        foreach (GroupSummary g in tasks.Tasks)
        {
            Assert.Equal(expectedTasks[(g.Pid!.Value, g.Tid!.Value, g.Comm, g.Probe)], g.Count);
        }
        GroupSummary oneTask = tasks.Tasks.First(g => g.Probe == "work");
        long[] taskDurations = hits.Where(h => h.ProbeId == 0 && h.Kind == HitKind.Return && h.Tid == oneTask.Tid)
            .Select(h => h.DurationNs).Order().ToArray();
        Assert.Equal(taskDurations.Length, oneTask.Latency!.Count);
        Assert.Equal(taskDurations[^1], oneTask.Latency.Max);
        Truth.Near(Truth.Percentile(taskDurations, 99), oneTask.Latency.P99, tasks.GroupPercentileError);

        Report processes = Run(path, r => r with { GroupBy = GroupBy.Process });
        foreach (GroupSummary g in processes.Groups)
        {
            Assert.Null(g.Tid);
            Assert.Equal(SyntheticTrace.Comm((g.Pid!.Value - 1000) / 100, 0), g.Comm);
            Assert.Equal(hits.Count(h => h.Kind == HitKind.Entry && h.Pid == g.Pid && names[h.ProbeId] == g.Probe), g.Count);
        }
        Assert.Equal(2 * 3, processes.Groups.Count);

        Report comms = Run(path, r => r with { GroupBy = GroupBy.Comm });
        Assert.Equal(6 * 3, comms.Groups.Count);
        foreach (GroupSummary g in comms.Groups)
        {
            Assert.Null(g.Pid);
            Assert.Equal(hits.Count(h => h.Kind == HitKind.Entry && h.Comm == g.Comm && names[h.ProbeId] == g.Probe), g.Count);
        }
    }

    [Fact]
    public void ManyTasksCommsAndProbesAreEachCountedApart()
    {
        // More distinct comms and probes than the aggregator's recently-seen tables hold, and more
        // (task, probe) groups than its hash table starts with, so every growth and fallback path runs;
        // row groups longer than the aggregator's blocks of rows.
        using var dir = new TempDir();
        var probes = Enumerable.Range(0, 12)
            .Select(i => new SyntheticProbe($"p{i}", 700 + 37 * i, i % 3 == 0 ? new LatencyModel.Uniform(10, 10_000 * (i + 1)) : null))
            .ToList();
        SyntheticTrace spec = new() { Probes = probes, Processes = 5, ThreadsPerProcess = 9, Seed = 11, RowGroupSize = 10_000 };
        string path = dir.File("many.parquet");
        spec.Write(path);
        HitRecord[] hits = spec.Hits().ToArray();

        var expected = hits.GroupBy(h => (h.Pid, h.Tid, h.Comm, Probe: probes[h.ProbeId].Name))
            .ToDictionary(g => g.Key, g => (Count: (long)g.Count(h => h.Kind == HitKind.Entry),
                Returns: g.Where(h => h.Kind == HitKind.Return).Select(h => h.DurationNs).ToArray()));
        Report report = Run(path);
        Assert.Equal(5 * 9 * 12, expected.Count);
        Assert.Equal(expected.Count, report.Tasks.Count);
        foreach (GroupSummary g in report.Tasks)
        {
            var (count, returns) = expected[(g.Pid!.Value, g.Tid!.Value, g.Comm, g.Probe)];
            Assert.Equal(count, g.Count);
            if (returns.Length == 0)
            {
                Assert.Null(g.Latency);
                continue;
            }
            Assert.Equal(returns.Length, g.Latency!.Count);
            Assert.Equal(returns.Min(), g.Latency.Min);
            Assert.Equal(returns.Max(), g.Latency.Max);
            Assert.Equal(returns.Sum(), g.Latency.Total);
        }
        foreach (ProbeSummary p in report.Probes)
        {
            int id = probes.FindIndex(x => x.Name == p.Name);
            Assert.Equal(probes[id].Calls, p.Count);
            Assert.Equal(hits.Count(h => h.ProbeId == id && h.Kind == HitKind.Return), p.Latency?.Count ?? 0);
        }
    }

    [Theory]
    [InlineData("count", new[] { "work", "malloc", "parse", "ghost" })]
    [InlineData("name", new[] { "ghost", "malloc", "parse", "work" })]
    [InlineData("max", new[] { "work", "parse", "ghost", "malloc" })]
    [InlineData("total", new[] { "work", "parse", "ghost", "malloc" })]
    [InlineData("mean", new[] { "work", "parse", "ghost", "malloc" })]
    [InlineData("p99", new[] { "work", "parse", "ghost", "malloc" })]
    public void SortKeysOrderProbes(string key, string[] expected)
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        Spec().Write(path);
        Report report = Run(path, r => r with { Sort = SortKeys.Parse(key) });
        Assert.Equal(expected, report.Probes.Select(p => p.Name));
    }

    [Fact]
    public void AnUnknownSortKeyIsAOneLineError()
    {
        var e = Assert.Throws<ReportException>(() => SortKeys.Parse("latency"));
        Assert.Equal("unknown sort key 'latency' (valid: count, total, mean, p99, max, name)", e.Message);
    }

    [Fact]
    public void Log2HistogramCountsAreExact()
    {
        using var dir = new TempDir();
        SyntheticTrace spec = Spec();
        string path = dir.File("t.parquet");
        spec.Write(path);
        long[] d = Truth.Durations(spec.Hits(), 0);
        Report report = Run(path, r => r with { Histograms = true });
        IReadOnlyList<HistogramBucket> hist = report.Probes.Single(p => p.Name == "work").Histogram!;
        Assert.Equal(d.Length, hist.Sum(b => b.Count));
        foreach (HistogramBucket b in hist)
        {
            Assert.Equal(d.Count(x => x >= b.Low && x < b.High), b.Count);
            Assert.True(b.Low == 0 || b.High == 2 * b.Low);
        }
        Assert.True(hist[0].Count > 0 && hist[^1].Count > 0);
        Assert.Null(report.Probes.Single(p => p.Name == "malloc").Histogram);
    }

    [Fact]
    public void FilterSelectsRowsLikeTheGroundTruth()
    {
        using var dir = new TempDir();
        SyntheticTrace spec = Spec();
        string path = dir.File("t.parquet");
        spec.Write(path);
        HitRecord[] hits = spec.Hits().ToArray();

        Report report = Run(path, r => r with { Filter = "comm ~ \"proc1*\" && (tid != 1101 || probe == \"parse\")" });
        bool Keep(HitRecord h) => h.Comm.StartsWith("proc1") && (h.Tid != 1101 || h.ProbeId == 1);
        Assert.Equal(hits.Count(Keep), report.RowsMatched);
        Assert.Equal(hits.Count(h => Keep(h) && h.ProbeId == 0 && h.Kind == HitKind.Entry), report.Probes.Single(p => p.Name == "work").Count);
        long[] d = hits.Where(h => Keep(h) && h.ProbeId == 0 && h.Kind == HitKind.Return).Select(h => h.DurationNs).Order().ToArray();
        Assert.Equal(d[^1], report.Probes.Single(p => p.Name == "work").Latency!.Max);

        Report slow = Run(path, r => r with { Filter = "kind == \"return\" && duration_ns >= 10000" });
        Assert.Equal(hits.Count(h => h.Kind == HitKind.Return && h.DurationNs >= 10000), slow.Probes.Single(p => p.Name == "work").Latency!.Count);
        Assert.Equal(0, slow.Probes.Single(p => p.Name == "work").Count);
    }

    [Fact]
    public void AFilterOnAnUnknownFieldNamesIt()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        Spec().Write(path);
        var e = Assert.Throws<Uprec.Filters.FilterException>(() => Run(path, r => r with { Filter = "cpu == 1" }));
        Assert.Contains("unknown field 'cpu'", e.Message);
    }

    [Fact]
    public void TimeWindowIsRelativeToTheStart()
    {
        using var dir = new TempDir();
        SyntheticTrace spec = Spec();
        string path = dir.File("t.parquet");
        spec.Write(path);
        HitRecord[] hits = spec.Hits().ToArray();
        long span = hits[^1].TimeNs - spec.StartTimeNs;
        long since = span / 4, until = span / 2;

        Report report = Run(path, r => r with { SinceNs = since, UntilNs = until });
        bool In(HitRecord h) => h.TimeNs >= spec.StartTimeNs + since && h.TimeNs < spec.StartTimeNs + until;
        Assert.Equal(hits.Count(In), report.RowsMatched);
        Assert.Equal(hits.Count(h => In(h) && h.ProbeId == 2), report.Probes.Single(p => p.Name == "malloc").Count);
        Assert.Throws<ReportException>(() => Run(path, r => r with { SinceNs = 10, UntilNs = 5 }));
    }

    [Fact]
    public void SeveralInputsAndGlobsAreMerged()
    {
        using var dir = new TempDir();
        SyntheticTrace a = Spec(seed: 1), b = Spec(seed: 2);
        a.Write(dir.File("run-a.parquet"));
        b.Write(dir.File("run-b.parquet"));
        long[] d = Truth.Durations(a.Hits(), 0).Concat(Truth.Durations(b.Hits(), 0)).Order().ToArray();

        foreach (string[] inputs in new[] { new[] { dir.File("run-a.parquet"), dir.File("run-b.parquet") }, new[] { dir.File("run-*.parquet") } })
        {
            Report report = ReportEngine.Run(new ReportRequest { Inputs = inputs });
            Assert.Equal(2, report.Inputs.Count);
            ProbeSummary work = report.Probes.Single(p => p.Name == "work");
            Assert.Equal(40_000, work.Count);
            Assert.Equal(d.Length, work.Latency!.Count);
            Assert.Equal(d.Sum(), work.Latency.Total);
            Truth.Near(Truth.Percentile(d, 99), work.Latency.P99, report.PercentileError);
        }
        var e = Assert.Throws<ReportException>(() => ReportEngine.Run(new ReportRequest { Inputs = [dir.File("nothing-*.parquet")] }));
        Assert.Contains("matches no file", e.Message);
    }

    [Fact]
    public void TheNumberOfWorkersDoesNotChangeTheReport()
    {
        using var dir = new TempDir();
        string path = dir.File("t.parquet");
        Spec(rowGroupSize: 1000).Write(path);
        string Render(int workers)
        {
            int saved = TraceAggregator.Workers;
            TraceAggregator.Workers = workers;
            try
            {
                var output = new StringWriter();
                Report report = Run(path, r => r with { GroupBy = GroupBy.Process, Histograms = true, Filter = "tid != 1001" });
                new Uprec.Reporting.Rendering.JsonRenderer().Render(report, output);
                return output.ToString();
            }
            finally
            {
                TraceAggregator.Workers = saved;
            }
        }
        string one = Render(1);
        Assert.Equal(one, Render(3));
        Assert.Equal(one, Render(8));
    }
}
