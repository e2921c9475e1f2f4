using System.CommandLine;
using System.Runtime.InteropServices;
using Uprec.Probing;
using Uprec.Symbols;

namespace Uprec.Cli;

/// <summary>`uprec record`: options into a <see cref="RecordRequest"/>, one engine call, a summary on stderr.</summary>
public static class RecordCommand
{
    private static readonly Option<string[]> Events = new("--event", "-e")
    {
        Description = "Probe to place: [NAME=]BINARY:SYMBOL[+OFF][%return] or BINARY:0xOFFSET; SYMBOL may be a glob. Repeatable.",
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
    };

    private static readonly Option<string> Output = new("--output", "-o")
    {
        Description = "Trace file to write",
        DefaultValueFactory = _ => "uprec.parquet",
    };

    private static readonly Argument<string[]> Program = new("command")
    {
        Description = "The program to run and its arguments (after --)",
        Arity = ArgumentArity.ZeroOrMore,
    };

    public static Command Create()
    {
        var command = new Command("record", """
            Run a program with probes placed through ptrace and write every hit to a Parquet trace.

            Examples:
              uprec record -e ./server:handle_request -- ./server --port 8080
              uprec record -e 'libc:malloc' -e './prog:parse_*' -o run.parquet -- ./prog input.txt
              uprec record -e 'inner=./prog:work+0x10' -e ./prog:0x1139 -- ./prog
            """)
        {
            Events, Output, Program,
        };
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            RejectOptionsTakenAsProgram(parse);
            return Run(parse.GetValue(Events) ?? [], parse.GetValue(Output)!, parse.GetValue(Program) ?? []);
        }));
        return command;
    }

    /// <summary>
    /// The program's words are whatever does not belong to uprec, so an option uprec does not know
    /// would silently become the program to run. Before '--', a word starting with '-' is an error.
    /// </summary>
    private static void RejectOptionsTakenAsProgram(ParseResult parse)
    {
        var programTokens = parse.GetResult(Program)?.Tokens ?? [];
        foreach (var token in parse.Tokens)
        {
            if (token.Type == System.CommandLine.Parsing.TokenType.DoubleDash) return;
            if (token.Value.StartsWith('-') && token.Value.Length > 1 && programTokens.Any(t => ReferenceEquals(t, token)))
                throw new UsageException($"unknown option '{token.Value}' for record (see 'uprec record --help'; put the program after '--')");
        }
    }

    private static int Run(string[] events, string output, string[] program)
    {
        if (events.Length == 0)
            throw new UsageException("no probes: give at least one -e BINARY:SYMBOL, e.g. -e ./prog:main (see 'uprec list BINARY')");
        if (program.Length == 0)
            throw new UsageException("no program to run: put it after '--', e.g. uprec record -e ./prog:work -- ./prog");
        var request = new RecordRequest
        {
            Probes = events.Select(ProbeSpecParser.Parse).ToList(),
            Command = program,
            OutputPath = output,
            CommandLine = Environment.GetCommandLineArgs().Skip(1).Prepend("uprec").ToList(),
        };

        var stop = new StopControl();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Request(StopReason.Interrupt); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Request(StopReason.Terminate); });
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => { c.Cancel = true; stop.Request(StopReason.Hangup); });

        RecordResult result = Recorder.Run(request, new StderrLog(), stop);

        foreach (var p in result.Probes.Where(p => !p.Installed))
            Console.Error.WriteLine($"uprec: warning: probe '{p.Name}' ({p.Spec}) was never installed: {p.HitPathReason ?? "its binary was not mapped"}");
        long hits = result.Probes.Sum(p => Math.Max(0, p.Count));
        Console.Error.WriteLine($"[ uprec record: {hits} hits of {result.Probes.Count(p => p.Installed)} probes written to {result.OutputPath} ({result.Rows} rows) ]");
        if (result.WorkloadExitCode is int code) return code;
        if (result.WorkloadSignal is int sig) return 128 + sig;
        return ExitCodes.Ok;
    }

    private sealed class StderrLog : IRecordLog
    {
        public void Info(string message) => Console.Error.WriteLine($"uprec: {message}");
        public void Warn(string message) => Console.Error.WriteLine($"uprec: warning: {message}");
    }
}
