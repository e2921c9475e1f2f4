using System.CommandLine;
using Uprec.Reporting;
using Uprec.Reporting.Rendering;

namespace Uprec.Cli;

/// <summary><c>uprec report</c>: options -> one <see cref="ReportRequest"/> -> <see cref="ReportEngine.Run"/> -> a renderer.</summary>
public static class ReportCommand
{
    private static readonly Option<string[]> InputOption = new("--input", "-i")
    {
        Description = "Trace file or glob (repeatable; all are merged). Default: uprec.parquet",
        AllowMultipleArgumentsPerToken = false,
    };

    private static readonly Option<string> FormatOption = new("--format")
    {
        Description = "table (default), json, csv or markdown",
        DefaultValueFactory = _ => "table",
    };

    private static readonly Option<bool> PerTaskOption = new("--per-task") { Description = "Group by task (pid, tid, comm): the default second table" };
    private static readonly Option<bool> PerProcessOption = new("--per-process") { Description = "Group by process (pid)" };
    private static readonly Option<bool> PerCommOption = new("--per-comm") { Description = "Group by comm" };

    private static readonly Option<string> SortOption = new("--sort")
    {
        Description = $"Sort key: {SortKeys.Names} (default count)",
        DefaultValueFactory = _ => "count",
    };

    private static readonly Option<bool> HistOption = new("--hist") { Description = "Print a log2 latency histogram per return probe" };
    private static readonly Option<string?> FilterOption = new("--filter") { Description = "Keep rows matching EXPR, e.g. 'comm ~ \"worker*\" && duration_ns > 1000'" };
    private static readonly Option<string?> SinceOption = new("--since") { Description = "Keep rows from this offset after the recording started (500ms, 2s, ...)" };
    private static readonly Option<string?> UntilOption = new("--until") { Description = "Keep rows before this offset after the recording started" };
    private static readonly Option<bool> SqlOption = new("--sql") { Description = "Print DuckDB SQL computing the same tables instead of the report" };

    public static Command Create()
    {
        var command = new Command("report",
            """
            Summarise trace files: per probe the call count, lost samples and, for %return probes,
            latency (min, mean, p50, p90, p99, p99.9, max, total); then the same per task.

            Examples:
              uprec report                              uprec.parquet as a table
              uprec report --format json                machine-readable
              uprec report --per-process --sort p99     group by process, slowest tail first
              uprec report -i 'runs/*.parquet' --hist   merge traces, print histograms
              uprec report --filter 'tid == 4242' --since 1s --until 2s
              uprec report --sql | duckdb               the same aggregation in DuckDB
            """)
        {
            InputOption, FormatOption, PerTaskOption, PerProcessOption, PerCommOption, SortOption, HistOption,
            FilterOption, SinceOption, UntilOption, SqlOption,
        };
        command.SetAction(parsed => CliErrors.Guard(() =>
        {
            int groupings = (parsed.GetValue(PerTaskOption) ? 1 : 0) + (parsed.GetValue(PerProcessOption) ? 1 : 0) + (parsed.GetValue(PerCommOption) ? 1 : 0);
            if (groupings > 1)
            {
                throw new UsageException("choose one of --per-task, --per-process, --per-comm");
            }
            string[] inputs = parsed.GetValue(InputOption) is { Length: > 0 } given ? given : ["uprec.parquet"];
            using ReportProgressWriter? progress = parsed.GetValue(SqlOption) ? null : ReportProgressWriter.ForConsole();
            var request = new ReportRequest
            {
                Inputs = inputs,
                GroupBy = parsed.GetValue(PerProcessOption) ? GroupBy.Process
                    : parsed.GetValue(PerCommOption) ? GroupBy.Comm
                    : parsed.GetValue(PerTaskOption) ? GroupBy.Task
                    : null,
                Sort = SortKeys.Parse(parsed.GetValue(SortOption)!),
                Filter = parsed.GetValue(FilterOption),
                SinceNs = parsed.GetValue(SinceOption) is string since ? DurationText.Parse(since, "--since") : null,
                UntilNs = parsed.GetValue(UntilOption) is string until ? DurationText.Parse(until, "--until") : null,
                Histograms = parsed.GetValue(HistOption),
                Progress = progress,
            };
            if (parsed.GetValue(SqlOption))
            {
                Console.Out.Write(ReportSql.Build(request));
                return ExitCodes.Ok;
            }
            IReportRenderer renderer = ReportRenderers.Create(parsed.GetValue(FormatOption)!);
            Report report = ReportEngine.Run(request);
            progress?.Dispose();
            renderer.Render(report, Console.Out);
            return ExitCodes.Ok;
        }));
        return command;
    }
}
