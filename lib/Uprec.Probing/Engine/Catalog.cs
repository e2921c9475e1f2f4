using Uprec.Filters;
using Uprec.Native;
using Uprec.Symbols;
using Uprec.Trace;

namespace Uprec.Probing.Engine;

/// <summary>The identity of a mapped file as /proc/PID/maps shows it: device and inode, as the kernel keys uprobes.</summary>
internal readonly record struct FileKey(uint Major, uint Minor, ulong Inode)
{
    public static FileKey Of(MapEntry m) => new(m.DevMajor, m.DevMinor, m.Inode);

    public static FileKey? OfPath(string path)
    {
        if (Unistd.stat(path, out var st) != 0) return null;
        return new FileKey(Unistd.major(st.st_dev), Unistd.minor(st.st_dev), st.st_ino);
    }
}

/// <summary>One user probe (one -e spec resolved to one function); what the trace's ProbeMeta reports.</summary>
internal sealed class Probe
{
    public required int Id { get; init; }
    /// <summary>Stands for a spec whose library was not found before the start, until it is mapped.</summary>
    public bool Placeholder { get; init; }
    public required ProbeSpec Spec { get; init; }
    public required string Name { get; init; }
    public string? Binary { get; set; }
    public string? Symbol { get; init; }
    public long FileOffset { get; set; }
    /// <summary>The --filter that followed this probe's -e, if any.</summary>
    public Filter? Filter { get; init; }
    /// <summary>Whether each hit needs the registers (captures, or filter terms over hit fields); decided once.</summary>
    public bool NeedsRegisters => _needsRegisters ??= HitFields.NeedsRegisters(this);
    private bool? _needsRegisters;
    /// <summary>Exact hits, counted by the tracer on every stop (the trap path cannot drop a hit).</summary>
    public long Count;
    /// <summary>Exact hits counted by the trampolines' counters in the targets (set when the recording ends).</summary>
    public long InProcessCount;
    /// <summary>In-process samples that reached the trace; InProcessCount minus this is what rings dropped.</summary>
    public long InProcessRows;
    public bool Installed { get; set; }
    public string HitPath { get; set; } = "none";
    public string? Note { get; set; }

    public ProbeMeta ToMeta() => new()
    {
        Id = Id, Name = Name, Spec = Spec.Text, Binary = Binary, Symbol = Symbol, FileOffset = FileOffset,
        IsReturn = Spec.IsReturn, HitPath = Installed ? HitPath : "none", HitPathReason = Note,
        Installed = Installed, Count = Count + InProcessCount, Lost = Math.Max(0, InProcessCount - InProcessRows), Filter = Filter?.Text,
        Args = Spec.Args.Select(a => new ArgMeta(a.Name, a.Type.ToString().ToLowerInvariant(), a.SourceRegister))
            .Concat(Spec.IsReturn ? [new ArgMeta(TraceColumns.ReturnValue, "s64", "rax")] : []).ToList(),
    };
}

/// <summary>A probe placed on one (file, offset): the kernel's uprobe key. Several probes may share it.</summary>
internal sealed record FileSite(Probe Probe, long FileOffset, long FunctionFileOffset, ulong FunctionSize);

/// <summary>All probe sites in one file, found once; applied to every traced process that maps that file.</summary>
internal sealed class FileProbes(FileKey key, string path, ElfImage image)
{
    public FileKey Key { get; } = key;
    public string Path { get; } = path;
    public ElfImage Image { get; } = image;
    public List<FileSite> Sites { get; } = [];
}

/// <summary>
/// Probes keyed by file, not by pid (the seed's point): resolved before the program starts where the
/// binary is known, and on first sight of a mapping for short library names that were not found up front.
/// </summary>
internal sealed class Catalog
{
    private readonly Dictionary<FileKey, FileProbes> _byFile = [];
    private readonly List<ProbeSpec> _pendingShortNames = [];
    private readonly HashSet<FileKey> _checkedKeys = [];
    private readonly Dictionary<ProbeSpec, Filter?> _filters = new(ReferenceEqualityComparer.Instance);

    public List<Probe> Probes { get; } = [];
    private int _nextId;

    /// <summary>Raised for probes found while tracing (a glob over a library resolved when first mapped).</summary>
    public event Action<Probe>? ProbeAdded;

