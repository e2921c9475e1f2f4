namespace Uprec.Reporting;

/// <summary>Expands -i values: a path, or a glob in the file-name part (`runs/*.parquet`).</summary>
public static class TraceInputs
{
    public static IReadOnlyList<string> Expand(IEnumerable<string> patterns)
    {
        var result = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string pattern in patterns)
        {
            string name = Path.GetFileName(pattern);
            if (name.IndexOfAny(['*', '?', '[']) < 0)
            {
                // A plain path is passed through; the reader reports it if it is missing.
                if (seen.Add(Path.GetFullPath(pattern)))
                {
                    result.Add(pattern);
                }
                continue;
            }
            string directory = Path.GetDirectoryName(pattern) is { Length: > 0 } d ? d : ".";
            if (directory.IndexOfAny(['*', '?', '[']) >= 0)
            {
                throw new ReportException($"input '{pattern}': globs are supported in the file name only, not in directories");
            }
            if (!Directory.Exists(directory))
            {
                throw new ReportException($"input '{pattern}': directory '{directory}' does not exist");
            }
            var glob = new Uprec.Filters.Glob(name);
            string[] matches = Directory.EnumerateFiles(directory)
                .Where(f => glob.IsMatch(Path.GetFileName(f)) && !Path.GetFileName(f).StartsWith('.'))
                .Order(StringComparer.Ordinal)
                .ToArray();
            if (matches.Length == 0)
            {
                throw new ReportException($"input '{pattern}' matches no file");
            }
            foreach (string match in matches)
            {
                if (seen.Add(Path.GetFullPath(match)))
                {
                    result.Add(match);
                }
            }
        }
        if (result.Count == 0)
        {
            throw new ReportException("no input trace given");
        }
        return result;
    }
}
