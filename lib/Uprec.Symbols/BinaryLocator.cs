namespace Uprec.Symbols;

/// <summary>
/// Turns BINARY as the user wrote it into a file: a path, a program on PATH, or a library short name
/// ("libc", "libpthread", "libm.so.6") matched against mapped paths or found on the library search path.
/// </summary>
public static class BinaryLocator
{
    /// <summary>The multiarch and classic directories the dynamic loader searches on x86-64 Debian/Ubuntu/Fedora.</summary>
    public static IReadOnlyList<string> DefaultLibraryDirectories { get; } =
    [
        "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
        "/usr/local/lib",
    ];

    /// <summary>
    /// True when <paramref name="mappedPath"/>'s file name is <paramref name="shortName"/>, or starts with
    /// shortName + ".so" or shortName + "-": "libc" matches libc.so.6 and libc-2.31.so but not libcrypto.so.3.
    /// </summary>
    public static bool MatchesShortName(string shortName, string mappedPath)
    {
        if (string.IsNullOrEmpty(shortName) || string.IsNullOrEmpty(mappedPath))
        {
            return false;
        }
        string name = System.IO.Path.GetFileName(mappedPath);
        return name == shortName
            || name.StartsWith(shortName + ".so", StringComparison.Ordinal)
            || name.StartsWith(shortName + "-", StringComparison.Ordinal);
    }

    /// <summary>A BINARY without '/' that is not a file in the current directory names a library (or a program on PATH).</summary>
    public static bool IsShortLibraryName(string binary) =>
        !string.IsNullOrEmpty(binary) && !binary.Contains('/') && !File.Exists(binary);

    /// <summary>
    /// Resolves BINARY outside a running target (the list verb, checks before launch): an existing file as given;
    /// else a library short name (see <see cref="FindLibrary(string, string?)"/>); else a program on PATH.
    /// Throws <see cref="SymbolException"/> naming what was tried.
    /// </summary>
    public static string Locate(string binary, string? forExecutable = null)
    {
        if (string.IsNullOrEmpty(binary))
        {
            throw new SymbolException("no binary given; name an executable, a shared library or a library short name such as 'libc'");
        }
        if (File.Exists(binary) || Directory.Exists(binary) || binary.Contains('/'))
        {
            // Paths are reported by ElfImage.Load with the precise reason (missing, a directory, not ELF...).
            return binary;
        }
        return FindLibrary(binary, forExecutable) ?? ResolveProgram(binary)
            ?? throw new SymbolException(
                $"'{binary}' is not a file, a library on the search path ({string.Join(", ", DefaultLibraryDirectories.Take(2))}, ...) or a program on PATH; give a path such as './{binary}'");
    }

    /// <summary>
    /// Finds the program execvp would run for <paramref name="command"/>: a name with '/' is taken as a path, any
    /// other is searched on PATH (an empty PATH entry means the current directory). Returns a full path, or null.
    /// </summary>
    public static string? ResolveProgram(string command) =>
        ResolveProgram(command, Environment.GetEnvironmentVariable("PATH"));

    public static string? ResolveProgram(string command, string? pathVariable)
    {
        if (string.IsNullOrEmpty(command))
        {
            return null;
        }
        if (command.Contains('/'))
        {
            return IsExecutableFile(command) ? System.IO.Path.GetFullPath(command) : null;
        }
        foreach (string dir in (pathVariable ?? "/usr/local/bin:/usr/bin:/bin").Split(':'))
        {
            string candidate = System.IO.Path.Combine(dir.Length == 0 ? "." : dir, command);
            if (IsExecutableFile(candidate))
            {
                return System.IO.Path.GetFullPath(candidate);
            }
        }
        return null;
    }

    /// <summary>
    /// Finds the library a short name means before the target runs, so that an unknown symbol in libc is reported
    /// before anything starts. Searched in order: the executable's DT_NEEDED entries (through its RUNPATH,
    /// LD_LIBRARY_PATH and the system directories), then any x86-64 ELF library in those directories whose file
    /// name matches. Returns a full path, or null.
    /// </summary>
    public static string? FindLibrary(string shortName, string? forExecutable) =>
        FindLibrary(shortName, forExecutable, Environment.GetEnvironmentVariable("LD_LIBRARY_PATH"), SystemLibraryDirectories());

