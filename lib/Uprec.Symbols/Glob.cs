namespace Uprec.Symbols;

/// <summary>
/// Shell-style globs over symbol names: <c>*</c>, <c>?</c>, <c>[abc]</c>, <c>[a-z]</c>, <c>[!abc]</c>. Case-sensitive,
/// as symbol names are. Matching is iterative with one backtrack point, so it is linear-ish and never recursive.
/// </summary>
public static class Glob
{
    public static bool HasWildcards(string pattern) => pattern.AsSpan().IndexOfAny("*?[") >= 0;

    /// <summary>Returns what is wrong with the pattern, or null when it is valid.</summary>
    public static string? Validate(string pattern)
    {
        for (int i = 0; i < pattern.Length; i++)
        {
            if (pattern[i] == '[')
            {
                int close = ClassEnd(pattern, i);
                if (close < 0)
                {
                    return "'[' is not closed by ']'";
                }
                i = close;
            }
            else if (pattern[i] == ']')
            {
                return "']' without '['";
            }
        }
        return null;
    }

    public static bool IsMatch(string pattern, string text)
    {
        int p = 0, t = 0, starP = -1, starT = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length)
            {
                char c = pattern[p];
                if (c == '*')
                {
                    starP = ++p;
                    starT = t;
                    continue;
                }
                if (c == '?')
                {
                    p++;
                    t++;
                    continue;
                }
                if (c == '[')
                {
                    int close = ClassEnd(pattern, p);
                    if (close > 0 && ClassMatches(pattern.AsSpan(p + 1, close - p - 1), text[t]))
                    {
                        p = close + 1;
                        t++;
                        continue;
                    }
                }
                else if (c == text[t])
                {
                    p++;
                    t++;
                    continue;
                }
            }
            if (starP < 0)
            {
                return false;
            }
            p = starP;
            t = ++starT;
        }
        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }
        return p == pattern.Length;
    }

    // A ']' right after '[' or '[!' is a literal member, as in the shell.
    private static int ClassEnd(string pattern, int open)
    {
        int i = open + 1;
        if (i < pattern.Length && pattern[i] == '!')
        {
            i++;
        }
        if (i < pattern.Length && pattern[i] == ']')
        {
            i++;
        }
        int close = pattern.IndexOf(']', i);
        return close;
    }

    private static bool ClassMatches(ReadOnlySpan<char> members, char c)
    {
        bool negate = members.Length > 0 && members[0] == '!';
        if (negate)
        {
            members = members[1..];
        }
        bool found = false;
        for (int i = 0; i < members.Length; i++)
        {
            if (i + 2 < members.Length && members[i + 1] == '-')
            {
                if (c >= members[i] && c <= members[i + 2])
                {
                    found = true;
                }
                i += 2;
            }
            else if (members[i] == c)
            {
                found = true;
            }
        }
        return found != negate;
    }
}
