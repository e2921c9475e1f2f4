namespace Uprec.Reporting.Rendering;

/// <summary>Turns a computed <see cref="Report"/> into text. Renderers format; they never compute.</summary>
public interface IReportRenderer
{
    void Render(Report report, TextWriter output);
}

public static class ReportRenderers
{
    public const string Names = "table, json, csv, markdown";

    public static IReportRenderer Create(string format) => format.Trim().ToLowerInvariant() switch
    {
        "table" => new TableRenderer(),
        "json" => new JsonRenderer(),
        "csv" => new CsvRenderer(),
        "markdown" or "md" => new MarkdownRenderer(),
        _ => throw new ReportException($"unknown format '{format}' (valid: {Names})"),
    };
}
