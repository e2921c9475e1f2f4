using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Uprec.Symbols.Tests;

/// <summary>
/// Builds testdata/symbols with gcc once per test run into a temporary directory. Ground truth about the built
/// files comes from binutils (readelf, objdump, nm) run by <see cref="Binutils"/>, never from uprec's own reader.
/// </summary>
public sealed class SymbolFixtures : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("uprec-symbols-").FullName;
    public string Pie { get; }
    public string NoPie { get; }
    /// <summary>PIE linked with -rdynamic, then strip --strip-all: functions only in .dynsym.</summary>
    public string DynsymOnly { get; }
    /// <summary>PIE stripped of .symtab, with no defined function in .dynsym.</summary>
    public string NoSymbols { get; }
    public string SharedLib { get; }
    /// <summary>A relocatable object (gcc -c), which cannot be probed.</summary>
    public string Object { get; }

    public SymbolFixtures()
    {
        string src = Path.Combine(Repo.Root, "testdata", "symbols");
        string prog = Path.Combine(src, "prog.c"), other = Path.Combine(src, "other.c"), lib = Path.Combine(src, "lib.c");
        const string common = "-O0 -fno-inline -g0";
        Pie = Build("prog-pie", $"{common} -fPIE -pie {prog} {other}");
        NoPie = Build("prog-nopie", $"{common} -fno-pie -no-pie {prog} {other}");
        string rdynamic = Build("prog-rdynamic", $"{common} -fPIE -pie -rdynamic {prog} {other}");
        DynsymOnly = Path.Combine(Dir, "prog-dynsym");
        Binutils.Run("strip", $"--strip-all -o {DynsymOnly} {rdynamic}");
        NoSymbols = Path.Combine(Dir, "prog-nosyms");
        Binutils.Run("strip", $"--strip-all -o {NoSymbols} {Pie}");
        SharedLib = Build("libdemo.so.1", $"{common} -fPIC -shared -Wl,-soname,libdemo.so.1 {lib}");
        Object = Path.Combine(Dir, "prog.o");
        Binutils.Run("gcc", $"{common} -c -o {Object} {prog}");
    }

    private string Build(string name, string args)
    {
        string output = Path.Combine(Dir, name);
        Binutils.Run("gcc", $"{args} -o {output}");
        return output;
    }

    /// <summary>Writes <paramref name="bytes"/> to a new file in the fixture directory.</summary>
    public string WriteFile(string name, ReadOnlySpan<byte> bytes)
    {
        string path = Path.Combine(Dir, name);
        File.WriteAllBytes(path, bytes.ToArray());
        return path;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }
}

[CollectionDefinition(Name)]
public sealed class SymbolFixturesCollection : ICollectionFixture<SymbolFixtures>
{
    public const string Name = "gcc-built symbol fixtures";
}

