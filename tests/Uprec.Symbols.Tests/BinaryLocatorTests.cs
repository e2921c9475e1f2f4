namespace Uprec.Symbols.Tests;

[Collection(SymbolFixturesCollection.Name)]
public sealed class BinaryLocatorTests(SymbolFixtures fx)
{
    [Theory]
    [InlineData("libc", "/usr/lib/x86_64-linux-gnu/libc.so.6", true)]
    [InlineData("libc", "/lib/libc-2.31.so", true)]
    [InlineData("libc", "/usr/lib/libc.so", true)]
    [InlineData("libc", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", false)]
    [InlineData("libc", "/usr/lib/x86_64-linux-gnu/libcap.so.2", false)]
    [InlineData("libpthread", "/lib/x86_64-linux-gnu/libpthread.so.0", true)]
    [InlineData("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6", true)]
    [InlineData("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.61", false)]
    [InlineData("libm", "/lib/x86_64-linux-gnu/libmvec.so.1", false)]
    [InlineData("prog", "/home/u/prog", true)]
    [InlineData("libc", "/home/libc.so.6/prog", false)] // only the file name counts
    [InlineData("", "/lib/libc.so.6", false)]
    public void Short_name_matching(string shortName, string mappedPath, bool matches)
    {
        Assert.Equal(matches, BinaryLocator.MatchesShortName(shortName, mappedPath));
    }

    [Fact]
    public void Short_library_names_have_no_slash_and_are_not_local_files()
    {
        Assert.True(BinaryLocator.IsShortLibraryName("libc"));
        Assert.False(BinaryLocator.IsShortLibraryName("./libc"));
        Assert.False(BinaryLocator.IsShortLibraryName("/lib/libc.so.6"));
        Assert.False(BinaryLocator.IsShortLibraryName(""));
        // A file of that name in the current directory is a path, not a library name.
        string existing = Path.GetFileName(Directory.GetFiles(Environment.CurrentDirectory).First());
        Assert.False(BinaryLocator.IsShortLibraryName(existing));
    }

    [Fact]
    public void ResolveProgram_searches_PATH_like_execvp()
    {
        string bin1 = Directory.CreateDirectory(Path.Combine(fx.Dir, "bin1")).FullName;
        string bin2 = Directory.CreateDirectory(Path.Combine(fx.Dir, "bin2")).FullName;
        // Not executable in bin1: skipped, as execvp skips it. Executable in bin2: found.
        File.WriteAllText(Path.Combine(bin1, "tool"), "x");
        File.Copy(fx.Pie, Path.Combine(bin2, "tool"), overwrite: true);
        File.SetUnixFileMode(Path.Combine(bin1, "tool"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Directory.CreateDirectory(Path.Combine(bin1, "dironly"));

        Assert.Equal(Path.Combine(bin2, "tool"), BinaryLocator.ResolveProgram("tool", $"{bin1}:{bin2}"));
        Assert.Null(BinaryLocator.ResolveProgram("dironly", $"{bin1}:{bin2}"));
        Assert.Null(BinaryLocator.ResolveProgram("nothere", $"{bin1}:{bin2}"));
        Assert.Equal(fx.Pie, BinaryLocator.ResolveProgram(fx.Pie, ""));
        Assert.Null(BinaryLocator.ResolveProgram(Path.Combine(bin1, "tool"), null));
    }

    [Fact]
    public void ResolveProgram_agrees_with_the_shell()
    {
        string expected = Binutils.Run("sh", "-c \"command -v sh\"").Trim();
        Assert.Equal(Path.GetFullPath(expected), BinaryLocator.ResolveProgram("sh"));
    }

    [Fact]
    public void FindLibrary_follows_DT_NEEDED_and_agrees_with_ldd()
    {
        string ldd = Binutils.Run("ldd", fx.Pie);
        string libcPath = ldd.Split('\n').Select(l => l.Trim()).First(l => l.StartsWith("libc.so.6 => ", StringComparison.Ordinal))
            .Split(' ')[2];
        string? found = BinaryLocator.FindLibrary("libc", fx.Pie);
        Assert.NotNull(found);
        Assert.Equal(Canonical(libcPath), Canonical(found));
        // Without an executable the system directories give the same library; libc.so (a linker script) is skipped.
        Assert.Equal(Canonical(libcPath), Canonical(BinaryLocator.FindLibrary("libc", null)!));
        Assert.Null(BinaryLocator.FindLibrary("libnosuchthing", fx.Pie));
        Assert.Null(BinaryLocator.FindLibrary("a/b", null));
    }

    [Fact]
    public void FindLibrary_searches_LD_LIBRARY_PATH_and_skips_non_elf_candidates()
    {
        string dir = Directory.CreateDirectory(Path.Combine(fx.Dir, "libs")).FullName;
        File.Copy(fx.SharedLib, Path.Combine(dir, "libdemo.so.1"), overwrite: true);
        File.WriteAllText(Path.Combine(dir, "libdemo.so"), "/* GNU ld script */ INPUT(libdemo.so.1)");
        Assert.Equal(Path.Combine(dir, "libdemo.so.1"), BinaryLocator.FindLibrary("libdemo", null, dir, []));
        Assert.Equal(Path.Combine(dir, "libdemo.so.1"), BinaryLocator.FindLibrary("libdemo.so.1", null, dir, []));
        Assert.Null(BinaryLocator.FindLibrary("libdemo", null, null, []));
    }

    /// <summary>realpath(1): resolves directory symlinks too (/lib -> usr/lib on merged-/usr systems).</summary>
    public static string Canonical(string path) => Binutils.Run("realpath", path).Trim();
}
