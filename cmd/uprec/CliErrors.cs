namespace Uprec.Cli;

/// <summary>Bad input found by the CLI itself (an option value, a combination of options).</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Exit codes every verb shares: 0 ok, 1 regression found (diff), 2 usage or input error.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int Regression = 1;
    public const int UsageError = 2;
    /// <summary>An unexpected failure inside uprec (a bug): printed in full.</summary>
    public const int InternalError = 70;
}

/// <summary>
/// Two tiers of errors: anticipated ones (bad input, missing files, a corrupt trace) print one line
/// "uprec: error: ..." and exit 2; anything else is a bug and prints in full.
/// </summary>
public static class CliErrors
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (IsExpected(e))
        {
            Console.Error.WriteLine($"uprec: error: {OneLine(e.Message)}");
            return ExitCodes.UsageError;
        }
        catch (Exception e)
        {
            // A bug in uprec: everything we know, so it can be reported and fixed.
            Console.Error.WriteLine($"uprec: internal error: {e}");
            return ExitCodes.InternalError;
        }
    }

    /// <summary>Wraps a verb's action so expected errors thrown inside it follow the same contract.</summary>
    public static int Guard(Func<int> action) => Run(action);

    public static bool IsExpected(Exception e) => e switch
    {
        UsageException => true,
        Uprec.Symbols.SymbolException or Uprec.Symbols.ProbeSpecException => true,
        Uprec.Probing.ProbingException => true,
        Uprec.Trace.TraceFormatException or Uprec.Reporting.ReportException or Uprec.Filters.FilterException => true,
        // Each library's anticipated failures (typed, messages written for users) are listed here.
        FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException => true,
        _ => false,
    };

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
