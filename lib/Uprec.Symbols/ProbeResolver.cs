namespace Uprec.Symbols;

/// <summary>
/// One place a probe applies to in one binary. <see cref="FileOffset"/> is the probed byte;
/// <see cref="FunctionFileOffset"/>/<see cref="FunctionSize"/> bound the enclosing function (the engine must not
/// patch across it; size 0 when unknown); <see cref="Vaddr"/> is the probed address as linked.
/// </summary>
public sealed record ResolvedSite(string ProbeName, string SymbolName, long FileOffset, long FunctionFileOffset, ulong FunctionSize, ulong Vaddr)
{
    /// <summary>
    /// The site is an STT_GNU_IFUNC resolver (e.g. libc's memcpy, strlen): it runs once at load time, so a probe
    /// here does not count calls of the function. The engine should warn, or probe the implementation chosen at run time.
    /// </summary>
    public bool IsIfuncResolver { get; init; }
}

/// <summary>Resolves a parsed probe spec against one binary into the sites it applies to.</summary>
public static class ProbeResolver
{
    /// <summary>
    /// A symbol gives its definitions (static functions may share a name), a glob every matching function (one site
    /// per address: aliases such as malloc/__libc_malloc are one function), SYMBOL+OFF requires OFF &lt; size, and
    /// 0xOFFSET is a file offset that must lie in an executable segment. Unknown names throw
    /// <see cref="SymbolException"/> with close names.
    /// </summary>
    public static IReadOnlyList<ResolvedSite> Resolve(ProbeSpec spec, ElfImage image)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(image);
        if (spec.IsFileOffset || spec.Symbol is null)
        {
            return [ResolveFileOffset(spec, image)];
        }

        IReadOnlyList<ElfSymbol> matches = spec.IsGlob
            ? SymbolCatalog.Match(image, spec.Symbol)
            : image.FindSymbols(spec.Symbol);
        if (matches.Count == 0)
        {
            throw UnknownSymbol(spec.Symbol, image, spec.Text);
        }

        var sites = new List<ResolvedSite>();
        var seenOffsets = new HashSet<long>();
        ElfSymbol? tooSmall = null;
        foreach (ElfSymbol f in matches)
        {
            if (spec.Offset > 0 && (ulong)spec.Offset >= f.Size)
            {
                tooSmall ??= f;
                continue;
            }
            long site = f.FileOffset + spec.Offset;
            if (!seenOffsets.Add(site))
            {
                continue;
            }
            string symbolName = spec.Offset == 0 ? f.Name : $"{f.Name}+{ProbeSpecParser.FormatHex(spec.Offset)}";
            sites.Add(new ResolvedSite(spec.Name ?? symbolName, symbolName, site, f.FileOffset, f.Size, f.Value + (ulong)spec.Offset)
            {
                IsIfuncResolver = f.IsIndirect,
            });
        }
        if (sites.Count == 0 && tooSmall is not null)
        {
            string size = tooSmall.Size == 0 ? "has no recorded size" : $"is only {tooSmall.Size} bytes long";
            throw new SymbolException(
                $"probe '{spec.Text}': offset +{spec.Offset} is outside {tooSmall.Name}, which {size}; use an offset below its size (see 'uprec list {image.Path} {tooSmall.Name}')");
        }
        return sites;
    }

    private static ResolvedSite ResolveFileOffset(ProbeSpec spec, ElfImage image)
    {
        long offset = spec.Offset;
        if (!image.IsExecutableFileOffset(offset) || image.FileOffsetToVaddr(offset) is not { } vaddr)
        {
            string code = string.Join(", ", image.Segments.Where(s => s.Executable && s.FileSize > 0)
                .Select(s => $"0x{s.FileOffset:x}-0x{s.FileOffset + s.FileSize:x}"));
            throw new SymbolException(
                $"probe '{spec.Text}': file offset 0x{offset:x} is not in the code of {image.Path} (executable file ranges: {(code.Length == 0 ? "none" : code)})");
        }
        ElfSymbol? function = image.FunctionContaining(vaddr);
        string symbolName = function is null
            ? ProbeSpecParser.FormatHex(offset)
            : vaddr == function.Value ? function.Name : $"{function.Name}+{ProbeSpecParser.FormatHex((long)(vaddr - function.Value))}";
        return new ResolvedSite(
            spec.Name ?? ProbeSpecParser.FormatHex(offset), symbolName, offset,
            function?.FileOffset ?? offset, function?.Size ?? 0, vaddr)
        {
            IsIfuncResolver = function?.IsIndirect ?? false,
        };
    }

    /// <summary>The error for a name or glob that matches nothing, with up to three close names.</summary>
    public static SymbolException UnknownSymbol(string symbol, ElfImage image, string? specText = null)
    {
        string prefix = specText is null ? "" : $"probe '{specText}': ";
        if (image.Functions.Count == 0)
        {
            string why = image.HasDynsym ? ".symtab stripped, .dynsym defines no function" : "stripped of .symtab and .dynsym";
            return new SymbolException(
                $"{prefix}{image.Path} has no function symbols ({why}); probe a file offset instead, e.g. '{image.Path}:0x{FirstCodeOffset(image):x}'");
        }
        IReadOnlyList<string> close = Suggestions.Find(symbol, image.Functions.Select(f => f.Name));
        string kind = Glob.HasWildcards(symbol) ? "no function matches" : "no function named";
        string hint = close.Count > 0
            ? $"; did you mean: {string.Join(", ", close)}"
            : $"; see 'uprec list {image.Path}'";
        return new SymbolException($"{prefix}{kind} '{symbol}' in {image.Path}{hint}");
    }

    private static long FirstCodeOffset(ElfImage image) =>
        image.Segments.FirstOrDefault(s => s.Executable && s.FileSize > 0)?.FileOffset ?? 0;
}

/// <summary>Function listings for <c>uprec list</c> and glob resolution.</summary>
public static class SymbolCatalog
{
    /// <summary>Functions whose name matches <paramref name="glob"/> (every function when null), sorted by file offset then name.</summary>
    public static IReadOnlyList<ElfSymbol> Match(ElfImage image, string? glob)
    {
        if (glob is not null && Glob.Validate(glob) is { } error)
        {
            throw new SymbolException($"'{glob}' is not a valid glob: {error}");
        }
        return image.Functions
            .Where(f => glob is null || Glob.IsMatch(glob, f.Name))
            .OrderBy(f => f.FileOffset).ThenBy(f => f.Name, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>
    /// Like <see cref="Match"/> for the list verb, but an empty result is an error with suggestions, so that a
    /// typo is not mistaken for "the function does not exist".
    /// </summary>
    public static IReadOnlyList<ElfSymbol> List(ElfImage image, string? glob)
    {
        IReadOnlyList<ElfSymbol> found = Match(image, glob);
        if (found.Count == 0)
        {
            throw ProbeResolver.UnknownSymbol(glob ?? "*", image);
        }
        return found;
    }
}
