using System.CommandLine;

namespace Uprec.Cli;

// Placeholder until this verb's owner replaces the file.
public static class ScriptCommand
{
    public static Command Create()
    {
        var command = new Command("script", "(not yet implemented)");
        command.SetAction(_ => CliErrors.Guard(() => throw new UsageException("'script' is not implemented yet")));
        return command;
    }
}