    public static string? FindLibrary(string shortName, string? forExecutable, string? ldLibraryPath, IReadOnlyList<string> systemDirs)
    {
        if (string.IsNullOrEmpty(shortName) || shortName.Contains('/'))
        {
            return null;
        }
        var dirs = new List<string>();
        ElfImage? exe = null;
        if (forExecutable is not null)
        {
            try
            {
                exe = ElfImage.Load(forExecutable);
            }
            catch (SymbolException)
            {
                // The caller reports a bad executable itself; here it only narrows the search.
            }
        }
        if (exe is not null)
        {
            string origin = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(exe.Path)) ?? "/";
            dirs.AddRange(exe.RunPaths.Select(p => p.Replace("${ORIGIN}", origin).Replace("$ORIGIN", origin)));
        }
        if (!string.IsNullOrEmpty(ldLibraryPath))
        {
            dirs.AddRange(ldLibraryPath.Split(':', StringSplitOptions.RemoveEmptyEntries));
        }
        dirs.AddRange(systemDirs);
        List<string> searchDirs = dirs.Distinct(StringComparer.Ordinal).Where(Directory.Exists).ToList();

        if (exe is not null)
        {
            foreach (string needed in exe.Needed.Where(n => MatchesShortName(shortName, n)))
            {
                foreach (string dir in searchDirs)
                {
                    string candidate = System.IO.Path.Combine(dir, needed);
                    if (IsLoadableLibrary(candidate))
                    {
                        return System.IO.Path.GetFullPath(candidate);
                    }
                }
            }
        }

        foreach (string dir in searchDirs)
        {
            string[] files;
            try
            {
                files = Directory.GetFiles(dir);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            // Exact name first, then the runtime name (libc.so.6) before the development symlink (libc.so, often
            // a linker script that is not ELF at all), then libfoo-1.2.so styles.
            foreach (string candidate in files.Where(f => MatchesShortName(shortName, f)).OrderBy(f => Rank(shortName, f)).ThenBy(f => f, StringComparer.Ordinal))
            {
                if (IsLoadableLibrary(candidate))
                {
                    return candidate;
                }
            }
        }
        return null;
    }

    /// <summary>The default directories plus those listed in /etc/ld.so.conf.d/*.conf (without includes).</summary>
    public static IReadOnlyList<string> SystemLibraryDirectories()
    {
        var dirs = new List<string>();
        try
        {
            if (Directory.Exists("/etc/ld.so.conf.d"))
            {
                foreach (string conf in Directory.GetFiles("/etc/ld.so.conf.d", "*.conf").Order(StringComparer.Ordinal))
                {
                    dirs.AddRange(File.ReadLines(conf).Select(l => l.Trim()).Where(l => l.StartsWith('/')));
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // An unreadable configuration leaves the defaults, which cover the usual layouts.
        }
        dirs.AddRange(DefaultLibraryDirectories);
        return dirs.Distinct(StringComparer.Ordinal).ToList();
    }

    private static int Rank(string shortName, string path)
    {
        string name = System.IO.Path.GetFileName(path);
        if (name == shortName)
        {
            return 0;
        }
        if (name.StartsWith(shortName + ".so.", StringComparison.Ordinal))
        {
            return 1;
        }
        return name == shortName + ".so" ? 3 : 2;
    }

    private static bool IsLoadableLibrary(string path)
    {
        try
        {
            return File.Exists(path) && ElfImage.Load(path) is { } image && image.Segments.Count > 0;
        }
        catch (SymbolException)
        {
            return false;
        }
    }

    private static bool IsExecutableFile(string path)
    {
        try
        {
            if (!File.Exists(path))
            {
                return false;
            }
            if (OperatingSystem.IsWindows())
            {
                return true;
            }
            const UnixFileMode anyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
            return (File.GetUnixFileMode(path) & anyExecute) != 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
