namespace Uprec.EndToEnd.Tests;

/// <summary>The forms of a probe spec, each checked against the program's own counts.</summary>
[Collection(EndToEndCollection.Name)]
public sealed class ProbeSpecTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void Several_probes_on_one_address_each_count_every_hit(Linkage linkage)
    {
        string binary = programs.Path("firstinsn", linkage);

        Recording r = Uprec.Record(_dir, [$"first={binary}:fi_push", $"second={binary}:fi_push", $"{binary}:fi_push"], binary);

        long calls = r.Truth.Count("fi_push");
        Assert.Equal(calls, r.Report.Count("first"));
        Assert.Equal(calls, r.Report.Count("second"));
        Assert.Equal(calls, r.Report.Count("fi_push"));
    }

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void A_glob_matches_exactly_the_functions_it_names(Linkage linkage)
    {
        string binary = programs.Path("globs", linkage);

        Recording r = Uprec.Record(_dir, [$"{binary}:parse_*"], binary);

        Assert.Equal(["parse_int", "parse_line", "parse_word"], r.Report.Probes.Select(p => p.Name).Order(StringComparer.Ordinal));
        foreach (string function in new[] { "parse_int", "parse_word", "parse_line" })
        {
            Assert.Equal(r.Truth.Count(function), r.Report.Count(function));
        }
    }

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void Symbol_plus_offset_and_file_offset_name_the_same_instruction(Linkage linkage)
    {
        string binary = programs.Path("firstinsn", linkage);
        long delta = GroundTruth.Parse(Processes.Run(binary, []).Stdout).OffsetOf("fi_offset");
        long loopOffset = Binutils.FileOffsetOf(binary, "fi_offset", delta);
        long entryOffset = Binutils.FileOffsetOf(binary, "fi_push");

        Recording r = Uprec.Record(_dir,
            [$"by_symbol={binary}:fi_offset+{delta}", $"by_offset={binary}:0x{loopOffset:x}", $"entry_by_offset={binary}:0x{entryOffset:x}"],
            binary);

        long iterations = r.Truth.Count($"fi_offset+{delta}");
        Assert.Equal(iterations, r.Report.Count("by_symbol"));
        Assert.Equal(iterations, r.Report.Count("by_offset"));
        Assert.Equal(r.Truth.Count("fi_push"), r.Report.Count("entry_by_offset"));
    }

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void A_short_library_name_resolves_against_what_the_target_maps(Linkage linkage)
    {
        string binary = programs.Path("libcalls", linkage);

        Recording r = Uprec.Record(_dir, ["libc:getppid", "libc:umask"], binary);

        Assert.Equal(r.Truth.Count("getppid"), r.Report.Count("getppid"));
        Assert.Equal(r.Truth.Count("umask"), r.Report.Count("umask"));
    }

    public void Dispose() => _dir.Dispose();
}
