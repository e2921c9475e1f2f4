using System.CommandLine;
using Uprec.Symbols;

namespace Uprec.Cli;

/// <summary><c>uprec list BINARY [GLOB]</c>: the functions a probe can name, with the file offsets probes are keyed by.</summary>
public static class ListCommand
{
    private static readonly Argument<string> BinaryArgument = new("BINARY")
    {
        Description = "An executable or shared library: a path, a program on PATH, or a library short name (libc, libpthread, libm.so.6)",
    };

    private static readonly Argument<string?> GlobArgument = new("GLOB")
    {
        Description = "Only functions whose name matches this glob (*, ?, [a-z]); quote it so the shell does not expand it",
        Arity = ArgumentArity.ZeroOrOne,
    };

    private static readonly Option<string> FormatOption = new("--format")
    {
        Description = "Output format: table (default) or json",
        DefaultValueFactory = _ => "table",
    };

    public static Command Create()
    {
        FormatOption.AcceptOnlyFromAmong("table", "json");
        var command = new Command("list",
            """
            List the probe-able functions of a binary: file offset, size, binding and name, sorted by offset.
            The offset is what BINARY:0xOFFSET probes take; SYMBOL+OFF must stay below the size.

            Examples:
              uprec list ./server                 every function of ./server
              uprec list ./server 'handle_*'      only names matching the glob
              uprec list libc 'malloc*'           a library by short name
              uprec list ./server --format json   machine-readable
            """)
        {
            BinaryArgument,
            GlobArgument,
            FormatOption,
        };
        command.SetAction(parsed => CliErrors.Guard(() =>
        {
            var request = new ListRequest(
                parsed.GetValue(BinaryArgument)!,
                parsed.GetValue(GlobArgument),
                parsed.GetValue(FormatOption) == "json" ? ListFormat.Json : ListFormat.Table);
            FunctionList.Run(request, Console.Out);
            return ExitCodes.Ok;
        }));
        return command;
    }
}
