namespace Uprec.Symbols.Tests;

/// <summary>ElfImage against binutils on gcc-built PIE, non-PIE, .dynsym-only, stripped and shared-library files.</summary>
[Collection(SymbolFixturesCollection.Name)]
public sealed class ElfImageTests(SymbolFixtures fx)
{
    public static TheoryData<string> Binaries => new() { "pie", "nopie", "dynsym", "lib" };

    private string PathOf(string which) => which switch
    {
        "pie" => fx.Pie,
        "nopie" => fx.NoPie,
        "dynsym" => fx.DynsymOnly,
        "lib" => fx.SharedLib,
        _ => throw new ArgumentOutOfRangeException(nameof(which)),
    };

    [Theory]
    [MemberData(nameof(Binaries))]
    public void Functions_equal_readelf_symbols_and_objdump_file_offsets(string which)
    {
        string path = PathOf(which);
        ElfImage image = ElfImage.Load(path);

        var expected = Binutils.Functions(path)
            .Select(s => (s.Name, s.Value, s.Size))
            .Distinct()
            .OrderBy(t => t.Value).ThenBy(t => t.Name, StringComparer.Ordinal)
            .ToList();
        var actual = image.Functions.Select(f => (f.Name, f.Value, f.Size)).ToList();
        Assert.NotEmpty(expected);
        Assert.Equal(expected, actual);

        // objdump labels one name per address; every function's address must be among them with the same offset.
        Dictionary<ulong, long> offsets = Binutils.ObjdumpFileOffsets(path);
        foreach (ElfSymbol f in image.Functions)
        {
            Assert.True(offsets.TryGetValue(f.Value, out long offset), $"objdump has no label at 0x{f.Value:x} ({f.Name})");
            Assert.Equal(offset, f.FileOffset);
        }
    }

    [Theory]
    [MemberData(nameof(Binaries))]
    public void Segments_entry_and_interpreter_equal_readelf(string which)
    {
        string path = PathOf(which);
        ElfImage image = ElfImage.Load(path);

        var expected = Binutils.LoadSegments(path)
            .Select(s => new LoadSegment(s.Vaddr, s.MemSize, s.Offset, s.FileSize, s.Flags.Contains('E'), s.Flags.Contains('W')))
            .OrderBy(s => s.Vaddr)
            .ToList();
        Assert.Equal(expected, image.Segments);
        Assert.Equal(Binutils.Entry(path), image.Entry);
        Assert.Equal(Binutils.Interpreter(path), image.Interpreter);
    }

    [Fact]
    public void Pie_and_non_pie_are_told_apart_and_non_pie_addresses_differ_from_offsets()
    {
        Assert.True(ElfImage.Load(fx.Pie).IsPie);
        Assert.True(ElfImage.Load(fx.SharedLib).IsPie);
        ElfImage noPie = ElfImage.Load(fx.NoPie);
        Assert.False(noPie.IsPie);
        // The point of the non-PIE fixture: its link addresses (0x40xxxx) are not file offsets.
        ElfSymbol work = noPie.FindSymbol("work")!;
        Assert.NotEqual((ulong)work.FileOffset, work.Value);
        Assert.Equal(work.FileOffset, noPie.VaddrToFileOffset(work.Value));
        Assert.Equal(work.Value, noPie.FileOffsetToVaddr(work.FileOffset));
    }

