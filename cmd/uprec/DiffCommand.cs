using System.CommandLine;

namespace Uprec.Cli;

// Placeholder until this verb's owner replaces the file.
public static class DiffCommand
{
    public static Command Create()
    {
        var command = new Command("diff", "(not yet implemented)");
        command.SetAction(_ => CliErrors.Guard(() => throw new UsageException("'diff' is not implemented yet")));
        return command;
    }
}
