using System.CommandLine;

namespace Uprec.Cli;

// Placeholder until this verb's owner replaces the file.
public static class ReportCommand
{
    public static Command Create()
    {
        var command = new Command("report", "(not yet implemented)");
        command.SetAction(_ => CliErrors.Guard(() => throw new UsageException("'report' is not implemented yet")));
        return command;
    }
}