    public IEnumerable<FileProbes> Files => _byFile.Values;

    /// <summary>Resolves every spec it can now; throws SymbolException for unknown symbols and missing binaries.</summary>
    public static Catalog Build(IReadOnlyList<ProbeSpec> specs, IReadOnlyList<Filter?> filters, string? programPath)
    {
        var catalog = new Catalog();
        for (int i = 0; i < specs.Count; i++)
        {
            ProbeSpec spec = specs[i];
            Filter? filter = i < filters.Count ? filters[i] : null;
            filter?.Check(HitFields.For(spec));
            catalog._filters[spec] = filter;
            string? path;
            if (BinaryLocator.IsShortLibraryName(spec.Binary))
            {
                path = BinaryLocator.FindLibrary(spec.Binary, programPath);
                if (path is null)
                {
                    // Perhaps loaded later with dlopen from a path we cannot guess: resolved when mapped.
                    catalog._pendingShortNames.Add(spec);
                    catalog.Probes.Add(new Probe
                    {
                        Id = catalog._nextId++, Placeholder = true, Spec = spec, Name = spec.DisplayName, Binary = spec.Binary,
                        Symbol = spec.Symbol, FileOffset = spec.IsFileOffset ? spec.Offset : 0, Filter = filter,
                        Note = $"library '{spec.Binary}' was never loaded",
                    });
                    continue;
                }
            }
            else
            {
                path = spec.Binary;
            }
            ElfImage image = ElfImage.Load(path);
            catalog.AddResolved(spec, image, Path.GetFullPath(path));
        }
        return catalog;
    }

    private void AddResolved(ProbeSpec spec, ElfImage image, string fullPath)
    {
        FileKey key = FileKey.OfPath(fullPath) ?? throw new SymbolException($"cannot stat '{fullPath}'");
        if (!_byFile.TryGetValue(key, out FileProbes? file))
        {
            file = new FileProbes(key, fullPath, image);
            _byFile[key] = file;
        }
        IReadOnlyList<ResolvedSite> sites = ProbeResolver.Resolve(spec, image);
        // A spec that waited for its library is now real: its stand-in leaves the report.
        Probes.RemoveAll(p => p.Placeholder && ReferenceEquals(p.Spec, spec));
        foreach (ResolvedSite site in sites)
        {
            // The same function in another file with the same short name keeps one probe.
            Probe? probe = Probes.FirstOrDefault(p => ReferenceEquals(p.Spec, spec) && p.Symbol == site.SymbolName);
            if (probe is null)
            {
                probe = new Probe
                {
                    Id = _nextId++, Spec = spec, Name = site.ProbeName, Symbol = site.SymbolName, Filter = _filters[spec],
                };
                Probes.Add(probe);
                ProbeAdded?.Invoke(probe);
            }
            if (spec.IsReturn && site.FileOffset != site.FunctionFileOffset)
                throw new ProbingException($"'{spec.Text}': a %return probe must be at a function's entry, not inside it");
            probe.Binary = fullPath;
            probe.FileOffset = site.FileOffset;
            probe.Note = null;
            file.Sites.Add(new FileSite(probe, site.FileOffset, site.FunctionFileOffset, site.FunctionSize));
        }
    }

    /// <summary>The probes for the file behind a mapping, resolving pending short library names on first sight.</summary>
    public FileProbes? ForMapping(MapEntry mapping)
    {
        var key = FileKey.Of(mapping);
        if (_byFile.TryGetValue(key, out FileProbes? file)) return file;
        if (_pendingShortNames.Count == 0 || mapping.Path is null || !_checkedKeys.Add(key)) return null;
        foreach (ProbeSpec spec in _pendingShortNames.ToList())
        {
            if (!BinaryLocator.MatchesShortName(spec.Binary, mapping.Path)) continue;
            try
            {
                AddResolved(spec, ElfImage.Load(mapping.Path), mapping.Path);
                _pendingShortNames.Remove(spec);
            }
            catch (SymbolException e)
            {
                foreach (Probe p in Probes.Where(p => ReferenceEquals(p.Spec, spec))) p.Note = e.Message;
            }
        }
        return _byFile.GetValueOrDefault(key);
    }
}
