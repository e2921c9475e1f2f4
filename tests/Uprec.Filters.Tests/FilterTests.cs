using Uprec.Filters;

namespace Uprec.Filters.Tests;

public class FilterTests
{
    private static FilterValue Task(string field) => field switch
    {
        "pid" => FilterValue.Of(1234),
        "tid" => FilterValue.Of(1240),
        "comm" => FilterValue.Of("worker-3"),
        "exe" => FilterValue.Of("/usr/bin/server"),
        "arg1" => FilterValue.Of(ulong.MaxValue),
        "arg2" => FilterValue.Of(-5),
        _ => FilterValue.Missing,
    };

    [Theory]
    [InlineData("pid == 1234", true)]
    [InlineData("pid != 1234", false)]
    [InlineData("pid == 0x4d2", true)]
    [InlineData("pid < 1234", false)]
    [InlineData("pid <= 1234", true)]
    [InlineData("pid > 1000 && tid >= 1240", true)]
    [InlineData("pid > 2000 || tid == 1240", true)]
    [InlineData("!(pid == 1234)", false)]
    [InlineData("!pid == 1234", false)]
    [InlineData("comm == \"worker-3\"", true)]
    [InlineData("comm ~ \"worker-*\"", true)]
    [InlineData("comm ~ \"work?r-[0-9]\"", true)]
    [InlineData("comm ~ \"work?r-[!0-9]\"", false)]
    [InlineData("comm ~ \"server\"", false)]
    [InlineData("exe ~ \"*/server\"", true)]
    [InlineData("comm < \"x\"", true)]
    [InlineData("arg1 == 0xffffffffffffffff", true)]
    [InlineData("arg1 > 9223372036854775807", true)]
    [InlineData("arg2 == -5 && arg2 < 0", true)]
    [InlineData("arg2 < -0x10", false)]
    [InlineData("pid ~ \"12*\"", true)]
    // `&&` binds tighter than `||`: false || (true && true).
    [InlineData("pid == 1 || tid == 1240 && comm ~ \"w*\"", true)]
    [InlineData("(pid == 1 || tid == 1240) && comm ~ \"x*\"", false)]
    // A field the row lacks fails every comparison, including !=; negation flips the result.
    [InlineData("retval != 0", false)]
    [InlineData("!(retval == 0)", true)]
    // A string field compared with a number never matches.
    [InlineData("comm == 3", false)]
    public void EvaluatesAgainstTheResolver(string text, bool expected)
    {
        Assert.Equal(expected, Filter.Parse(text).Evaluate(Task));
    }

    [Theory]
    // The reported position is 1-based and points at the offending character.
    [InlineData("pid = 3", 5, "'=' is not an operator")]
    [InlineData("pid == ", 8, "ended")]
    [InlineData("pid == 3 &&", 12, "ended")]
    [InlineData("(pid == 3", 10, "expected ')'")]
    [InlineData("pid == 3)", 9, "unbalanced ')'")]
    [InlineData("comm == \"abc", 9, "unterminated string")]
    [InlineData("pid == 12abc", 8, "expected a number")]
    [InlineData("pid == 0x", 8, "expected a number")]
    [InlineData("3 == pid", 1, "expected a field name")]
    [InlineData("pid 3", 5, "expected an operator")]
    [InlineData("comm ~ 3", 6, "'~' needs a double-quoted glob")]
    [InlineData("pid == 1 pid == 2", 10, "expected '&&', '||' or the end")]
    [InlineData("arg1 == 0x10000000000000000", 9, "64-bit range")]
    [InlineData("", 1, "ended")]
    public void MalformedExpressionsNameThePosition(string text, int position, string what)
    {
        var e = Assert.Throws<FilterException>(() => Filter.Parse(text));
        Assert.Equal(position - 1, e.Position);
        Assert.Contains($"at position {position}", e.Message);
        Assert.Contains(what, e.Message);
    }

