using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Uprec.Symbols.Tests;

/// <summary>The list verb's output, checked row by row against readelf and objdump.</summary>
[Collection(SymbolFixturesCollection.Name)]
public sealed class FunctionListTests(SymbolFixtures fx)
{
    private static string Run(string binary, string? glob, ListFormat format)
    {
        var output = new StringWriter();
        FunctionList.Run(new ListRequest(binary, glob, format), output);
        return output.ToString();
    }

    private static List<(long Offset, ulong Size, string Bind, string Name)> TableRows(string table)
    {
        var rows = new List<(long, ulong, string, string)>();
        foreach (string line in table.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#'))
            {
                continue;
            }
            Match m = Regex.Match(line, @"^\s*0x([0-9a-f]+)\s+(\d+)\s+(global|weak|local)\s+(\S+)$");
            Assert.True(m.Success, $"unexpected row: '{line}'");
            rows.Add((long.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                ulong.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), m.Groups[3].Value, m.Groups[4].Value));
        }
        return rows;
    }

    private static List<(long Offset, ulong Size, string Bind, string Name)> Truth(string path, Func<string, bool>? filter = null)
    {
        Dictionary<ulong, long> offsets = Binutils.ObjdumpFileOffsets(path);
        return Binutils.Functions(path)
            .Where(s => filter is null || filter(s.Name))
            .GroupBy(s => (s.Name, s.Value))
            .Select(g =>
            {
                // A symbol in both tables: the strongest binding either table gives it.
                string bind = g.Any(s => s.Bind == "GLOBAL") ? "global" : g.Any(s => s.Bind == "WEAK") ? "weak" : "local";
                return (offsets[g.Key.Value], g.Max(s => s.Size), bind, g.Key.Name);
            })
            .OrderBy(r => r.Item1).ThenBy(r => r.Name, StringComparer.Ordinal)
            .ToList();
    }

    [Theory]
    [InlineData("pie")]
    [InlineData("nopie")]
    [InlineData("lib")]
    public void Table_lists_every_function_sorted_by_offset(string which)
    {
        string path = which switch { "pie" => fx.Pie, "nopie" => fx.NoPie, _ => fx.SharedLib };
        string table = Run(path, null, ListFormat.Table);
        Assert.StartsWith($"# {path}: ", table);
        Assert.Equal(Truth(path), TableRows(table));
    }

    [Fact]
    public void Header_names_the_kind_and_symbol_tables()
    {
        Assert.Contains("PIE executable", Run(fx.Pie, "work", ListFormat.Table));
        Assert.Contains("non-PIE executable", Run(fx.NoPie, "work", ListFormat.Table));
        Assert.Contains("shared library", Run(fx.SharedLib, "lib_add", ListFormat.Table));
        Assert.Contains(".dynsym only", Run(fx.DynsymOnly, "work", ListFormat.Table));
    }

    [Fact]
    public void Glob_filters_rows()
    {
        string table = Run(fx.Pie, "parse_*", ListFormat.Table);
        Assert.Equal(Truth(fx.Pie, n => n.StartsWith("parse_", StringComparison.Ordinal)), TableRows(table));
        Assert.Contains("3 function(s)", table);
    }

    [Fact]
    public void Json_carries_the_same_functions_with_integer_numbers()
    {
        using JsonDocument doc = JsonDocument.Parse(Run(fx.NoPie, "parse_*", ListFormat.Json));
        JsonElement root = doc.RootElement;
        Assert.Equal(fx.NoPie, root.GetProperty("binary").GetString());
        Assert.False(root.GetProperty("pie").GetBoolean());
        var rows = root.GetProperty("functions").EnumerateArray()
            .Select(f => (f.GetProperty("offset").GetInt64(), f.GetProperty("size").GetUInt64(), f.GetProperty("binding").GetString()!,
                f.GetProperty("name").GetString()!))
            .ToList();
        Assert.Equal(Truth(fx.NoPie, n => n.StartsWith("parse_", StringComparison.Ordinal)), rows);
        var vaddrs = Binutils.Functions(fx.NoPie).Where(s => s.Name.StartsWith("parse_", StringComparison.Ordinal)).Select(s => s.Value).Order();
        Assert.Equal(vaddrs, root.GetProperty("functions").EnumerateArray().Select(f => f.GetProperty("vaddr").GetUInt64()).Order());
    }

    [Fact]
    public void No_match_is_an_error_with_suggestions()
    {
        var e = Assert.Throws<SymbolException>(() => Run(fx.Pie, "wrk", ListFormat.Table));
        Assert.Contains("did you mean: work", e.Message);
        var s = Assert.Throws<SymbolException>(() => Run(fx.NoSymbols, null, ListFormat.Table));
        Assert.Contains("no function symbols", s.Message);
    }

    [Fact]
    public void Short_library_name_lists_the_library_the_loader_would_use()
    {
        string table = Run("libc", "malloc", ListFormat.Table);
        string firstLine = table.Split('\n')[0];
        string listed = firstLine[2..firstLine.IndexOf(": ", StringComparison.Ordinal)];
        // ldd asks the real dynamic loader which libc the fixture program gets.
        Match m = Regex.Match(Binutils.Run("ldd", fx.Pie), @"libc\.so\.6 => (\S+)");
        Assert.True(m.Success);
        Assert.Equal(BinaryLocatorTests.Canonical(m.Groups[1].Value), BinaryLocatorTests.Canonical(listed));
        Assert.Single(TableRows(table), r => r.Name == "malloc");
    }

    [Fact]
    public void Missing_binary_is_a_symbol_error()
    {
        Assert.Contains("does not exist", Assert.Throws<SymbolException>(() => Run("./no/such/prog", null, ListFormat.Table)).Message);
        Assert.Contains("is not a file, a library", Assert.Throws<SymbolException>(() => Run("libdoesnotexist", null, ListFormat.Table)).Message);
    }
}
