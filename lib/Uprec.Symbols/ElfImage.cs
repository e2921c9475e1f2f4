using System.Text;

namespace Uprec.Symbols;

public enum SymbolBinding { Local, Global, Weak }

/// <summary>
/// A function symbol. <see cref="Value"/> is its virtual address as linked (relative to the load base for PIE and
/// shared libraries); <see cref="FileOffset"/> is where its first byte lies in the file, the key probes use.
/// </summary>
public sealed record ElfSymbol(string Name, ulong Value, ulong Size, long FileOffset, bool FromDynsym)
{
    public SymbolBinding Binding { get; init; } = SymbolBinding.Global;

    /// <summary>
    /// STT_GNU_IFUNC: the address is a resolver that runs once at load time and returns the real implementation
    /// (libc's memcpy, strlen...). A probe here counts resolver calls, not calls of the function.
    /// </summary>
    public bool IsIndirect { get; init; }
}

/// <summary>A PT_LOAD segment: <see cref="FileSize"/> bytes from <see cref="FileOffset"/> mapped at <see cref="Vaddr"/>.</summary>
public sealed record LoadSegment(ulong Vaddr, ulong MemSize, long FileOffset, long FileSize, bool Executable, bool Writable);

/// <summary>
/// What uprec needs from one ELF x86-64 executable or shared library: load segments, interpreter, dependencies
/// and function symbols from .symtab and .dynsym. Immutable once loaded, so one instance can be cached per file
/// and shared between threads. Every failure, including any malformed input, is a <see cref="SymbolException"/>.
/// </summary>
public sealed class ElfImage
{
    private const ushort EtExec = 2, EtDyn = 3, EmX86_64 = 62;
    private const uint PtLoad = 1, PtDynamic = 2, PtInterp = 3;
    private const uint PfX = 1, PfW = 2;
    private const uint ShtSymtab = 2, ShtStrtab = 3, ShtDynsym = 11, ShtGnuVerdef = 0x6ffffffd, ShtGnuVersym = 0x6fffffff;
    private const byte SttFunc = 2, SttGnuIfunc = 10;
    private const ushort ShnUndef = 0, ShnLoReserve = 0xff00, ShnXindex = 0xffff;
    private const long DtNull = 0, DtNeeded = 1, DtStrtab = 5, DtStrsz = 10, DtSoname = 14, DtRpath = 15, DtRunpath = 29;
    private const int EhdrSize = 64, PhdrSize = 56, ShdrSize = 64, SymSize = 24, DynSize = 16;

    private readonly Dictionary<string, ElfSymbol[]> _byName;

    public string Path { get; }
    /// <summary>ET_DYN: a position-independent executable or a shared library, loaded at a base chosen at run time.</summary>
    public bool IsPie { get; }
    public ulong Entry { get; }
    /// <summary>PT_INTERP, the dynamic loader's path; null for static executables and most shared libraries.</summary>
    public string? Interpreter { get; }
    public IReadOnlyList<LoadSegment> Segments { get; }
    /// <summary>Defined STT_FUNC/STT_GNU_IFUNC symbols inside executable segments, .symtab and .dynsym merged, sorted by Value then Name.</summary>
    public IReadOnlyList<ElfSymbol> Functions { get; }
    /// <summary>DT_NEEDED names, in order.</summary>
    public IReadOnlyList<string> Needed { get; }
    public string? Soname { get; }
    /// <summary>DT_RUNPATH (or DT_RPATH when there is no RUNPATH) directories, unexpanded ($ORIGIN kept).</summary>
    public IReadOnlyList<string> RunPaths { get; }
    public bool HasSymtab { get; }
    public bool HasDynsym { get; }

