namespace Uprec.Symbols;

/// <summary>
/// Upper bounds applied while reading untrusted ELF files, so that a corrupt header cannot make uprec
/// allocate gigabytes or loop for minutes. Real binaries are far below every limit (libc: ~3,000 dynamic
/// symbols; a large C++ program with debug symbols: a few million).
/// </summary>
public sealed record SymbolLimits
{
    public static SymbolLimits Default { get; } = new();

    public int MaxProgramHeaders { get; init; } = 4096;
    public int MaxSections { get; init; } = 1 << 20;
    public int MaxSymbolsPerTable { get; init; } = 16 << 20;
    /// <summary>Largest single table (symbols, strings, dynamic section) read into memory.</summary>
    public long MaxTableBytes { get; init; } = 1L << 30;
    public int MaxNameLength { get; init; } = 64 * 1024;
    public int MaxInterpreterLength { get; init; } = 4096;
}
