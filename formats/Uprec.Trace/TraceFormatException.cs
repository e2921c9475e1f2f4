namespace Uprec.Trace;

/// <summary>
/// A trace file that cannot be written or read: a missing directory, a file that is empty, truncated,
/// not Parquet, or not written by uprec. The message is one line and names the file.
/// </summary>
public sealed class TraceFormatException : Exception
{
    public TraceFormatException(string message) : base(message) { }
    public TraceFormatException(string message, Exception inner) : base(message, inner) { }
}
