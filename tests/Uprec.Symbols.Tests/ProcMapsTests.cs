namespace Uprec.Symbols.Tests;

public sealed class ProcMapsTests
{
    [Fact]
    public void File_backed_line_keeps_offset_device_and_inode()
    {
        Assert.True(ProcMaps.TryParseLine("7f3a1c028000-7f3a1c1bd000 r-xp 00028000 fe:01 1835029                    /usr/lib/x86_64-linux-gnu/libc.so.6", out MapEntry e));
        Assert.Equal(new MapEntry(0x7f3a1c028000, 0x7f3a1c1bd000, "r-xp", 0x28000, 0xfe, 0x01, 1835029, "/usr/lib/x86_64-linux-gnu/libc.so.6"), e);
        Assert.True(e.Executable);
        Assert.True(e.IsFileBacked);
        Assert.False(e.Deleted);
        Assert.False(e.IsPseudo);
    }

    [Theory]
    [InlineData("55d0c0a00000-55d0c0a01000 r--p 00000000 08:02 42 /home/a b/my prog", "/home/a b/my prog", false)]
    [InlineData("55d0c0a00000-55d0c0a01000 r-xp 00001000 08:02 42 /tmp/prog (deleted)", "/tmp/prog", true)]
    [InlineData("55d0c0a00000-55d0c0a01000 r-xp 00001000 08:02 42 /tmp/my prog (deleted)", "/tmp/my prog", true)]
    [InlineData("55d0c0a00000-55d0c0a01000 r-xp 00001000 08:02 42    /tmp/x  ", "/tmp/x  ", false)]
    public void Paths_with_spaces_and_deleted_marker(string line, string path, bool deleted)
    {
        Assert.True(ProcMaps.TryParseLine(line, out MapEntry e));
        Assert.Equal(path, e.Path);
        Assert.Equal(deleted, e.Deleted);
        Assert.Equal(42UL, e.Inode);
    }

    [Fact]
    public void Anonymous_and_pseudo_mappings()
    {
        Assert.True(ProcMaps.TryParseLine("7f3a1c200000-7f3a1c20d000 rw-p 00000000 00:00 0 ", out MapEntry anon));
        Assert.Null(anon.Path);
        Assert.False(anon.IsFileBacked);
        Assert.False(anon.Executable);

        Assert.True(ProcMaps.TryParseLine("7ffd5b7e4000-7ffd5b7e6000 r-xp 00000000 00:00 0                          [vdso]", out MapEntry vdso));
        Assert.Equal("[vdso]", vdso.Path);
        Assert.True(vdso.IsPseudo);
        Assert.True(vdso.Executable);
        Assert.False(vdso.IsFileBacked);

        Assert.True(ProcMaps.TryParseLine("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]", out MapEntry vsyscall));
        Assert.Equal(0xffffffffff601000UL, vsyscall.End);
    }

    [Theory]
    [InlineData("")]
    [InlineData("garbage")]
    [InlineData("7f00-7e00 r-xp 00000000 00:00 0")] // end before start
    [InlineData("7f00-7f10 r-x 00000000 00:00 0")] // perms not 4 chars
    [InlineData("7f00-7f10 r-zp 00000000 00:00 0")]
    [InlineData("7f00-7f10 r-xp 0000zz00 00:00 0")]
    [InlineData("7f00-7f10 r-xp 00000000 0000 0")]
    [InlineData("7f00-7f10 r-xp 00000000 00:00 -1")]
    [InlineData("7f00 r-xp 00000000 00:00 0")]
    [InlineData("7f00-7f10 r-xp 00000000 00:00")]
    [InlineData("-7f10 r-xp 00000000 00:00 0")]
    [InlineData("10000000000000000-10000000000000001 r-xp 00000000 00:00 0")] // overflows 64 bits
    public void Malformed_lines_are_rejected(string line)
    {
        Assert.False(ProcMaps.TryParseLine(line, out _));
    }

