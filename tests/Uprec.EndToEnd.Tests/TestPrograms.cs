namespace Uprec.EndToEnd.Tests;

/// <summary>How a test program is linked; the probe's file offset and load address differ.</summary>
public enum Linkage
{
    Pie,
    NoPie,
}

/// <summary>
/// Builds every program in testdata/ once per test run with gcc -O2, as PIE and as non-PIE,
/// into a temp directory (binaries are never committed).
/// </summary>
public sealed class TestPrograms : IDisposable
{
    private static readonly (string Source, string[] Flags)[] Sources =
    [
        ("firstinsn.c", []),
        ("threads.c", ["-pthread"]),
        ("longrun.c", []),
        ("globs.c", []),
        ("libcalls.c", []),
        ("passthru.c", []),
        // Issue 3 programs: probes that follow the file, return probes, argument filters.
        ("forkexec.c", []),
        ("forkexec_child.c", []), // exec'd by forkexec from the same directory
        ("dlreload.c", ["-ldl"]), // loads libdlplug.so from the same directory
        ("recursion.c", []),
        ("longjmp.c", []),
        ("sighandler.c", []),
        ("cxxthrow.cpp", []),
        ("argfilter.c", []),
        ("napper.c", []),
        ("rename.c", []),
        ("btrace.c", ["-rdynamic"]), // dladdr names main in its own backtrace
    ];

    private readonly TempDirectory _build = new("uprec-e2e-build");

    public TestPrograms()
    {
        foreach ((string source, string[] flags) in Sources)
        {
            foreach (Linkage linkage in Enum.GetValues<Linkage>())
            {
                string output = Path(System.IO.Path.GetFileNameWithoutExtension(source), linkage);
                string[] linkFlags = linkage == Linkage.Pie ? ["-fPIE", "-pie"] : ["-fno-pie", "-no-pie"];
                Compile(source, [.. linkFlags, "-o", output], flags);
            }
        }
        Compile("dlplug.c", ["-shared", "-fPIC", "-o", Library("libdlplug.so")], []);
    }

    /// <summary>Absolute path of the built program, e.g. Path("threads", Linkage.NoPie).</summary>
    public string Path(string name, Linkage linkage = Linkage.Pie) =>
        _build.File(linkage == Linkage.Pie ? name : $"{name}-nopie");

    /// <summary>Absolute path of a built shared library, e.g. Library("libdlplug.so").</summary>
    public string Library(string fileName) => _build.File(fileName);

    public string BuildDirectory => _build.FullName;

    private static void Compile(string source, string[] outputFlags, string[] flags)
    {
        string compiler = source.EndsWith(".cpp", StringComparison.Ordinal) ? "g++" : "gcc";
        List<string> args = ["-O2", "-g", "-Wall", .. outputFlags, System.IO.Path.Combine(Paths.TestData, source), .. flags];
        ProcessResult result = Processes.Run(compiler, args);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"{compiler} {string.Join(' ', args)} failed:\n{result}");
        }
    }

    public void Dispose() => _build.Dispose();
}

/// <summary>
/// All end-to-end tests share one build and run one at a time: they compete for two CPUs with
/// a tracer that stops the target on every hit, and parallel runs only make each slower.
/// </summary>
[CollectionDefinition(Name)]
public sealed class EndToEndCollection : ICollectionFixture<TestPrograms>
{
    public const string Name = "end-to-end";
}
