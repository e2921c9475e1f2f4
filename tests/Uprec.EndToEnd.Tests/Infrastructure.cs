using System.Diagnostics;
using System.Text;

namespace Uprec.EndToEnd.Tests;

/// <summary>What a finished process left behind.</summary>
public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>Runs child processes with captured output and a hard time limit.</summary>
public static class Processes
{
    /// <summary>
    /// A guard against a hung tracer or target, not a performance expectation: the slowest
    /// recording here takes a few seconds even on the trap path.
    /// </summary>
    public static readonly TimeSpan Limit = TimeSpan.FromMinutes(3);

    private static readonly TimeSpan StreamGrace = TimeSpan.FromSeconds(20);

    public static ProcessStartInfo StartInfo(string file, IEnumerable<string> args, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Directory.GetCurrentDirectory(),
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (string arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        return info;
    }

    public static ProcessResult Run(string file, IEnumerable<string> args, string stdin = "", string? workingDirectory = null)
    {
        using var process = Process.Start(StartInfo(file, args, workingDirectory))
            ?? throw new InvalidOperationException($"could not start {file}");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        try
        {
            process.StandardInput.Write(stdin);
            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The process exited without reading its input (an error case): nothing to deliver.
        }
        return Finish(process, stdout, stderr, $"{file} {string.Join(' ', args)}");
    }

    public static ProcessResult Finish(Process process, Task<string> stdout, Task<string> stderr, string what)
    {
        if (!process.WaitForExit(Limit))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(StreamGrace);
            Task.WaitAll([stdout, stderr], StreamGrace);
            Assert.Fail($"'{what}' did not finish within {Limit}; killed.\nstdout:\n{Peek(stdout)}\nstderr:\n{Peek(stderr)}");
        }
        // The pipes reach end-of-file only when every process holding them has gone: if the
        // output stays open after the exit, something the process started outlived it.
        if (!Task.WaitAll([stdout, stderr], StreamGrace))
        {
            Assert.Fail($"'{what}' exited ({process.ExitCode}) but its stdout/stderr stayed open for {StreamGrace}: "
                + "a process it started is still running and holds them");
        }
        return new ProcessResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    private static string Peek(Task<string> stream) => stream.IsCompletedSuccessfully ? stream.Result : "(still open)";

    /// <summary>Sends a signal to one process (not its group), as a user typing kill would.</summary>
    public static void Signal(int pid, string signalName)
    {
        ProcessResult kill = Run("kill", ["-s", signalName, pid.ToString()]);
        Assert.True(kill.ExitCode == 0, $"kill -s {signalName} {pid} failed: {kill}");
    }
}

/// <summary>Where the repository and the uprec build are, seen from the test output directory.</summary>
public static class Paths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string TestData => Path.Combine(RepoRoot, "testdata");

    /// <summary>The test project references cmd/uprec, so uprec.dll is copied next to the tests.</summary>
    public static string UprecDll => Path.Combine(AppContext.BaseDirectory, "uprec.dll");

    /// <summary>The dotnet host running these tests (set by the dotnet CLI), else the one on PATH.</summary>
    public static string DotnetHost =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Perf.sln")) && Directory.Exists(Path.Combine(dir.FullName, "testdata")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Perf.sln with a testdata folder above {AppContext.BaseDirectory}");
    }
}

/// <summary>A directory under the system temp path that the current user can write, removed on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory(string prefix)
    {
        FullName = Path.Combine(Path.GetTempPath(), $"{prefix}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(FullName);
    }

    public string FullName { get; }

    public string File(string name) => Path.Combine(FullName, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(FullName, recursive: true);
        }
        catch (IOException)
        {
            // A process still holding a file is not a test failure; the temp dir is reclaimed later.
        }
    }
}
