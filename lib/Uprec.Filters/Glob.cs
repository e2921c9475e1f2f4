namespace Uprec.Filters;

/// <summary>Shell-style glob: * (any run), ? (one char), [set] with ranges and ! or ^ negation. Ordinal.</summary>
public sealed class Glob
{
    private readonly string _pattern;

    public Glob(string pattern)
    {
        _pattern = pattern;
    }

    public bool IsMatch(string text) => Match(_pattern.AsSpan(), text.AsSpan());

    // Iterative matcher with single-star backtracking: linear in practice, no recursion blow-up.
    private static bool Match(ReadOnlySpan<char> p, ReadOnlySpan<char> t)
    {
        int pi = 0, ti = 0, starP = -1, starT = 0;
        while (ti < t.Length)
        {
            if (pi < p.Length)
            {
                char c = p[pi];
                if (c == '*')
                {
                    starP = pi++;
                    starT = ti;
                    continue;
                }
                if (c == '?')
                {
                    pi++;
                    ti++;
                    continue;
                }
                if (c == '[' && TryClass(p, pi, t[ti], out int next, out bool matched))
                {
                    if (matched)
                    {
                        pi = next;
                        ti++;
                        continue;
                    }
                }
                else if (c == t[ti])
                {
                    pi++;
                    ti++;
                    continue;
                }
            }
            if (starP < 0)
            {
                return false;
            }
            pi = starP + 1;
            ti = ++starT;
        }
        while (pi < p.Length && p[pi] == '*')
        {
            pi++;
        }
        return pi == p.Length;
    }

    /// <summary>Parses a [..] class at <paramref name="start"/>; false when it is not a closed class (then '[' is literal).</summary>
    private static bool TryClass(ReadOnlySpan<char> p, int start, char ch, out int next, out bool matched)
    {
        int i = start + 1;
        bool negate = i < p.Length && (p[i] == '!' || p[i] == '^');
        if (negate)
        {
            i++;
        }
        bool any = false;
        bool first = true;
        while (i < p.Length && (p[i] != ']' || first))
        {
            first = false;
            char lo = p[i];
            if (i + 2 < p.Length && p[i + 1] == '-' && p[i + 2] != ']')
            {
                char hi = p[i + 2];
                any |= ch >= lo && ch <= hi;
                i += 3;
            }
            else
            {
                any |= ch == lo;
                i++;
            }
        }
        if (i >= p.Length)
        {
            next = start;
            matched = false;
            return false;
        }
        next = i + 1;
        matched = any != negate;
        return true;
    }
}
