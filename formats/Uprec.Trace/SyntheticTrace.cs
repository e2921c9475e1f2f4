namespace Uprec.Trace;

/// <summary>A latency distribution for synthetic calls, in nanoseconds.</summary>
public abstract record LatencyModel
{
    public abstract long Sample(Random rng);

    /// <summary>Every call takes exactly <paramref name="Ns"/>.</summary>
    public sealed record Constant(long Ns) : LatencyModel
    {
        public override long Sample(Random rng) => Ns;
    }

    /// <summary>Uniform integers in [Low, High].</summary>
    public sealed record Uniform(long Low, long High) : LatencyModel
    {
        public override long Sample(Random rng) => rng.NextInt64(Low, High + 1);
    }

    /// <summary>Log-normal with the given median and sigma (of the underlying normal); the usual shape of call latency.</summary>
    public sealed record LogNormal(double MedianNs, double Sigma) : LatencyModel
    {
        public override long Sample(Random rng)
        {
            // Box-Muller; 1 - NextDouble() avoids log(0).
            double z = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            return Math.Max(1, (long)Math.Round(MedianNs * Math.Exp(Sigma * z)));
        }
    }
}

/// <summary>One probe of a synthetic trace: calls spread over all tasks, with latency when it is a return probe.</summary>
public sealed record SyntheticProbe(string Name, long Calls, LatencyModel? Latency = null)
{
    public bool IsReturn => Latency is not null;
}

/// <summary>
/// Deterministic synthetic traces for tests and benchmarks: the same spec and seed give the same hits.
/// Calls are laid out on one global timeline (rows are in time order): each call picks a task and a
/// probe at random (weighted by the probes' call counts), writes an entry row and, for return probes,
/// a return row carrying its sampled duration. <see cref="DropEvery"/> simulates lost samples: every Nth
/// call of a probe has no rows but still counts in the exact counter, and is reported as lost.
/// </summary>
public sealed record SyntheticTrace
{
    public required IReadOnlyList<SyntheticProbe> Probes { get; init; }
    public int Processes { get; init; } = 1;
    public int ThreadsPerProcess { get; init; } = 4;
    public int Seed { get; init; } = 1;
    public long StartTimeNs { get; init; } = 1_000_000_000;
    /// <summary>Mean gap between calls (ns); the timeline advances by gap + duration.</summary>
    public long MeanGapNs { get; init; } = 100;
    /// <summary>0 keeps every call; N > 0 drops the rows of every Nth call of each probe (counted as lost).</summary>
    public int DropEvery { get; init; }
    public int RowGroupSize { get; init; } = 1 << 20;
    /// <summary>Extra probes declared in the metadata but never installed (no rows, count 0).</summary>
    public IReadOnlyList<string> NeverInstalled { get; init; } = [];

    public IReadOnlyList<ProbeMeta> ProbeMetas()
    {
        var metas = new List<ProbeMeta>();
        for (int i = 0; i < Probes.Count; i++)
        {
            SyntheticProbe p = Probes[i];
            long lost = DropEvery > 0 ? p.Calls / DropEvery : 0;
            metas.Add(new ProbeMeta
            {
                Id = i, Name = p.Name, Spec = $"./synthetic:{p.Name}{(p.IsReturn ? "%return" : "")}", IsReturn = p.IsReturn,
                Installed = true, HitPath = "inprocess", Count = p.Calls, Lost = lost, Symbol = p.Name, Binary = "./synthetic",
            });
        }
        foreach (string name in NeverInstalled)
        {
            metas.Add(new ProbeMeta { Id = metas.Count, Name = name, Spec = $"libnope:{name}", Installed = false, HitPath = "none", Count = 0 });
        }
        return metas;
    }

    public static string Comm(int process, int thread) => thread == 0 ? $"proc{process}" : $"proc{process}-w{thread}";
    public static int Pid(int process) => 1000 + process * 100;
    public static int Tid(int process, int thread) => Pid(process) + thread;

    /// <summary>The hits in order. Enumerating twice yields the same sequence.</summary>
    public IEnumerable<HitRecord> Hits()
    {
        var rng = new Random(Seed);
        long remainingTotal = Probes.Sum(p => p.Calls);
        long[] remaining = Probes.Select(p => p.Calls).ToArray();
        long[] seen = new long[Probes.Count];
        int tasks = Processes * ThreadsPerProcess;
        string[] comms = new string[tasks];
        for (int t = 0; t < tasks; t++)
        {
            comms[t] = Comm(t / ThreadsPerProcess, t % ThreadsPerProcess);
        }
        long time = StartTimeNs;
        while (remainingTotal > 0)
        {
            // Weighted by what is left, so each probe gets exactly its Calls.
            long pick = rng.NextInt64(remainingTotal);
            int probe = 0;
            while (pick >= remaining[probe])
            {
                pick -= remaining[probe];
                probe++;
            }
            remaining[probe]--;
            remainingTotal--;
            long call = ++seen[probe];
            int task = rng.Next(tasks);
            int process = task / ThreadsPerProcess;
            int thread = task % ThreadsPerProcess;
            time += 1 + rng.NextInt64(2 * MeanGapNs);
            SyntheticProbe p = Probes[probe];
            long duration = p.Latency?.Sample(rng) ?? 0;
            if (DropEvery > 0 && call % DropEvery == 0)
            {
                time += duration;
                continue;
            }
            yield return new HitRecord
            {
                TimeNs = time, Pid = Pid(process), Tid = Tid(process, thread), ProbeId = probe, Kind = HitKind.Entry,
                DurationNs = -1, Comm = comms[task],
            };
            if (p.IsReturn)
            {
                time += duration;
                yield return new HitRecord
                {
                    TimeNs = time, Pid = Pid(process), Tid = Tid(process, thread), ProbeId = probe, Kind = HitKind.Return,
                    DurationNs = duration, Comm = comms[task],
                };
            }
        }
    }

    public TraceMetadata Metadata() => new()
    {
        CommandLine = ["uprec", "record", "(synthetic)", $"seed={Seed}"],
        Probes = ProbeMetas(),
        Tasks = Enumerable.Range(0, Processes * ThreadsPerProcess).Select(t => new TaskMeta
        {
            Pid = Pid(t / ThreadsPerProcess), Tid = Tid(t / ThreadsPerProcess, t % ThreadsPerProcess),
            Comm = Comm(t / ThreadsPerProcess, t % ThreadsPerProcess), NsPid = [Tid(t / ThreadsPerProcess, t % ThreadsPerProcess)],
        }).ToList(),
        Lost = ProbeMetas().Sum(p => p.Lost),
        StartTimeNs = StartTimeNs,
        Outcome = "exit 0",
    };

    /// <summary>Writes the trace to <paramref name="path"/> and returns the number of rows.</summary>
    public long Write(string path)
    {
        using var writer = new TraceWriter(path, new TraceWriterOptions { RowGroupSize = RowGroupSize, Probes = ProbeMetas() });
        long last = StartTimeNs;
        foreach (HitRecord hit in Hits())
        {
            writer.Append(hit);
            last = hit.TimeNs;
        }
        writer.Complete(Metadata() with { EndTimeNs = last + 1 });
        return writer.RowsWritten;
    }
}
