using System.CommandLine;

namespace Uprec.Cli;

// Placeholder until this verb's owner replaces the file.
public static class ListCommand
{
    public static Command Create()
    {
        var command = new Command("list", "(not yet implemented)");
        command.SetAction(_ => CliErrors.Guard(() => throw new UsageException("'list' is not implemented yet")));
        return command;
    }
}
