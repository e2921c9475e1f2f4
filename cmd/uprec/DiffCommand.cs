using System.CommandLine;
using Uprec.Reporting.Diff;

namespace Uprec.Cli;

/// <summary><c>uprec diff BASE NEW</c>: the CI gate. Exit 1 when a --fail-on rule trips, 0 otherwise, 2 on bad input.</summary>
public static class DiffCommand
{
    private static readonly Argument<string> BaseArgument = new("BASE") { Description = "The baseline trace" };
    private static readonly Argument<string> NewArgument = new("NEW") { Description = "The trace to judge" };

    private static readonly Option<string[]> FailOnOption = new("--fail-on")
    {
        Description = "Rule [PROBE:]METRIC OP THRESHOLD, e.g. 'count > 5%', 'p99 > 10%', 'mean > 200us' (repeatable)",
    };

    private static readonly Option<string> FormatOption = new("--format")
    {
        Description = "table (default), json or markdown",
        DefaultValueFactory = _ => "table",
    };

    private static readonly Option<double> AlphaOption = new("--alpha")
    {
        Description = "Significance level latency rules need (one-sided Mann-Whitney U); default 0.01",
        DefaultValueFactory = _ => 0.01,
    };

    public static Command Create()
    {
        var command = new Command("diff",
            """
            Compare two traces per probe: call counts (exact) and latency percentiles, absolute and relative.
            A rule's left side is the change from BASE to NEW. Count rules compare exactly; a latency rule
            trips only if the change is also significant (one-sided Mann-Whitney U over the latency
            histograms, p < --alpha), so noise on a busy CI machine does not fail the build.

            Examples:
              uprec diff base.parquet new.parquet
              uprec diff base.parquet new.parquet --fail-on 'count > 5%' --fail-on 'p99 > 10%'
              uprec diff base.parquet new.parquet --fail-on 'work:mean > 200us' --format markdown >> $GITHUB_STEP_SUMMARY
            """)
        {
            BaseArgument, NewArgument, FailOnOption, FormatOption, AlphaOption,
        };
        command.SetAction(parsed => CliErrors.Guard(() =>
        {
            double alpha = parsed.GetValue(AlphaOption);
            if (alpha is <= 0 or >= 1)
            {
                throw new UsageException($"--alpha must be between 0 and 1, not {alpha}");
            }
            IDiffRenderer renderer = DiffRenderers.Create(parsed.GetValue(FormatOption)!);
            DiffResult result = DiffEngine.Run(new DiffRequest
            {
                Base = parsed.GetValue(BaseArgument)!,
                New = parsed.GetValue(NewArgument)!,
                Rules = parsed.GetValue(FailOnOption) ?? [],
                Alpha = alpha,
            });
            renderer.Render(result, Console.Out);
            return result.Regression ? ExitCodes.Regression : ExitCodes.Ok;
        }));
        return command;
    }
}