    private ElfImage(string path, bool isPie, ulong entry, string? interpreter, IReadOnlyList<LoadSegment> segments,
        IReadOnlyList<ElfSymbol> functions, IReadOnlyList<string> needed, string? soname, IReadOnlyList<string> runPaths,
        bool hasSymtab, bool hasDynsym)
    {
        Path = path;
        IsPie = isPie;
        Entry = entry;
        Interpreter = interpreter;
        Segments = segments;
        Functions = functions;
        Needed = needed;
        Soname = soname;
        RunPaths = runPaths;
        HasSymtab = hasSymtab;
        HasDynsym = hasDynsym;
        _byName = functions.GroupBy(f => f.Name, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.OrderBy(Preference).ToArray(), StringComparer.Ordinal);
    }

    public static ElfImage Load(string path) => Load(path, SymbolLimits.Default);

    public static ElfImage Load(string path, SymbolLimits limits)
    {
        ArgumentNullException.ThrowIfNull(path);
        using ElfFile file = ElfFile.Open(path, limits);
        return Parse(file);
    }

    /// <summary>The preferred definition of <paramref name="name"/> (global before weak before local), or null.</summary>
    public ElfSymbol? FindSymbol(string name) => _byName.TryGetValue(name, out ElfSymbol[]? all) ? all[0] : null;

    /// <summary>Every definition of <paramref name="name"/> at a distinct address (static functions may share a name).</summary>
    public IReadOnlyList<ElfSymbol> FindSymbols(string name) => _byName.TryGetValue(name, out ElfSymbol[]? all) ? all : [];

