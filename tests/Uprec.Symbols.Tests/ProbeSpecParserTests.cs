namespace Uprec.Symbols.Tests;

public sealed class ProbeSpecParserTests
{
    [Theory]
    // text, name, binary, symbol, offset, isFileOffset, isReturn, displayName
    [InlineData("./prog:work", null, "./prog", "work", 0L, false, false, "work")]
    [InlineData("libc:malloc%return", null, "libc", "malloc", 0L, false, true, "malloc")]
    [InlineData("fast=./prog:parse_*", "fast", "./prog", "parse_*", 0L, false, false, "fast")]
    [InlineData("./prog:work+4", null, "./prog", "work", 4L, false, false, "work+0x4")]
    [InlineData("./prog:work+0x1f%return", null, "./prog", "work", 31L, false, true, "work+0x1f")]
    [InlineData("./prog:0x1139", null, "./prog", null, 0x1139L, true, false, "0x1139")]
    [InlineData("site=./prog:0X1A%return", "site", "./prog", null, 0x1aL, true, true, "site")]
    [InlineData("/opt/a:b/prog:main", null, "/opt/a:b/prog", "main", 0L, false, false, "main")]
    [InlineData("  ./prog:work  ", null, "./prog", "work", 0L, false, false, "work")]
    [InlineData("libc:memcpy@GLIBC_2.2.5", null, "libc", "memcpy@GLIBC_2.2.5", 0L, false, false, "memcpy@GLIBC_2.2.5")]
    [InlineData("./prog:_ZN3foo3barEv", null, "./prog", "_ZN3foo3barEv", 0L, false, false, "_ZN3foo3barEv")]
    [InlineData("./prog:parse_[a-c]?", null, "./prog", "parse_[a-c]?", 0L, false, false, "parse_[a-c]?")]
    [InlineData("my.probe-1=libm.so.6:sin", "my.probe-1", "libm.so.6", "sin", 0L, false, false, "my.probe-1")]
    public void Valid_specs_parse(string text, string? name, string binary, string? symbol, long offset, bool isFileOffset,
        bool isReturn, string displayName)
    {
        ProbeSpec spec = ProbeSpecParser.Parse(text);
        Assert.Equal(text, spec.Text);
        Assert.Equal(name, spec.Name);
        Assert.Equal(binary, spec.Binary);
        Assert.Equal(symbol, spec.Symbol);
        Assert.Equal(offset, spec.Offset);
        Assert.Equal(isFileOffset, spec.IsFileOffset);
        Assert.Equal(isReturn, spec.IsReturn);
        Assert.Equal(displayName, spec.DisplayName);
        Assert.Empty(spec.Args);
    }

    [Fact]
    public void Arguments_by_position_and_register_with_types()
    {
        ProbeSpec spec = ProbeSpecParser.Parse("./prog:work len=arg2:u32 path=arg1:string\tflags=%rcx:x64 big=arg6 s=arg3:string:128 b=%r15:s8");
        Assert.Equal(
            new[]
            {
                new ArgSpec("len", 2, null, ArgType.U32, 0),
                new ArgSpec("path", 1, null, ArgType.String, ProbeSpecParser.DefaultMaxStringLength),
                new ArgSpec("flags", 0, "rcx", ArgType.X64, 0),
                new ArgSpec("big", 6, null, ArgType.U64, 0),
                new ArgSpec("s", 3, null, ArgType.String, 128),
                new ArgSpec("b", 0, "r15", ArgType.S8, 0),
            },
            spec.Args);
        Assert.Equal(["rsi", "rdi", "rcx", "r9", "rdx", "r15"], spec.Args.Select(a => a.SourceRegister));
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("   ", "empty")]
    [InlineData("./prog", "missing ':'")]
    [InlineData(":work", "binary before ':' is empty")]
    [InlineData("./prog:", "symbol after ':' is empty")]
    [InlineData("./prog:%return", "symbol after ':' is empty")]
    [InlineData("./prog:work%ret", "unknown suffix '%ret'")]
    [InlineData("./prog:work%return%return", "unknown suffix")]
    [InlineData("./prog:0x", "not a valid hexadecimal file offset")]
    [InlineData("./prog:0xZZ", "not a valid hexadecimal file offset")]
    [InlineData("./prog:0xffffffffffffffff", "not a valid hexadecimal file offset")]
    [InlineData("./prog:work+", "'+' is not a valid offset")]
    [InlineData("./prog:work+-4", "'+-4' is not a valid offset")]
    [InlineData("./prog:work+0xg", "'+0xg' is not a valid offset")]
    [InlineData("./prog:+4", "symbol before '+' is empty")]
    [InlineData("./prog:foo::bar", "demangled C++ name")]
    [InlineData("./prog:a(b)", "character '(' is not allowed")]
    [InlineData("./prog:4096", "starts with a digit")]
    [InlineData("./prog:1139+4", "needs the 0x prefix")]
    [InlineData("./prog:parse_[ab", "'[' is not closed")]
    [InlineData("./prog:parse_]", "']' without '['")]
    [InlineData("1bad=./prog:work", "'1bad' is not a valid probe name")]
    [InlineData("=./prog:work", "'' is not a valid probe name")]
    [InlineData("a b=./prog:work", "missing ':'")]
    [InlineData("./prog:work len", "argument 'len' is malformed")]
    [InlineData("./prog:work =arg1", "argument '=arg1' is malformed")]
    [InlineData("./prog:work 9x=arg1", "must be an identifier")]
    [InlineData("./prog:work pid=arg1", "reserved")]
    [InlineData("./prog:work arg2=arg1", "reserved")]
    [InlineData("./prog:work x=arg7", "must be arg1..arg6")]
    [InlineData("./prog:work x=arg0", "must be arg1..arg6")]
    [InlineData("./prog:work x=rdi", "must be arg1..arg6")]
    [InlineData("./prog:work x=%eax", "not a 64-bit general-purpose register")]
    [InlineData("./prog:work x=%rip", "not a 64-bit general-purpose register")]
    [InlineData("./prog:work x=arg1:u128", "unknown type 'u128'")]
    [InlineData("./prog:work x=arg1:", "unknown type ''")]
    [InlineData("./prog:work x=arg1:string:0", "must be 1..4096")]
    [InlineData("./prog:work x=arg1:string:5000", "must be 1..4096")]
    [InlineData("./prog:work x=arg1:string:abc", "must be 1..4096")]
    [InlineData("./prog:work x=arg1:u32:8", "too many ':' parts")]
    [InlineData("./prog:work x=arg1 x=arg2", "'x' is used twice")]
    public void Invalid_specs_throw_one_line_with_the_spec_the_problem_and_an_example(string text, string problem)
    {
        var e = Assert.Throws<ProbeSpecException>(() => ProbeSpecParser.Parse(text));
        Assert.Contains(problem, e.Message);
        Assert.StartsWith($"bad probe '{text}'", e.Message);
        Assert.Contains("e.g.", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Too_many_arguments_are_refused()
    {
        string text = "./prog:work " + string.Join(' ', Enumerable.Range(0, ProbeSpecParser.MaxArguments + 1).Select(i => $"a{i}=arg1"));
        var e = Assert.Throws<ProbeSpecException>(() => ProbeSpecParser.Parse(text));
        Assert.Contains($"at most {ProbeSpecParser.MaxArguments}", e.Message);
    }

    [Fact]
    public void A_newline_in_the_spec_does_not_break_the_one_line_message()
    {
        var e = Assert.Throws<ProbeSpecException>(() => ProbeSpecParser.Parse("./prog\n"));
        Assert.DoesNotContain('\n', e.Message);
    }
}
