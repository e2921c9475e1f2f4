using System.CommandLine;

namespace Uprec.Cli;

/// <summary>
/// Entry point: one file per verb, each exposing <c>static Command Create()</c>. Verbs are thin:
/// they parse options into one request record, call one engine method and render its result.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("uprec: record and report user-space dynamic probes (no root needed)")
        {
            RecordCommand.Create(),
            ReportCommand.Create(),
            DiffCommand.Create(),
            ScriptCommand.Create(),
            ListCommand.Create(),
        };
        return CliErrors.Run(() =>
        {
            ParseResult parsed = root.Parse(args);
            if (parsed.Errors.Count > 0)
            {
                // System.CommandLine's own messages, folded into our one-line error contract: the most
                // specific first (an unknown word says more than "no command").
                var error = parsed.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal))
                    ?? parsed.Errors[0];
                if (parsed.CommandResult.Command == root && error == parsed.Errors[0] && parsed.Errors.Count == 1
                    && parsed.Tokens.Count == 0)
                    throw new UsageException("no command given: use record, report, diff, script or list (see 'uprec --help')");
                throw new UsageException(error.Message + (parsed.CommandResult.Command == root ? " (see 'uprec --help')" : ""));
            }
            return parsed.Invoke();
        });
    }
}