    /// <summary>The function whose [Value, Value+Size) holds <paramref name="vaddr"/>; a size-0 symbol holds only its own address.</summary>
    public ElfSymbol? FunctionContaining(ulong vaddr)
    {
        // Functions is sorted by Value: look at the last symbols starting at or before vaddr (aliases share a start).
        int lo = 0, hi = Functions.Count - 1, last = -1;
        while (lo <= hi)
        {
            int mid = lo + (hi - lo) / 2;
            if (Functions[mid].Value <= vaddr)
            {
                last = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        ElfSymbol? best = null;
        // Walk back over aliases and nested symbols; functions do not nest, so a handful of steps at most.
        for (int i = last; i >= 0 && i > last - 64; i--)
        {
            ElfSymbol f = Functions[i];
            bool contains = f.Size == 0 ? f.Value == vaddr : vaddr - f.Value < f.Size;
            if (contains && (best is null || Preference(f) < Preference(best)))
            {
                best = f;
            }
        }
        return best;
    }

    public long? VaddrToFileOffset(ulong vaddr) => SegmentMath.VaddrToFileOffset(Segments, vaddr);

    public ulong? FileOffsetToVaddr(long fileOffset) => SegmentMath.FileOffsetToVaddr(Segments, fileOffset);

    /// <summary>True when <paramref name="fileOffset"/> lies in the file bytes of an executable segment.</summary>
    public bool IsExecutableFileOffset(long fileOffset) => SegmentMath.IsExecutableFileOffset(Segments, fileOffset);

    /// <summary>Reads file contents (for saving original bytes or checking them); throws when the range is outside the file.</summary>
    public byte[] ReadBytes(long fileOffset, int count)
    {
        using ElfFile file = ElfFile.Open(Path, SymbolLimits.Default);
        return file.Read(fileOffset, count, $"{count} bytes requested");
    }

    // Lower sorts first: a global definition is what a user means by the name; the .symtab copy carries the size
    // the compiler emitted even when .dynsym has the same.
    private static int Preference(ElfSymbol s) => BindingRank(s.Binding) * 2 + (s.FromDynsym ? 1 : 0);

    private static int BindingRank(SymbolBinding b) => b switch { SymbolBinding.Global => 0, SymbolBinding.Weak => 1, _ => 2 };

    private static ElfImage Parse(ElfFile file)
    {
        string path = file.Path;
        if (file.Length < 4)
        {
            throw new SymbolException($"'{path}' is not an ELF file (only {file.Length} bytes)");
        }
        byte[] ident = file.Read(0, Math.Min(EhdrSize, file.Length), "ELF header");
        if (ident[0] != 0x7f || ident[1] != (byte)'E' || ident[2] != (byte)'L' || ident[3] != (byte)'F')
        {
            string hint = ident[0] == '#' && ident[1] == '!' ? " (it is a script; probe its interpreter instead)"
                : ident.AsSpan().StartsWith("!<arch>"u8) ? " (it is a static archive; probe the program linked from it)"
                : "";
            throw new SymbolException($"'{path}' is not an ELF file{hint}");
        }
        if (ident.Length < EhdrSize)
        {
            throw new SymbolException($"'{path}' is truncated: the ELF header needs {EhdrSize} bytes, the file has {file.Length}");
        }
        if (ident[4] == 1)
        {
            throw new SymbolException($"'{path}' is a 32-bit ELF file; uprec probes x86-64 (64-bit) binaries only");
        }
        if (ident[4] != 2 || ident[5] != 1)
        {
            throw new SymbolException($"'{path}' is not a 64-bit little-endian ELF file (class {ident[4]}, data {ident[5]})");
        }
        var header = new SpanReader(ident, path);
        ushort type = header.U16(16, "e_type");
        ushort machine = header.U16(18, "e_machine");
        if (machine != EmX86_64)
        {
            throw new SymbolException($"'{path}' is an ELF file for machine {machine} ({MachineName(machine)}), not x86-64");
        }
        if (type != EtExec && type != EtDyn)
        {
            string kind = type switch { 1 => "a relocatable object (.o)", 4 => "a core dump", _ => $"ELF type {type}" };
            throw new SymbolException($"'{path}' is {kind}, not an executable or shared library; probe the linked program");
        }
        ulong entry = header.U64(24, "e_entry");
        long phoff = ToOffset(path, header.U64(32, "e_phoff"), "e_phoff");
        long shoff = ToOffset(path, header.U64(40, "e_shoff"), "e_shoff");
        ushort phentsize = header.U16(54, "e_phentsize");
        int phnum = header.U16(56, "e_phnum");
        ushort shentsize = header.U16(58, "e_shentsize");
        int shnum = header.U16(60, "e_shnum");
        int shstrndx = header.U16(62, "e_shstrndx");

        // Section 0 carries the real counts when they overflow the 16-bit header fields.
        byte[]? section0 = null;
        if (shoff != 0 && (shnum == 0 || phnum == 0xffff || shstrndx == ShnXindex))
        {
            section0 = file.Read(shoff, ShdrSize, "section header 0");
            var s0 = new SpanReader(section0, path);
            if (shnum == 0)
            {
                shnum = CheckedCount(path, s0.U64(32, "section 0 sh_size"), file.Limits.MaxSections, "sections");
            }
            if (phnum == 0xffff)
            {
                phnum = (int)Math.Min(s0.U32(44, "section 0 sh_info"), int.MaxValue);
            }
        }

        if (phnum > file.Limits.MaxProgramHeaders)
        {
            throw ElfFile.Malformed(path, $"{phnum} program headers (limit {file.Limits.MaxProgramHeaders})");
        }
        if (phnum > 0 && phentsize != PhdrSize)
        {
            throw ElfFile.Malformed(path, $"program header entries are {phentsize} bytes, expected {PhdrSize}");
        }
        var segments = new List<LoadSegment>();
        string? interpreter = null;
        (long Offset, long Size)? dynamic = null;
        if (phnum > 0)
        {
            byte[] phdrBytes = file.Read(phoff, (long)phnum * PhdrSize, "program header table");
            var ph = new SpanReader(phdrBytes, path);
            for (int i = 0; i < phnum; i++)
            {
                long at = (long)i * PhdrSize;
                uint ptype = ph.U32(at, "p_type");
                uint flags = ph.U32(at + 4, "p_flags");
                long offset = ToOffset(path, ph.U64(at + 8, "p_offset"), $"program header {i} p_offset");
                ulong vaddr = ph.U64(at + 16, "p_vaddr");
                long filesz = ToOffset(path, ph.U64(at + 32, "p_filesz"), $"program header {i} p_filesz");
                ulong memsz = ph.U64(at + 40, "p_memsz");
                switch (ptype)
                {
                    case PtLoad:
                        if ((ulong)filesz > memsz)
                        {
                            throw ElfFile.Malformed(path, $"load segment {i} has p_filesz 0x{filesz:x} larger than p_memsz 0x{memsz:x}");
                        }
                        if (offset > file.Length - filesz)
                        {
                            throw new SymbolException(
                                $"'{path}' is truncated: load segment {i} spans file offsets 0x{offset:x}..0x{offset + filesz:x} but the file has only 0x{file.Length:x} bytes");
                        }
                        if (vaddr > ulong.MaxValue - memsz)
                        {
                            throw ElfFile.Malformed(path, $"load segment {i} wraps around the address space");
                        }
                        segments.Add(new LoadSegment(vaddr, memsz, offset, filesz, (flags & PfX) != 0, (flags & PfW) != 0));
                        break;
                    case PtInterp:
                        if (filesz > file.Limits.MaxInterpreterLength)
                        {
                            throw ElfFile.Malformed(path, $"PT_INTERP is {filesz} bytes long");
                        }
                        byte[] interp = file.Read(offset, filesz, "PT_INTERP");
                        int nul = Array.IndexOf(interp, (byte)0);
                        interpreter = Encoding.UTF8.GetString(interp, 0, nul < 0 ? interp.Length : nul);
                        break;
                    case PtDynamic:
                        dynamic = (offset, filesz);
                        break;
                }
            }
        }
        segments.Sort((a, b) => a.Vaddr.CompareTo(b.Vaddr));

        var needed = new List<string>();
        string? soname = null;
        var runPaths = new List<string>();
        if (dynamic is { } dyn)
        {
            ReadDynamic(file, dyn.Offset, dyn.Size, segments, needed, ref soname, runPaths);
        }

        var functions = new List<ElfSymbol>();
        bool hasSymtab = false, hasDynsym = false;
        if (shoff != 0 && shnum > 0)
        {
            if (shnum > file.Limits.MaxSections)
            {
                throw ElfFile.Malformed(path, $"{shnum} sections (limit {file.Limits.MaxSections})");
            }
            if (shentsize != ShdrSize)
            {
                throw ElfFile.Malformed(path, $"section header entries are {shentsize} bytes, expected {ShdrSize}");
            }
            byte[] shdrBytes = file.Read(shoff, (long)shnum * ShdrSize, "section header table");
            Section[] sections = ReadSections(new SpanReader(shdrBytes, path), shnum, path);
            for (int i = 0; i < sections.Length; i++)
            {
                if (sections[i].Type == ShtSymtab)
                {
                    hasSymtab = true;
                    ReadSymbols(file, sections, i, segments, fromDynsym: false, functions);
                }
                else if (sections[i].Type == ShtDynsym)
                {
                    hasDynsym = true;
                    ReadSymbols(file, sections, i, segments, fromDynsym: true, functions);
                }
            }
        }

        List<ElfSymbol> merged = Merge(functions);
        return new ElfImage(path, type == EtDyn, entry, interpreter, segments, merged, needed, soname, runPaths, hasSymtab, hasDynsym);
    }

    private readonly record struct Section(uint Type, long Offset, long Size, uint Link, long EntSize);

    private static Section[] ReadSections(SpanReader sh, int count, string path)
    {
        var sections = new Section[count];
        for (int i = 0; i < count; i++)
        {
            long at = (long)i * ShdrSize;
            sections[i] = new Section(
                sh.U32(at + 4, "sh_type"),
                ToOffset(path, sh.U64(at + 24, "sh_offset"), $"section {i} sh_offset"),
                ToOffset(path, sh.U64(at + 32, "sh_size"), $"section {i} sh_size"),
                sh.U32(at + 40, "sh_link"),
                ToOffset(path, sh.U64(at + 56, "sh_entsize"), $"section {i} sh_entsize"));
        }
        return sections;
    }

    private static void ReadSymbols(ElfFile file, Section[] sections, int index, List<LoadSegment> segments,
        bool fromDynsym, List<ElfSymbol> output)
    {
        string path = file.Path;
        Section table = sections[index];
        string what = fromDynsym ? ".dynsym" : ".symtab";
        if (table.EntSize != SymSize && table.EntSize != 0)
        {
            throw ElfFile.Malformed(path, $"{what} entries are {table.EntSize} bytes, expected {SymSize}");
        }
        long count = table.Size / SymSize;
        if (count > file.Limits.MaxSymbolsPerTable)
        {
            throw ElfFile.Malformed(path, $"{what} holds {count} symbols (limit {file.Limits.MaxSymbolsPerTable})");
        }
        if (table.Link >= sections.Length || sections[table.Link].Type != ShtStrtab)
        {
            throw ElfFile.Malformed(path, $"{what} links to section {table.Link}, which is not a string table");
        }
        Section strtab = sections[table.Link];
        byte[] symbols = file.Read(table.Offset, count * SymSize, what);
        byte[] strings = file.Read(strtab.Offset, strtab.Size, $"{what} string table");
        string?[]? versions = fromDynsym ? ReadHiddenVersionNames(file, sections, index, count) : null;

        var syms = new SpanReader(symbols, path);
        var strs = new SpanReader(strings, path);
        for (long i = 1; i < count; i++)
        {
            long at = i * SymSize;
            byte info = syms.U8(at + 4, "st_info");
            byte symType = (byte)(info & 0xf);
            ushort shndx = syms.U16(at + 6, "st_shndx");
            if ((symType != SttFunc && symType != SttGnuIfunc) || shndx == ShnUndef || (shndx >= ShnLoReserve && shndx != ShnXindex))
            {
                continue;
            }
            ulong value = syms.U64(at + 8, "st_value");
            ulong size = syms.U64(at + 16, "st_size");
            // Functions outside executable file bytes (e.g. a corrupt value) cannot be probed: leave them out.
            if (value == 0 || SegmentMath.SegmentContaining(segments, value) is not { Executable: true } segment)
            {
                continue;
            }
            long offset = segment.FileOffset + (long)(value - segment.Vaddr);
            string name = strs.CString(syms.U32(at, "st_name"), file.Limits.MaxNameLength, $"{what} symbol {i} name");
            if (name.Length == 0)
            {
                continue;
            }
            if (versions is not null && versions[i] is { } version)
            {
                // A hidden (non-default) version is only reachable by its versioned name, e.g. memcpy@GLIBC_2.2.5.
                name = name + "@" + version;
            }
            var binding = (info >> 4) switch { 0 => SymbolBinding.Local, 2 => SymbolBinding.Weak, _ => SymbolBinding.Global };
            output.Add(new ElfSymbol(name, value, size, offset, fromDynsym) { Binding = binding, IsIndirect = symType == SttGnuIfunc });
        }
    }

    /// <summary>
    /// For each .dynsym entry, the version name when that entry is a hidden (non-default) version, else null.
    /// Without this, libc's two memcpy definitions would both answer to "memcpy".
    /// </summary>
    private static string?[]? ReadHiddenVersionNames(ElfFile file, Section[] sections, int dynsymIndex, long count)
    {
        int versymIndex = Array.FindIndex(sections, s => s.Type == ShtGnuVersym && s.Link == dynsymIndex);
        if (versymIndex < 0)
        {
            return null;
        }
        string path = file.Path;
        Section versymSection = sections[versymIndex];
        long entries = Math.Min(count, versymSection.Size / 2);
        var versym = new SpanReader(file.Read(versymSection.Offset, entries * 2, ".gnu.version"), path);

        var names = new Dictionary<int, string>();
        int verdefIndex = Array.FindIndex(sections, s => s.Type == ShtGnuVerdef);
        if (verdefIndex >= 0)
        {
            Section verdefSection = sections[verdefIndex];
            if (verdefSection.Link < sections.Length && sections[verdefSection.Link].Type == ShtStrtab)
            {
                Section strtab = sections[verdefSection.Link];
                var verdef = new SpanReader(file.Read(verdefSection.Offset, verdefSection.Size, ".gnu.version_d"), path);
                var strs = new SpanReader(file.Read(strtab.Offset, strtab.Size, ".gnu.version_d strings"), path);
                long at = 0;
                // vd_next chains the entries; the bound on steps stops a cycle in a corrupt file.
                for (int step = 0; step < 65536 && at >= 0 && at < verdef.Length; step++)
                {
                    ushort ndx = verdef.U16(at + 4, "vd_ndx");
                    uint aux = verdef.U32(at + 12, "vd_aux");
                    uint next = verdef.U32(at + 16, "vd_next");
                    uint nameOffset = verdef.U32(at + aux, "vda_name");
                    names[ndx] = strs.CString(nameOffset, file.Limits.MaxNameLength, "version name");
                    if (next == 0)
                    {
                        break;
                    }
                    at += next;
                }
            }
        }

        var result = new string?[count];
        for (long i = 0; i < entries; i++)
        {
            ushort v = versym.U16(i * 2, "versym entry");
            if ((v & 0x8000) != 0)
            {
                result[i] = names.TryGetValue(v & 0x7fff, out string? n) ? n : $"VERSION{v & 0x7fff}";
            }
        }
        return result;
    }

    private static void ReadDynamic(ElfFile file, long offset, long size, List<LoadSegment> segments, List<string> needed,
        ref string? soname, List<string> runPaths)
    {
        string path = file.Path;
        var dyn = new SpanReader(file.Read(offset, size / DynSize * DynSize, "PT_DYNAMIC"), path);
        var neededOffsets = new List<ulong>();
        ulong? strtabVaddr = null, sonameOffset = null, rpathOffset = null, runpathOffset = null;
        ulong strsz = 0;
        for (long at = 0; at + DynSize <= dyn.Length; at += DynSize)
        {
            long tag = dyn.S64(at, "d_tag");
            ulong val = dyn.U64(at + 8, "d_val");
            switch (tag)
            {
                case DtNull: at = dyn.Length; break;
                case DtNeeded: neededOffsets.Add(val); break;
                case DtStrtab: strtabVaddr = val; break;
                case DtStrsz: strsz = val; break;
                case DtSoname: sonameOffset = val; break;
                case DtRpath: rpathOffset = val; break;
                case DtRunpath: runpathOffset = val; break;
            }
        }
        if (strtabVaddr is not { } vaddr || SegmentMath.VaddrToFileOffset(segments, vaddr) is not { } strOffset)
        {
            return;
        }
        long length = (long)Math.Min(strsz, (ulong)Math.Max(0, file.Length - strOffset));
        var strs = new SpanReader(file.Read(strOffset, length, "dynamic string table"), path);
        int max = file.Limits.MaxNameLength;
        foreach (ulong n in neededOffsets)
        {
            needed.Add(strs.CString((long)Math.Min(n, long.MaxValue), max, "DT_NEEDED"));
        }
        if (sonameOffset is { } so)
        {
            soname = strs.CString((long)Math.Min(so, long.MaxValue), max, "DT_SONAME");
        }
        if ((runpathOffset ?? rpathOffset) is { } rp)
        {
            runPaths.AddRange(strs.CString((long)Math.Min(rp, long.MaxValue), max, "DT_RUNPATH")
                .Split(':', StringSplitOptions.RemoveEmptyEntries));
        }
    }

    /// <summary>Dedupes (address, name) pairs seen in both tables and sorts by address, then name.</summary>
    private static List<ElfSymbol> Merge(List<ElfSymbol> all)
    {
        var best = new Dictionary<(ulong, string), ElfSymbol>();
        foreach (ElfSymbol s in all)
        {
            var key = (s.Value, s.Name);
            if (!best.TryGetValue(key, out ElfSymbol? existing))
            {
                best[key] = s;
                continue;
            }
            // Keep the .symtab entry, but the strongest binding and the larger size either table knows.
            ElfSymbol keep = existing.FromDynsym && !s.FromDynsym ? s : existing;
            ElfSymbol other = ReferenceEquals(keep, s) ? existing : s;
            best[key] = keep with
            {
                Size = Math.Max(keep.Size, other.Size),
                Binding = BindingRank(other.Binding) < BindingRank(keep.Binding) ? other.Binding : keep.Binding,
            };
        }
        var list = best.Values.ToList();
        list.Sort((a, b) => a.Value != b.Value ? a.Value.CompareTo(b.Value) : string.CompareOrdinal(a.Name, b.Name));
        return list;
    }

    private static long ToOffset(string path, ulong value, string what) =>
        value <= long.MaxValue ? (long)value : throw ElfFile.Malformed(path, $"{what} 0x{value:x} is out of range");

    private static int CheckedCount(string path, ulong value, int limit, string what) =>
        value <= (ulong)limit ? (int)value : throw ElfFile.Malformed(path, $"{value} {what} (limit {limit})");

    private static string MachineName(ushort machine) => machine switch
    {
        3 => "i386", 40 => "ARM", 183 => "AArch64", 243 => "RISC-V", 8 => "MIPS", 20 => "PowerPC", 21 => "PowerPC64",
        22 => "s390", 62 => "x86-64", _ => "unknown",
    };
}

/// <summary>
/// Address arithmetic over PT_LOAD segments, kept pure for testing. A file offset maps to the segment whose file
/// bytes hold it; addresses past a segment's file size (.bss) have no file offset.
/// </summary>
public static class SegmentMath
{
    /// <summary>The segment whose file-backed bytes hold <paramref name="vaddr"/>, or null.</summary>
    public static LoadSegment? SegmentContaining(IReadOnlyList<LoadSegment> segments, ulong vaddr)
    {
        foreach (LoadSegment s in segments)
        {
            if (vaddr >= s.Vaddr && vaddr - s.Vaddr < (ulong)s.FileSize)
            {
                return s;
            }
        }
        return null;
    }

    public static long? VaddrToFileOffset(IReadOnlyList<LoadSegment> segments, ulong vaddr)
    {
        foreach (LoadSegment s in segments)
        {
            if (vaddr >= s.Vaddr && vaddr - s.Vaddr < (ulong)s.FileSize)
            {
                return s.FileOffset + (long)(vaddr - s.Vaddr);
            }
        }
        return null;
    }

    /// <summary>
    /// The address of <paramref name="fileOffset"/> as linked. When segments share file bytes (older linkers map the
    /// page holding the end of .text again as data), the executable segment wins: probes are about code.
    /// </summary>
    public static ulong? FileOffsetToVaddr(IReadOnlyList<LoadSegment> segments, long fileOffset)
    {
        ulong? any = null;
        foreach (LoadSegment s in segments)
        {
            if (fileOffset >= s.FileOffset && fileOffset - s.FileOffset < s.FileSize)
            {
                ulong vaddr = s.Vaddr + (ulong)(fileOffset - s.FileOffset);
                if (s.Executable)
                {
                    return vaddr;
                }
                any ??= vaddr;
            }
        }
        return any;
    }

    public static bool IsExecutableFileOffset(IReadOnlyList<LoadSegment> segments, long fileOffset)
    {
        foreach (LoadSegment s in segments)
        {
            if (s.Executable && fileOffset >= s.FileOffset && fileOffset - s.FileOffset < s.FileSize)
            {
                return true;
            }
        }
        return false;
    }
}