    [Fact]
    public void FieldsListsEveryFieldRead()
    {
        Filter f = Filter.Parse("pid == 1 && (comm ~ \"a*\" || !(arg2 < 3))");
        Assert.Equal(new HashSet<string> { "pid", "comm", "arg2" }, f.Fields.ToHashSet());
    }

    [Fact]
    public void CheckRejectsUnknownFieldsAndMismatchedLiterals()
    {
        var fields = new Dictionary<string, FilterValueKind> { ["pid"] = FilterValueKind.Integer, ["comm"] = FilterValueKind.String };
        Filter.Parse("pid == 1 && comm ~ \"x\" && pid ~ \"1*\"").Check(fields);

        var unknown = Assert.Throws<FilterException>(() => Filter.Parse("pid == 1 && cpu == 2").Check(fields));
        Assert.Equal(12, unknown.Position);
        Assert.Contains("unknown field 'cpu'", unknown.Message);
        Assert.Contains("known: comm, pid", unknown.Message);

        var mismatch = Assert.Throws<FilterException>(() => Filter.Parse("comm == 5").Check(fields));
        Assert.Contains("needs a double-quoted string", mismatch.Message);
        Assert.Throws<FilterException>(() => Filter.Parse("pid == \"5\"").Check(fields));
    }

    [Theory]
    [InlineData("*", "", true)]
    [InlineData("a*b*c", "aXXbYYc", true)]
    [InlineData("a*b*c", "aXXbYY", false)]
    [InlineData("parse_*", "parse_header", true)]
    [InlineData("[abc]x", "bx", true)]
    [InlineData("[a-c]x", "dx", false)]
    [InlineData("[^a-c]x", "dx", true)]
    [InlineData("[]x", "[]x", true)]
    [InlineData("a?c", "abc", true)]
    [InlineData("a?c", "ac", false)]
    public void GlobMatchesLikeTheShell(string pattern, string text, bool expected)
    {
        Assert.Equal(expected, new Glob(pattern).IsMatch(text));
    }
}

public class FilterDecisionTests
{
    private static readonly HashSet<string> TaskFields = ["pid", "tid", "ppid", "uid", "comm", "exe"];

    private static FilterValue Task(string field) => field switch
    {
        "pid" => FilterValue.Of(100),
        "comm" => FilterValue.Of("server"),
        "uid" => FilterValue.Of(1000),
        _ => FilterValue.Missing,
    };

    [Theory]
    [InlineData("pid == 100", FilterDecision.Yes)]
    [InlineData("pid == 101", FilterDecision.No)]
    [InlineData("arg1 < 100", FilterDecision.Maybe)]
    [InlineData("pid == 101 && arg1 < 100", FilterDecision.No)]
    [InlineData("pid == 100 && arg1 < 100", FilterDecision.Maybe)]
    [InlineData("pid == 100 || arg1 < 100", FilterDecision.Yes)]
    [InlineData("pid == 101 || arg1 < 100", FilterDecision.Maybe)]
    [InlineData("!(pid == 101 && retval == 0)", FilterDecision.Yes)]
    [InlineData("!(pid == 100 && retval == 0)", FilterDecision.Maybe)]
    [InlineData("comm ~ \"serv*\" && uid != 0", FilterDecision.Yes)]
    [InlineData("!(comm ~ \"serv*\")", FilterDecision.No)]
    public void TaskLevelDecisionsTreatArgumentsAsUnknown(string text, FilterDecision expected)
    {
        Assert.Equal(expected, Filter.Parse(text).Decide(Task, TaskFields.Contains));
    }

    [Fact]
    public void WithEveryFieldKnownDecideAgreesWithEvaluate()
    {
        string[] exprs = ["pid == 100 && !(comm == \"x\")", "pid < 5 || comm ~ \"s*\"", "!(uid == 1000)", "arg1 == 3"];
        foreach (string e in exprs)
        {
            Filter f = Filter.Parse(e);
            Assert.Equal(f.Evaluate(Task) ? FilterDecision.Yes : FilterDecision.No, f.Decide(Task, _ => true));
        }
    }
}