    [Fact]
    public void Dynsym_only_binary_lists_exported_functions_only()
    {
        ElfImage image = ElfImage.Load(fx.DynsymOnly);
        Assert.False(image.HasSymtab);
        Assert.True(image.HasDynsym);
        Assert.All(image.Functions, f => Assert.True(f.FromDynsym));
        Assert.NotNull(image.FindSymbol("work"));
        Assert.Null(image.FindSymbol("helper")); // static: only .symtab had it, and strip removed .symtab
        Assert.Equal(Binutils.Functions(fx.DynsymOnly, dynamicOnly: true).Select(s => s.Name).Order(StringComparer.Ordinal),
            image.Functions.Select(f => f.Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Fully_stripped_binary_has_no_functions_but_still_loads_segments()
    {
        ElfImage image = ElfImage.Load(fx.NoSymbols);
        Assert.Empty(image.Functions);
        Assert.NotEmpty(image.Segments);
        Assert.Equal(Binutils.Entry(fx.NoSymbols), image.Entry);
    }

    [Fact]
    public void Shared_library_soname_and_needed_equal_readelf_dynamic()
    {
        ElfImage lib = ElfImage.Load(fx.SharedLib);
        List<(string Tag, string Value)> dyn = Binutils.Dynamic(fx.SharedLib);
        Assert.Equal(dyn.Single(d => d.Tag == "SONAME").Value, lib.Soname);
        Assert.Equal(dyn.Where(d => d.Tag == "NEEDED").Select(d => d.Value), lib.Needed);

        ElfImage pie = ElfImage.Load(fx.Pie);
        List<string> needed = Binutils.Dynamic(fx.Pie).Where(d => d.Tag == "NEEDED").Select(d => d.Value).ToList();
        Assert.Contains("libc.so.6", needed);
        Assert.Equal(needed, pie.Needed);
        Assert.Null(pie.Soname);
    }

    [Fact]
    public void Symbols_in_both_tables_appear_once_and_keep_symtab_binding()
    {
        ElfImage image = ElfImage.Load(fx.SharedLib);
        // lib_add is in .symtab and .dynsym at the same address: one entry.
        Assert.Single(image.Functions, f => f.Name == "lib_add");
        ElfSymbol helper = image.FindSymbol("lib_helper")!;
        Assert.Equal(SymbolBinding.Local, helper.Binding);
        Assert.False(helper.FromDynsym);
        // The hidden function is local after linking and absent from .dynsym.
        Assert.DoesNotContain(Binutils.Functions(fx.SharedLib, dynamicOnly: true), s => s.Name == "lib_hidden");
        Assert.NotNull(image.FindSymbol("lib_hidden"));
    }

    [Fact]
    public void Two_static_functions_with_one_name_are_both_found()
    {
        ElfImage image = ElfImage.Load(fx.Pie);
        var expected = Binutils.Functions(fx.Pie).Where(s => s.Name == "helper").Select(s => s.Value).Order().ToList();
        Assert.Equal(2, expected.Count);
        Assert.Equal(expected, image.FindSymbols("helper").Select(s => s.Value).Order());
    }

    [Fact]
    public void FunctionContaining_finds_the_enclosing_function_and_nothing_between_functions()
    {
        ElfImage image = ElfImage.Load(fx.NoPie);
        ElfSymbol body = image.FindSymbol("parse_body")!;
        Assert.Equal("parse_body", image.FunctionContaining(body.Value)!.Name);
        Assert.Equal("parse_body", image.FunctionContaining(body.Value + body.Size - 1)!.Name);
        ElfSymbol? next = image.FunctionContaining(body.Value + body.Size);
        Assert.NotEqual("parse_body", next?.Name);
        // Aliases: work and work_alias share an address; the global one that sorts first is returned.
        ElfSymbol work = image.FindSymbol("work")!;
        Assert.Contains(image.FunctionContaining(work.Value + 1)!.Name, new[] { "work", "work_alias" });
        Assert.Null(image.FunctionContaining(0x10));
    }

    [Fact]
    public void ReadBytes_returns_the_file_bytes_and_refuses_ranges_past_the_end()
    {
        ElfImage image = ElfImage.Load(fx.Pie);
        ElfSymbol work = image.FindSymbol("work")!;
        byte[] file = File.ReadAllBytes(fx.Pie);
        Assert.Equal(file.AsSpan((int)work.FileOffset, 16).ToArray(), image.ReadBytes(work.FileOffset, 16));
        Assert.Throws<SymbolException>(() => image.ReadBytes(file.Length - 4, 8));
        Assert.Throws<SymbolException>(() => image.ReadBytes(-1, 4));
    }

    [Fact]
    public void Libc_symbols_versions_and_ifuncs_equal_readelf()
    {
        string? libc = BinaryLocator.FindLibrary("libc", fx.Pie);
        Assert.NotNull(libc);
        ElfImage image = ElfImage.Load(libc);
        List<ReadelfSymbol> truth = Binutils.Functions(libc);
        var expected = truth.Select(s => (s.Name, s.Value, s.Size)).Distinct().OrderBy(t => t.Value).ThenBy(t => t.Name, StringComparer.Ordinal);
        Assert.Equal(expected, image.Functions.Select(f => (f.Name, f.Value, f.Size)));

        // memcpy exists as a default version (an IFUNC) and a hidden compatibility version.
        ReadelfSymbol defaultMemcpy = truth.Single(s => s.Name == "memcpy");
        Assert.Equal(defaultMemcpy.Value, image.FindSymbol("memcpy")!.Value);
        Assert.Equal(defaultMemcpy.Type == "IFUNC", image.FindSymbol("memcpy")!.IsIndirect);
        Assert.Contains(image.Functions, f => f.Name.StartsWith("memcpy@GLIBC_", StringComparison.Ordinal));

        ElfSymbol malloc = image.FindSymbol("malloc")!;
        Dictionary<ulong, long> offsets = Binutils.ObjdumpFileOffsets(libc, $"--start-address=0x{malloc.Value:x} --stop-address=0x{malloc.Value + 1:x}");
        Assert.Equal(offsets[malloc.Value], malloc.FileOffset);
    }
}
