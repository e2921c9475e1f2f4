using System.CommandLine;

namespace Uprec.Cli;

// Placeholder until this verb's owner replaces the file.
public static class RecordCommand
{
    public static Command Create()
    {
        var command = new Command("record", "(not yet implemented)");
        command.SetAction(_ => CliErrors.Guard(() => throw new UsageException("'record' is not implemented yet")));
        return command;
    }
}
