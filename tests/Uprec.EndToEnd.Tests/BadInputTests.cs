namespace Uprec.EndToEnd.Tests;

/// <summary>
/// Mistakes a user can make: each gets one line `uprec: error: ...` on stderr naming what was
/// wrong, exit code 2 and no stack trace; a refused recording never starts the program.
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed class BadInputTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    private static void AssertOneLineError(ProcessResult result, string mustMention)
    {
        Assert.True(result.ExitCode == 2, $"expected exit code 2: {result}");
        string[] lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected exactly one line on stderr: {result}");
        Assert.StartsWith("uprec: error: ", lines[0]);
        Assert.DoesNotContain("   at ", result.Stderr);
        Assert.Contains(mustMention, lines[0]);
    }

    [Fact]
    public void Attaching_to_a_process_that_is_not_yours_or_not_there_is_refused()
    {
        string binary = programs.Path("firstinsn");
        // .ci/run runs this suite as root and again as an unprivileged user: as the user, pid 1 (root's
        // init) is another user's process; as root every process is ours, so a missing pid is checked.
        bool root = Environment.UserName == "root";
        string pid = root ? "999999999" : "1";
        ProcessResult r = Uprec.Run(["record", "-p", pid, "--duration", "1", "-o", _dir.File("t.parquet"), "-e", $"{binary}:fi_push"]);
        AssertOneLineError(r, root ? "no process 999999999" : "belongs to uid 0");
    }

    private ProcessResult Record(params string[] specsThenProgram)
    {
        int dash = Array.IndexOf(specsThenProgram, "--");
        List<string> args = ["record", "-o", _dir.File("t.parquet")];
        foreach (string spec in specsThenProgram[..dash])
        {
            args.AddRange(["-e", spec]);
        }
        args.AddRange(specsThenProgram[dash..]);
        return Uprec.Run(args);
    }

    [Fact]
    public void Missing_program()
    {
        string program = _dir.File("no-such-program");
        ProcessResult r = Record($"{programs.Path("firstinsn")}:fi_push", "--", program);
        AssertOneLineError(r, program);
    }

    [Fact]
    public void Missing_binary_in_a_probe()
    {
        string missing = _dir.File("no-such-binary");
        ProcessResult r = Record($"{missing}:main", "--", programs.Path("firstinsn"));
        AssertOneLineError(r, missing);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void Unknown_symbol_suggests_the_close_name()
    {
        string binary = programs.Path("firstinsn");
        ProcessResult r = Record($"{binary}:fi_pushh", "--", binary);
        AssertOneLineError(r, "fi_pushh");
        Assert.Contains("fi_push", r.Stderr.Replace("fi_pushh", ""));
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void Non_elf_file_as_binary()
    {
        string text = _dir.File("not-elf.txt");
        File.WriteAllText(text, "this is not an ELF file\n");
        ProcessResult r = Record($"{text}:main", "--", programs.Path("firstinsn"));
        AssertOneLineError(r, text);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void Unwritable_output_path()
    {
        const string output = "/proc/nonexistent/x.parquet";
        string binary = programs.Path("firstinsn");
        ProcessResult r = Uprec.Run(["record", "-o", output, "-e", $"{binary}:fi_push", "--", binary]);
        AssertOneLineError(r, output);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void Corrupt_trace_given_to_report()
    {
        string corrupt = _dir.File("corrupt.parquet");
        var bytes = new byte[4096];
        new Random(42).NextBytes(bytes);
        File.WriteAllBytes(corrupt, bytes);
        AssertOneLineError(Uprec.Run(["report", "-i", corrupt, "--format", "json"]), corrupt);
    }

    [Fact]
    public void Empty_file_given_to_report()
    {
        string empty = _dir.File("empty.parquet");
        File.WriteAllBytes(empty, []);
        AssertOneLineError(Uprec.Run(["report", "-i", empty, "--format", "json"]), empty);
    }

    [Fact]
    public void Missing_trace_given_to_report()
    {
        string missing = _dir.File("missing.parquet");
        AssertOneLineError(Uprec.Run(["report", "-i", missing]), missing);
    }

    [Fact]
    public void Unknown_option_to_record()
    {
        string binary = programs.Path("firstinsn");
        ProcessResult r = Uprec.Run(["record", "-e", $"{binary}:fi_push", "--no-such-option", "-o", _dir.File("t.parquet"), "--", binary]);
        AssertOneLineError(r, "--no-such-option");
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void Unknown_option_to_report()
    {
        AssertOneLineError(Uprec.Run(["report", "--no-such-option"]), "--no-such-option");
    }

    public void Dispose() => _dir.Dispose();
}