public static class Repo
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Perf.sln")))
            {
                return dir;
            }
        }
        throw new InvalidOperationException("Perf.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A symbol as readelf -sW prints it.</summary>
public sealed record ReadelfSymbol(string Name, ulong Value, ulong Size, string Type, string Bind, string Ndx, bool Dynamic);

/// <summary>Runs binutils and parses their output: the independent ground truth for the ELF reader.</summary>
public static partial class Binutils
{
    public static string Run(string tool, string args)
    {
        var psi = new ProcessStartInfo(tool, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment["LC_ALL"] = "C";
        using Process p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {tool}");
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{tool} {args} exited {p.ExitCode}: {stderr.Result}");
        }
        return stdout;
    }

    /// <summary>Defined FUNC/IFUNC symbols with a non-zero value, from readelf -sW (.symtab and .dynsym) or --dyn-syms.</summary>
    public static List<ReadelfSymbol> Functions(string path, bool dynamicOnly = false)
    {
        var result = new List<ReadelfSymbol>();
        bool inDynamic = false;
        foreach (string line in Run("readelf", (dynamicOnly ? "--dyn-syms" : "-sW") + " -W " + path).Split('\n'))
        {
            if (line.StartsWith("Symbol table", StringComparison.Ordinal))
            {
                inDynamic = line.Contains(".dynsym", StringComparison.Ordinal);
                continue;
            }
            Match m = SymbolLine().Match(line);
            if (!m.Success)
            {
                continue;
            }
            string type = m.Groups["type"].Value, ndx = m.Groups["ndx"].Value;
            ulong value = ulong.Parse(m.Groups["value"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (type is not ("FUNC" or "IFUNC") || ndx is "UND" or "ABS" || value == 0)
            {
                continue;
            }
            string sizeText = m.Groups["size"].Value;
            ulong size = sizeText.StartsWith("0x", StringComparison.Ordinal)
                ? ulong.Parse(sizeText[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture)
                : ulong.Parse(sizeText, CultureInfo.InvariantCulture);
            // readelf appends " (N)" to versioned references and "@@VER" to default versions; uprec keeps a
            // version in the name only when it is hidden ("memcpy@GLIBC_2.2.5"), the one way to reach it.
            string name = VersionIndex().Replace(m.Groups["name"].Value, "");
            int defaultVersion = name.IndexOf("@@", StringComparison.Ordinal);
            name = defaultVersion >= 0 ? name[..defaultVersion] : name;
            result.Add(new ReadelfSymbol(name, value, size, type, m.Groups["bind"].Value, ndx, inDynamic));
        }
        return result;
    }

    /// <summary>Address to file offset for every symbol objdump -d -F labels (its own section/segment arithmetic).</summary>
    public static Dictionary<ulong, long> ObjdumpFileOffsets(string path, string? extraArgs = null)
    {
        var result = new Dictionary<ulong, long>();
        foreach (string line in Run("objdump", $"-d -F --no-show-raw-insn {extraArgs} {path}").Split('\n'))
        {
            Match m = ObjdumpLabel().Match(line);
            if (m.Success)
            {
                result[ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture)] =
                    long.Parse(m.Groups[2].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            }
        }
        return result;
    }

    /// <summary>PT_LOAD rows of readelf -lW: (offset, vaddr, filesz, memsz, flags).</summary>
    public static List<(long Offset, ulong Vaddr, long FileSize, ulong MemSize, string Flags)> LoadSegments(string path)
    {
        var result = new List<(long, ulong, long, ulong, string)>();
        foreach (string line in Run("readelf", "-lW " + path).Split('\n'))
        {
            Match m = LoadLine().Match(line);
            if (m.Success)
            {
                result.Add((Hex(m.Groups[1].Value), (ulong)Hex(m.Groups[2].Value), Hex(m.Groups[3].Value), (ulong)Hex(m.Groups[4].Value),
                    m.Groups[5].Value.Replace(" ", "")));
            }
        }
        return result;
    }

    public static string? Interpreter(string path)
    {
        Match m = Regex.Match(Run("readelf", "-lW " + path), @"Requesting program interpreter: (.+)\]");
        return m.Success ? m.Groups[1].Value : null;
    }

    public static ulong Entry(string path)
    {
        Match m = Regex.Match(Run("readelf", "-hW " + path), @"Entry point address:\s+0x([0-9a-f]+)");
        return (ulong)Hex(m.Groups[1].Value);
    }

    /// <summary>(tag, value) pairs of readelf -d for NEEDED and SONAME.</summary>
    public static List<(string Tag, string Value)> Dynamic(string path)
    {
        var result = new List<(string, string)>();
        foreach (Match m in Regex.Matches(Run("readelf", "-dW " + path), @"\((NEEDED|SONAME|RUNPATH|RPATH)\)\s+[^\[]*\[(.*)\]"))
        {
            result.Add((m.Groups[1].Value, m.Groups[2].Value));
        }
        return result;
    }

    private static long Hex(string s) => long.Parse(s.StartsWith("0x", StringComparison.Ordinal) ? s[2..] : s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^\s*\d+:\s+(?<value>[0-9a-f]{16})\s+(?<size>\S+)\s+(?<type>\S+)\s+(?<bind>\S+)\s+\S+\s+(?<ndx>\S+)\s+(?<name>\S+)")]
    private static partial Regex SymbolLine();

    [GeneratedRegex(@" \(\d+\)$")]
    private static partial Regex VersionIndex();

    [GeneratedRegex(@"^([0-9a-f]+) <[^>]+> \(File Offset: 0x([0-9a-f]+)\):")]
    private static partial Regex ObjdumpLabel();

    [GeneratedRegex(@"^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+([RWE ]+?)\s+0x")]
    private static partial Regex LoadLine();
}
