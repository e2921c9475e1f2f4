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

    private static readonly Option<string[]> FilterOption = new("--filter")
    {
        Description = "Filter for the preceding -e, e.g. 'arg1 < 100 && comm ~ \"worker*\"' (fields: pid tid ppid uid comm exe arg1..arg6, captured names)",
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
    };

    private static readonly Option<string?> Pids = new("--pid", "-p")
    {
        Description = "Attach to running processes instead of starting one: PID[,PID...] (your own processes)",
    };

    private static readonly Option<double?> Duration = new("--duration")
    {
        Description = "Stop recording after this many seconds (then detach; the program keeps running)",
    };

    private static readonly Option<bool> IdleTracer = new("--idle-tracer")
    {
        Description = "Run uprec's tracer at SCHED_IDLE: on a quiet machine each hit stays on one CPU (cheaper); on a busy one the program waits longer",
    };

    private static readonly Option<string> HitPath = new("--hit-path")
    {
        Description = "auto: a jump to an in-process trampoline where the function allows it (no stop per hit), " +
            "else an int3 trap; inprocess: only probes that can go in process are placed; trap: int3 traps only",
        DefaultValueFactory = _ => "auto",
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
              uprec record -p 4242 --duration 10 -e ./server:handle_request
              uprec record -e './prog:parse len=arg2:u32' --filter 'len > 4096' -- ./prog
            """)
        {
            Events, FilterOption, Output, Pids, Duration, HitPath, IdleTracer, Program,
        };
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            RejectOptionsTakenAsProgram(parse);
            return Run(parse.GetValue(Events) ?? [], FiltersByEvent(parse), parse.GetValue(Output)!, parse.GetValue(Program) ?? [],
                ParsePids(parse.GetValue(Pids)), parse.GetValue(Duration), parse.GetValue(IdleTracer), ParseHitPath(parse.GetValue(HitPath)!));
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

    /// <summary>
    /// As in perf, a --filter applies to the -e before it. System.CommandLine collects each option's
    /// values separately, so the pairing is read from the token order.
    /// </summary>
    private static IReadOnlyList<string?> FiltersByEvent(ParseResult parse)
    {
        var filters = new List<string?>();
        var tokens = parse.Tokens;
        for (int i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            if (t.Type == System.CommandLine.Parsing.TokenType.DoubleDash) break;
            if (t.Type != System.CommandLine.Parsing.TokenType.Option) continue;
            if (Events.Name == t.Value || Events.Aliases.Contains(t.Value))
            {
                filters.Add(null);
            }
            else if (FilterOption.Name == t.Value || FilterOption.Aliases.Contains(t.Value))
            {
                string? value = i + 1 < tokens.Count ? tokens[i + 1].Value : null;
                if (filters.Count == 0)
                    throw new UsageException("--filter applies to the -e before it: put it after the probe it filters");
                if (filters[^1] is not null)
                    throw new UsageException($"two --filter options for one probe: combine them with &&, e.g. --filter '{filters[^1]} && {value}'");
                filters[^1] = value;
            }
        }
        return filters;
    }

    private static HitPathMode ParseHitPath(string text) => text switch
    {
        "auto" => HitPathMode.Auto,
        "inprocess" => HitPathMode.InProcess,
        "trap" => HitPathMode.Trap,
        _ => throw new UsageException($"bad --hit-path '{text}': expected auto, inprocess or trap"),
    };

    private static IReadOnlyList<int> ParsePids(string? text)
    {
        if (text is null) return [];
        var pids = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, out int pid) || pid <= 0)
                throw new UsageException($"bad process id '{part}' in -p {text}: expected PID[,PID...], e.g. -p 4242,4243");
            if (!pids.Contains(pid)) pids.Add(pid);
        }
        return pids;
    }

    private static int Run(string[] events, IReadOnlyList<string?> filters, string output, string[] program, IReadOnlyList<int> pids, double? duration, bool idleTracer, HitPathMode hitPath)
    {
        if (events.Length == 0)
            throw new UsageException("no probes: give at least one -e BINARY:SYMBOL, e.g. -e ./prog:main (see 'uprec list BINARY')");
        if (program.Length == 0 && pids.Count == 0)
            throw new UsageException("no program to run: put it after '--', e.g. uprec record -e ./prog:work -- ./prog, or attach with -p PID");
        if (program.Length > 0 && pids.Count > 0)
            throw new UsageException("give either a program after '--' or -p PID, not both");
        if (duration is double d && (d <= 0 || double.IsNaN(d) || d > 1e7))
            throw new UsageException($"bad --duration {d}: expected a positive number of seconds, e.g. --duration 10");
        var request = new RecordRequest
        {
            Probes = events.Select(ProbeSpecParser.Parse).ToList(),
            Filters = filters.Select(f => f is null ? null : Uprec.Filters.Filter.Parse(f)).ToList(),
            Command = program,
            AttachPids = pids,
            IdleTracer = idleTracer,
            HitPath = hitPath,
            Duration = duration is double secs ? TimeSpan.FromSeconds(secs) : null,
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
        foreach (var p in result.Probes.Where(p => p.Installed))
        {
            string path = p.HitPath == "inprocess" ? "in process" : $"trap path{(p.HitPathReason is null ? "" : $" ({p.HitPathReason})")}";
            string lost = p.Lost > 0 ? $"; {p.Lost} of {p.Count} samples dropped (full ring), counts exact" : "";
            Console.Error.WriteLine($"uprec: {p.Name}: {path}{lost}");
        }
        foreach (var same in result.Probes.Where(p => p.Installed).GroupBy(p => p.Name).Where(g => g.Count() > 1))
            Console.Error.WriteLine($"uprec: warning: {same.Count()} probes are named '{same.Key}' and are reported as one; " +
                $"name them apart with NAME=, e.g. -e 'calls={same.First().Spec}'");
        long hits = result.Probes.Sum(p => Math.Max(0, p.Count));
        // Prefixed like every message of uprec's own, so scripts can tell it from the program's stderr.
        Console.Error.WriteLine($"uprec: recorded {hits} hits of {result.Probes.Count(p => p.Installed)} probes into {result.OutputPath} ({result.Rows} rows)");
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
