namespace Uprec.Symbols.Tests;

/// <summary>Resolution of parsed specs on the gcc-built fixtures; expected offsets come from readelf/objdump.</summary>
[Collection(SymbolFixturesCollection.Name)]
public sealed class ProbeResolverTests(SymbolFixtures fx)
{
    private static IReadOnlyList<ResolvedSite> Resolve(string spec, string path) =>
        ProbeResolver.Resolve(ProbeSpecParser.Parse(spec), ElfImage.Load(path));

    private long ObjdumpOffsetOf(string path, string name)
    {
        ReadelfSymbol s = Binutils.Functions(path).First(f => f.Name == name);
        return Binutils.ObjdumpFileOffsets(path)[s.Value];
    }

    [Theory]
    [InlineData("pie")]
    [InlineData("nopie")]
    public void Symbol_resolves_to_its_file_offset(string which)
    {
        string path = which == "pie" ? fx.Pie : fx.NoPie;
        ResolvedSite site = Assert.Single(Resolve($"{path}:parse_body", path));
        ReadelfSymbol truth = Binutils.Functions(path).First(f => f.Name == "parse_body");
        long offset = ObjdumpOffsetOf(path, "parse_body");
        Assert.Equal(new ResolvedSite("parse_body", "parse_body", offset, offset, truth.Size, truth.Value), site);
    }

    [Fact]
    public void Symbol_plus_offset_stays_inside_the_function()
    {
        long offset = ObjdumpOffsetOf(fx.NoPie, "work");
        ResolvedSite site = Assert.Single(Resolve($"{fx.NoPie}:work+4", fx.NoPie));
        Assert.Equal(offset + 4, site.FileOffset);
        Assert.Equal(offset, site.FunctionFileOffset);
        Assert.Equal("work+0x4", site.ProbeName);
        Assert.Equal(ElfImage.Load(fx.NoPie).FindSymbol("work")!.Value + 4, site.Vaddr);

        ulong size = Binutils.Functions(fx.NoPie).First(f => f.Name == "work").Size;
        Assert.Single(Resolve($"{fx.NoPie}:work+{size - 1}", fx.NoPie));
        var e = Assert.Throws<SymbolException>(() => Resolve($"{fx.NoPie}:work+{size}", fx.NoPie));
        Assert.Contains($"is only {size} bytes long", e.Message);
    }

    [Fact]
    public void Glob_gives_every_match_and_one_site_per_address()
    {
        IReadOnlyList<ResolvedSite> sites = Resolve($"{fx.Pie}:parse_*", fx.Pie);
        Assert.Equal(["parse_body", "parse_footer", "parse_header"], sites.Select(s => s.ProbeName).Order(StringComparer.Ordinal));
        foreach (ResolvedSite s in sites)
        {
            Assert.Equal(ObjdumpOffsetOf(fx.Pie, s.SymbolName), s.FileOffset);
        }

        // work and work_alias are one function: a glob matching both probes it once.
        ResolvedSite work = Assert.Single(Resolve($"{fx.Pie}:work*", fx.Pie));
        Assert.Equal("work", work.SymbolName);

        // An explicit name labels every match.
        Assert.All(Resolve($"parsers={fx.Pie}:parse_*", fx.Pie), s => Assert.Equal("parsers", s.ProbeName));
    }

    [Fact]
    public void A_name_with_two_static_definitions_gives_both()
    {
        IReadOnlyList<ResolvedSite> sites = Resolve($"{fx.Pie}:helper", fx.Pie);
        var expected = Binutils.Functions(fx.Pie).Where(f => f.Name == "helper")
            .Select(f => Binutils.ObjdumpFileOffsets(fx.Pie)[f.Value]).Order();
        Assert.Equal(expected, sites.Select(s => s.FileOffset).Order());
    }

    [Fact]
    public void File_offset_names_the_enclosing_function()
    {
        long body = ObjdumpOffsetOf(fx.NoPie, "parse_body");
        ResolvedSite atStart = Assert.Single(Resolve($"{fx.NoPie}:0x{body:x}", fx.NoPie));
        Assert.Equal("parse_body", atStart.SymbolName);
        Assert.Equal($"0x{body:x}", atStart.ProbeName);
        Assert.Equal(body, atStart.FunctionFileOffset);

        ResolvedSite inside = Assert.Single(Resolve($"p={fx.NoPie}:0x{body + 4:x}%return", fx.NoPie));
        Assert.Equal("parse_body+0x4", inside.SymbolName);
        Assert.Equal("p", inside.ProbeName);
        Assert.Equal(body, inside.FunctionFileOffset);
        Assert.Equal(ElfImage.Load(fx.NoPie).FindSymbol("parse_body")!.Value + 4, inside.Vaddr);
    }

