namespace Uprec.Reporting;

/// <summary>Bad report/diff/script input the user can fix: an unknown sort key, a glob matching nothing, a bad rule.</summary>
public sealed class ReportException(string message) : Exception(message);