    [Fact]
    public void Parse_skips_malformed_lines_and_keeps_order()
    {
        string text = """
            5555555540000-555555556000 bogus
            555555554000-555555555000 r--p 00000000 08:01 100 /bin/prog
            555555555000-555555556000 r-xp 00001000 08:01 100 /bin/prog
            not a line

            7ffff7dd3000-7ffff7dfc000 r-xp 00000000 08:01 200 /lib/ld.so
            """;
        IReadOnlyList<MapEntry> maps = ProcMaps.Parse(text);
        Assert.Equal([0x555555554000UL, 0x555555555000UL, 0x7ffff7dd3000UL], maps.Select(m => m.Start));
    }

    private static readonly IReadOnlyList<MapEntry> Sample = ProcMaps.Parse("""
        555555554000-555555555000 r--p 00000000 08:01 100 /bin/prog
        555555555000-555555557000 r-xp 00001000 08:01 100 /bin/prog
        555555557000-555555558000 r--p 00003000 08:01 100 /bin/prog
        7ffff7c00000-7ffff7c28000 r--p 00000000 08:01 200 /lib/libc.so.6
        7ffff7c28000-7ffff7dbd000 r-xp 00028000 08:01 200 /lib/libc.so.6
        7fffe0000000-7fffe0001000 r-xp 00000000 08:01 300 /tmp/old (deleted)
        """);

    [Theory]
    [InlineData("/bin/prog", 0x1139L, 0x555555555139UL)]
    [InlineData("/bin/prog", 0x0L, 0x555555554000UL)]
    [InlineData("/bin/prog", 0x2fffL, 0x555555556fffUL)]
    [InlineData("/bin/prog", 0x3000L, 0x555555557000UL)]
    [InlineData("/lib/libc.so.6", 0x98930L, 0x7ffff7c98930UL)]
    [InlineData("/tmp/old", 0x10L, 0x7fffe0000010UL)]
    public void File_offset_to_address_by_path(string path, long offset, ulong address)
    {
        Assert.Equal(address, ProcMaps.FileOffsetToAddress(Sample, path, offset));
    }

    [Theory]
    [InlineData("/bin/prog", 0x4000L)] // past the last mapping of the file
    [InlineData("/bin/prog", -1L)]
    [InlineData("/bin/other", 0x1000L)]
    [InlineData("/lib/libc.so.6", 0x1bd000L)]
    public void Unmapped_offsets_give_null(string path, long offset)
    {
        Assert.Null(ProcMaps.FileOffsetToAddress(Sample, path, offset));
    }

    [Fact]
    public void File_offset_to_address_by_device_and_inode_ignores_paths()
    {
        Assert.Equal(0x7ffff7c98930UL, ProcMaps.FileOffsetToAddress(Sample, 8, 1, 200, 0x98930));
        Assert.Null(ProcMaps.FileOffsetToAddress(Sample, 8, 2, 200, 0x98930)); // another device
        Assert.Equal(0x7fffe0000010UL, ProcMaps.FileOffsetToAddress(Sample, 8, 1, 300, 0x10)); // deleted file still found
    }

    [Fact]
    public void Executable_mapping_wins_when_two_cover_the_offset()
    {
        // A file mapped twice (e.g. an old r-- mapping and the code mapping) covering the same offset.
        var maps = ProcMaps.Parse("""
            7f0000000000-7f0000002000 r--p 00000000 08:01 9 /lib/x.so
            7f0000100000-7f0000102000 r-xp 00000000 08:01 9 /lib/x.so
            """);
        Assert.Equal(0x7f0000100010UL, ProcMaps.FileOffsetToAddress(maps, "/lib/x.so", 0x10));
    }

    [Fact]
    public void Parses_this_process_maps_and_finds_its_own_runtime()
    {
        IReadOnlyList<MapEntry> maps = ProcMaps.Parse(File.ReadAllText("/proc/self/maps"));
        int lines = File.ReadAllLines("/proc/self/maps").Length;
        // Every line the kernel writes is well formed; the snapshot may differ by a few lines between the two reads.
        Assert.InRange(maps.Count, lines - 20, lines + 20);
        Assert.Contains(maps, m => m.Executable && m.Path is not null && m.Path.EndsWith("libcoreclr.so", StringComparison.Ordinal));
        Assert.Contains(maps, m => m.Path == "[stack]");
    }
}
