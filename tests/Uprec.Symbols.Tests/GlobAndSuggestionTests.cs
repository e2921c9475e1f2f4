namespace Uprec.Symbols.Tests;

public sealed class GlobAndSuggestionTests
{
    [Theory]
    [InlineData("parse_*", "parse_header", true)]
    [InlineData("parse_*", "parse_", true)]
    [InlineData("parse_*", "xparse_header", false)]
    [InlineData("*alloc", "malloc", true)]
    [InlineData("*alloc", "malloc_trim", false)]
    [InlineData("*alloc*", "malloc_trim", true)]
    [InlineData("?alloc", "malloc", true)]
    [InlineData("?alloc", "calloc", true)]
    [InlineData("?alloc", "realloc", false)]
    [InlineData("[cm]alloc", "calloc", true)]
    [InlineData("[cm]alloc", "valloc", false)]
    [InlineData("[!cm]alloc", "valloc", true)]
    [InlineData("[!cm]alloc", "malloc", false)]
    [InlineData("parse_[a-c]*", "parse_body", true)]
    [InlineData("parse_[a-c]*", "parse_header", false)]
    [InlineData("*", "", true)]
    [InlineData("**a**", "a", true)]
    [InlineData("a*b*c", "aXXbYYc", true)]
    [InlineData("a*b*c", "aXXbYY", false)]
    [InlineData("work", "work", true)]
    [InlineData("work", "Work", false)] // symbols are case-sensitive
    [InlineData("[]]x", "]x", true)]
    public void Glob_matching(string pattern, string name, bool expected)
    {
        Assert.Equal(expected, Glob.IsMatch(pattern, name));
    }

    [Fact]
    public void Pathological_glob_finishes_quickly_because_matching_is_iterative()
    {
        string name = new string('a', 5000);
        Assert.False(Glob.IsMatch("*a*a*a*a*a*a*a*a*b", name));
    }

    [Theory]
    [InlineData("wrok", "work")]
    [InlineData("parse_heder", "parse_header")]
    [InlineData("MALLOC", "malloc")]
    [InlineData("header", "parse_header")] // substring
    public void Suggestions_find_the_intended_name_first(string typo, string intended)
    {
        string[] names = ["work", "work_alias", "parse_header", "parse_body", "parse_footer", "main", "malloc", "tiny"];
        IReadOnlyList<string> found = Suggestions.Find(typo, names);
        Assert.NotEmpty(found);
        Assert.Equal(intended, found[0]);
        Assert.True(found.Count <= 3);
    }

    [Fact]
    public void Nothing_close_gives_no_suggestions()
    {
        Assert.Empty(Suggestions.Find("zzzzzzzzzz", ["work", "main"]));
    }

    [Theory]
    [InlineData("kitten", "sitting", 3)]
    [InlineData("", "abc", 3)]
    [InlineData("abc", "abc", 0)]
    [InlineData("flaw", "lawn", 2)]
    public void Levenshtein_distance(string a, string b, int distance)
    {
        Assert.Equal(distance, Suggestions.Distance(a, b));
        Assert.Equal(distance, Suggestions.Distance(b, a));
    }
}
