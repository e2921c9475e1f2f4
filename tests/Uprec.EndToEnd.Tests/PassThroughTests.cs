namespace Uprec.EndToEnd.Tests;

/// <summary>A recorded program keeps its stdin, stdout, stderr and exit status (testdata/passthru.c).</summary>
[Collection(EndToEndCollection.Name)]
public sealed class PassThroughTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    [Theory]
    [InlineData("0", 0)]
    [InlineData("7", 7)]
    [InlineData("signal:15", 128 + 15)] // killed by SIGTERM
    [InlineData("signal:6", 128 + 6)]   // crashed with SIGABRT: the trace must still be complete
    public void Streams_and_exit_status_pass_through(string how, int expectedExitCode)
    {
        string binary = programs.Path("passthru");
        const string input = "first line\nsecond line\nthird\n";

        Recording r = Uprec.Record(_dir, [$"{binary}:handle_line"], binary, [how], input, expectedExitCode);

        Assert.StartsWith("FIRST LINE\nSECOND LINE\nTHIRD\n", r.Traced.Stdout);
        // uprec's own messages are marked so they can be told apart from the program's.
        string programStderr = string.Concat(r.Traced.Stderr.Split('\n')
            .Where(line => line.Length > 0 && !line.StartsWith("uprec: ", StringComparison.Ordinal))
            .Select(line => line + "\n"));
        Assert.Equal(r.Untraced.Stderr, programStderr);
        Assert.Equal(3, r.Truth.Count("handle_line"));
        Assert.Equal(3, r.Report.Count("handle_line"));
    }

    public void Dispose() => _dir.Dispose();
}
