using Uprec.Reporting;

namespace Uprec.Cli;

/// <summary>
/// A one-line progress display on stderr, redrawn at most once a second and only when stderr is a
/// terminal; nothing at all when redirected, so scripts and CI logs stay clean.
/// </summary>
public sealed class ReportProgressWriter : IProgress<ReadProgress>, IDisposable
{
    private readonly TextWriter _terminal;
    private long _lastDraw = Environment.TickCount64;
    private bool _drawn;

    private ReportProgressWriter(TextWriter terminal)
    {
        _terminal = terminal;
    }

    /// <summary>Null when stderr is redirected.</summary>
    public static ReportProgressWriter? ForConsole() =>
        Console.IsErrorRedirected ? null : new ReportProgressWriter(Console.Error);

    public void Report(ReadProgress p)
    {
        long now = Environment.TickCount64;
        // The first second stays quiet: short reports never flash a progress line.
        if (now - _lastDraw < 1000 || p.RowGroupsDone == p.RowGroupsTotal)
        {
            return;
        }
        _lastDraw = now;
        double percent = p.RowsTotal == 0 ? 100 : 100.0 * p.RowsDone / p.RowsTotal;
        _terminal.Write($"\ruprec: reading {p.RowsDone:N0} / {p.RowsTotal:N0} rows ({percent:F0}%)   ");
        _drawn = true;
    }

    public void Dispose()
    {
        if (_drawn)
        {
            _terminal.Write("\r" + new string(' ', 70) + "\r");
            _drawn = false;
        }
    }
}
