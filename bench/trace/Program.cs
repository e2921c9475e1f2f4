using System.Diagnostics;
using Uprec.Trace;

namespace Uprec.Bench.Trace;

/// <summary>
/// bench/trace write [ROWS] [RUNS] [ROW_GROUP_SIZE]: rows/s of TraceWriter alone (hits prepared in memory first, so only
/// the writer is timed); prints every run and the median.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        string verb = args.Length > 0 ? args[0] : "write";
        return verb switch
        {
            "write" => Write(args.Length > 1 ? long.Parse(args[1]) : 10_000_000, args.Length > 2 ? int.Parse(args[2]) : 5,
                args.Length > 3 ? int.Parse(args[3]) : 1 << 20),
            "gen" when args.Length >= 3 => Generate(args[1], long.Parse(args[2])),
            "report" when args.Length >= 2 => ReportBench(args[1..]),
            _ => Usage(),
        };
    }

    private static int Usage()
    {
        Console.Error.WriteLine("usage: TraceBench write [ROWS] [RUNS] [ROW_GROUP_SIZE] | gen PATH CALLS | report PATH [RUNS]");
        return 2;
    }

    /// <summary>A synthetic trace of CALLS calls (half on a %return probe, so rows = 1.5 x CALLS).</summary>
    internal static SyntheticTrace Synthetic(long calls) => new()
    {
        Probes =
        [
            new SyntheticProbe("work", calls / 2, new LatencyModel.LogNormal(2_000, 0.8)),
            new SyntheticProbe("malloc", calls / 4),
            new SyntheticProbe("free", calls - calls / 2 - calls / 4),
        ],
        Processes = 2,
        ThreadsPerProcess = 4,
        Seed = 7,
    };

    private static int Generate(string path, long calls)
    {
        var sw = Stopwatch.StartNew();
        long rows = Synthetic(calls).Write(path);
        Console.WriteLine($"wrote {rows:N0} rows to {path} in {sw.Elapsed.TotalSeconds:F1} s ({new FileInfo(path).Length / 1e6:F1} MB)");
        return 0;
    }

    /// <summary>Times ReportEngine (read + aggregate) over PATH; prints each run, the median and the peak working set.</summary>
    private static int ReportBench(string[] args)
    {
        string path = args[0];
        int runs = args.Length > 1 ? int.Parse(args[1]) : 3;
        var times = new List<double>();
        long rows = 0;
        for (int run = 0; run < runs; run++)
        {
            var sw = Stopwatch.StartNew();
            Uprec.Reporting.Report report = Uprec.Reporting.ReportEngine.Run(new Uprec.Reporting.ReportRequest { Inputs = [path] });
            sw.Stop();
            rows = report.RowsRead;
            times.Add(sw.Elapsed.TotalSeconds);
            Console.WriteLine($"run {run + 1}: {rows:N0} rows in {sw.Elapsed.TotalSeconds:F2} s ({rows / sw.Elapsed.TotalSeconds / 1e6:F1} M rows/s)");
        }
        times.Sort();
        Console.WriteLine($"median: {times[times.Count / 2]:F2} s for {rows:N0} rows, " +
            $"{times[times.Count / 2] * 1e9 / rows:F1} ns/row; peak working set {Process.GetCurrentProcess().PeakWorkingSet64 / 1e6:F0} MB");
        return 0;
    }

    private static int Write(long rows, int runs, int rowGroupSize)
    {
        ProbeMeta[] probes =
        [
            new() { Id = 0, Name = "work", Spec = "./prog:work%return", IsReturn = true },
            new() { Id = 1, Name = "malloc", Spec = "libc:malloc" },
            new() { Id = 2, Name = "free", Spec = "libc:free" },
        ];
        string[] comms = ["prog", "worker-1", "worker-2", "worker-3"];
        // A pool of hits cycled through, so generating them is not part of the measurement.
        var pool = new HitRecord[1 << 16];
        var rng = new Random(42);
        long t = 1_000_000_000;
        for (int i = 0; i < pool.Length; i++)
        {
            t += rng.Next(5, 200);
            int task = rng.Next(comms.Length);
            bool ret = i % 2 == 1;
            pool[i] = new HitRecord
            {
                TimeNs = t,
                Pid = 4242,
                Tid = 4242 + task,
                ProbeId = ret ? 0 : rng.Next(3),
                Kind = ret ? HitKind.Return : HitKind.Entry,
                DurationNs = ret ? rng.Next(50, 5000) : -1,
                Comm = comms[task],
            };
        }
        string path = Path.Combine(Path.GetTempPath(), $"uprec-bench-{Environment.ProcessId}.parquet");
        var rates = new List<double>();
        // CPU time (all threads) per row is less sensitive than wall time to other jobs on a shared machine.
        var cpuRates = new List<double>();
        for (int run = 0; run < runs; run++)
        {
            double completeStart;
            TimeSpan cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            using (var writer = new TraceWriter(path, new TraceWriterOptions { Probes = probes, RowGroupSize = rowGroupSize }))
            {
                for (long i = 0; i < rows; i++)
                {
                    writer.Append(in pool[i & (pool.Length - 1)]);
                }
                completeStart = sw.Elapsed.TotalSeconds;
                writer.Complete(new TraceMetadata { Probes = probes });
            }
            sw.Stop();
            double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;
            cpuRates.Add(rows / cpu);
            double rate = rows / sw.Elapsed.TotalSeconds;
            rates.Add(rate);
            Console.WriteLine($"run {run + 1}: {rows:N0} rows in {sw.Elapsed.TotalSeconds:F3} s = {rate / 1e6:F1} M rows/s, " +
                $"{new FileInfo(path).Length / (double)rows:F2} bytes/row, Complete (last group, footer, fsync, rename) {sw.Elapsed.TotalSeconds - completeStart:F3} s");
        }
        File.Delete(path);
        rates.Sort();
        cpuRates.Sort();
        Console.WriteLine($"median: {rates[rates.Count / 2] / 1e6:F1} M rows/s wall over {runs} runs; " +
            $"CPU time {1e9 / cpuRates[cpuRates.Count / 2]:F1} ns/row (all threads) = {cpuRates[cpuRates.Count / 2] / 1e6:F1} M rows per CPU-second");
        return 0;
    }
}