    [Fact]
    public void File_offset_outside_code_is_refused_with_the_code_ranges()
    {
        // Offset 0 is the ELF header: mapped, but not executable.
        var e = Assert.Throws<SymbolException>(() => Resolve($"{fx.Pie}:0x0", fx.Pie));
        Assert.Contains("is not in the code", e.Message);
        var exec = Binutils.LoadSegments(fx.Pie).Single(s => s.Flags.Contains('E'));
        Assert.Contains($"0x{exec.Offset:x}-0x{exec.Offset + exec.FileSize:x}", e.Message);
        Assert.Throws<SymbolException>(() => Resolve($"{fx.Pie}:0x{new FileInfo(fx.Pie).Length + 100:x}", fx.Pie));
    }

    [Fact]
    public void Unknown_symbol_suggests_close_names()
    {
        var e = Assert.Throws<SymbolException>(() => Resolve($"{fx.Pie}:parse_bdy", fx.Pie));
        Assert.Contains("no function named 'parse_bdy'", e.Message);
        Assert.Contains("did you mean: parse_body", e.Message);

        var g = Assert.Throws<SymbolException>(() => Resolve($"{fx.Pie}:prase_*", fx.Pie));
        Assert.Contains("no function matches 'prase_*'", g.Message);
    }

    [Fact]
    public void Stripped_binary_says_so_and_suggests_a_file_offset()
    {
        var e = Assert.Throws<SymbolException>(() => Resolve($"{fx.NoSymbols}:work", fx.NoSymbols));
        Assert.Contains("no function symbols", e.Message);
        Assert.Contains($"{fx.NoSymbols}:0x", e.Message);
        // The file-offset form still works on a stripped binary.
        long work = ObjdumpOffsetOf(fx.Pie, "work");
        ResolvedSite site = Assert.Single(Resolve($"{fx.NoSymbols}:0x{work:x}", fx.NoSymbols));
        Assert.Equal(work, site.FileOffset);
        Assert.Equal(0UL, site.FunctionSize);
    }

    [Fact]
    public void Dynsym_only_binary_resolves_exported_functions()
    {
        ResolvedSite site = Assert.Single(Resolve($"{fx.DynsymOnly}:parse_header", fx.DynsymOnly));
        Assert.Equal(ObjdumpOffsetOf(fx.DynsymOnly, "parse_header"), site.FileOffset);
    }

    [Fact]
    public void Shared_library_functions_resolve_including_static_ones()
    {
        foreach (string name in new[] { "lib_add", "lib_mul", "lib_helper", "lib_hidden" })
        {
            ResolvedSite site = Assert.Single(Resolve($"{fx.SharedLib}:{name}", fx.SharedLib));
            Assert.Equal(ObjdumpOffsetOf(fx.SharedLib, name), site.FileOffset);
        }
    }

    [Fact]
    public void Ifunc_resolver_sites_are_flagged()
    {
        string libc = BinaryLocator.FindLibrary("libc", fx.Pie)!;
        ReadelfSymbol truth = Binutils.Functions(libc).Single(s => s.Name == "memcpy");
        ResolvedSite site = Assert.Single(Resolve($"libc:memcpy", libc));
        Assert.Equal(truth.Type == "IFUNC", site.IsIfuncResolver);
        ResolvedSite plain = Assert.Single(Resolve($"libc:malloc", libc));
        Assert.False(plain.IsIfuncResolver);
    }

    [Fact]
    public void Glob_with_offset_skips_functions_too_small_for_it()
    {
        IReadOnlyList<ResolvedSite> sites = Resolve($"{fx.Pie}:*+30", fx.Pie);
        var expected = Binutils.Functions(fx.Pie).Where(f => f.Size > 30).Select(f => f.Value + 30).Distinct().Order();
        Assert.Equal(expected, sites.Select(s => s.Vaddr).Order());
        Assert.All(sites, s => Assert.True(s.FunctionSize > 30));

        ulong tiny = Binutils.Functions(fx.Pie).Single(f => f.Name == "tiny").Size;
        var e = Assert.Throws<SymbolException>(() => Resolve($"{fx.Pie}:tin?+{tiny}", fx.Pie));
        Assert.Contains($"outside tiny", e.Message);
    }
}
