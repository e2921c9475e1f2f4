namespace Uprec.Symbols;

/// <summary>Close names for a misspelled symbol: edit distance first, then names containing (or contained in) the query.</summary>
public static class Suggestions
{
    public static IReadOnlyList<string> Find(string query, IEnumerable<string> candidates, int max = 3)
    {
        string q = query.Trim('*', '?');
        if (q.Length == 0)
        {
            return [];
        }
        int threshold = Math.Max(2, q.Length / 3);
        var scored = new List<(int Score, string Name)>();
        foreach (string name in candidates.Distinct(StringComparer.Ordinal))
        {
            int distance = Distance(q, name, threshold);
            if (distance <= threshold)
            {
                scored.Add((distance, name));
            }
            else if (q.Length >= 3 && (name.Contains(q, StringComparison.OrdinalIgnoreCase)
                     || name.Length >= 3 && q.Contains(name, StringComparison.OrdinalIgnoreCase)))
            {
                // Substring hits rank after every close spelling; shorter names first (the likelier intent).
                scored.Add((threshold + 1 + Math.Abs(name.Length - q.Length), name));
            }
        }
        return scored.OrderBy(s => s.Score).ThenBy(s => s.Name, StringComparer.Ordinal)
            .Take(max).Select(s => s.Name).ToList();
    }

    /// <summary>Case-insensitive Levenshtein distance, giving up (returning limit+1) once it exceeds limit.</summary>
    public static int Distance(string a, string b, int limit = int.MaxValue)
    {
        if (Math.Abs(a.Length - b.Length) > limit)
        {
            return limit == int.MaxValue ? limit : limit + 1;
        }
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            int rowMin = i;
            char ca = char.ToLowerInvariant(a[i - 1]);
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = ca == char.ToLowerInvariant(b[j - 1]) ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
                rowMin = Math.Min(rowMin, current[j]);
            }
            if (rowMin > limit)
            {
                return limit + 1;
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
