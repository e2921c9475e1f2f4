using System.CommandLine;
using Uprec.Reporting.Script;

namespace Uprec.Cli;

/// <summary><c>uprec script</c>: every hit, one line each, in time order (like perf script).</summary>
public static class ScriptCommand
{
    private static readonly Option<string[]> InputOption = new("--input", "-i")
    {
        Description = "Trace file or glob (repeatable; merged by time). Default: uprec.parquet",
    };

    private static readonly Option<string> FormatOption = new("--format")
    {
        Description = "text (default) or jsonl (one JSON object per line)",
        DefaultValueFactory = _ => "text",
    };

    private static readonly Option<string?> FilterOption = new("--filter") { Description = "Only rows matching EXPR" };

    public static Command Create()
    {
        var command = new Command("script",
            """
            Print every hit in time order: task, time, probe, entry/return, duration and captured arguments.

            Examples:
              uprec script | less
              uprec script --format jsonl | jq 'select(.duration_ns > 1000000)'
              uprec script --filter 'probe == "work" && kind == "return"'
            """)
        {
            InputOption, FormatOption, FilterOption,
        };
        command.SetAction(parsed => CliErrors.Guard(() =>
        {
            var request = new ScriptRequest
            {
                Inputs = parsed.GetValue(InputOption) is { Length: > 0 } given ? given : ["uprec.parquet"],
                Format = ScriptRequest.ParseFormat(parsed.GetValue(FormatOption)!),
                Filter = parsed.GetValue(FilterOption),
            };
            // A large buffer: script output is often millions of lines piped into another tool.
            var stdout = new StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false), 1 << 16);
            try
            {
                ScriptEngine.Run(request, stdout);
                stdout.Dispose();
            }
            catch (IOException e) when (e.GetType() == typeof(IOException))
            {
                // A plain IOException here is a write to a closed pipe (`uprec script | head`): stop quietly,
                // as perf script does. Missing or unreadable inputs arrive as TraceFormatException instead.
            }
            return ExitCodes.Ok;
        }));
        return command;
    }
}
