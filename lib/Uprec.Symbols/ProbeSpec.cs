using System.Globalization;

namespace Uprec.Symbols;

/// <summary>How a captured argument is stored and shown.</summary>
public enum ArgType { U8, U16, U32, U64, S8, S16, S32, S64, X64, String }

/// <summary>
/// One argument to capture at a probe hit: by SysV ABI position (<paramref name="ArgIndex"/> 1..6, Register null)
/// or by register (<paramref name="ArgIndex"/> 0, Register such as "rdx"). MaxStringLength is 0 unless Type is String.
/// </summary>
public sealed record ArgSpec(string Name, int ArgIndex, string? Register, ArgType Type, int MaxStringLength)
{
    /// <summary>The SysV x86-64 integer argument registers, in order (arg1 = rdi).</summary>
    public static IReadOnlyList<string> AbiArgumentRegisters { get; } = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];

    /// <summary>The register the value is read from, whichever way it was named.</summary>
    public string SourceRegister => Register ?? AbiArgumentRegisters[ArgIndex - 1];
}

/// <summary>
/// A parsed <c>-e</c> probe spec, not yet resolved against a binary. <see cref="Offset"/> is the byte offset
/// added to <see cref="Symbol"/> (SYMBOL+OFF), or, when <see cref="IsFileOffset"/>, the file offset of
/// <c>BINARY:0xOFFSET</c> (Symbol is then null).
/// </summary>
public sealed record ProbeSpec(
    string Text, string? Name, string Binary, string? Symbol, long Offset, bool IsFileOffset, bool IsReturn,
    IReadOnlyList<ArgSpec> Args)
{
    /// <summary>
    /// The probe's name in reports: the explicit NAME, else the symbol (with "+0xOFF" when an offset is given,
    /// so that <c>work</c> and <c>work+4</c> stay distinct), else the file offset in hex.
    /// </summary>
    public string DisplayName => Name ?? (Symbol is null
        ? ProbeSpecParser.FormatHex(Offset)
        : Offset == 0 ? Symbol : $"{Symbol}+{ProbeSpecParser.FormatHex(Offset)}");

    /// <summary>True when <see cref="Symbol"/> contains glob characters and may match several functions.</summary>
    public bool IsGlob => Symbol is not null && Glob.HasWildcards(Symbol);
}

/// <summary>
/// Parses probe specs: <c>[NAME=]BINARY:SYMBOL[+OFF][%return] [argname=argN|%reg[:type]]...</c> or
/// <c>[NAME=]BINARY:0xOFFSET[%return] ...</c>. Never throws anything but <see cref="ProbeSpecException"/>.
/// </summary>
public static class ProbeSpecParser
{
    public const string ReturnSuffix = "%return";
    public const int DefaultMaxStringLength = 64;
    public const int MaxStringLengthLimit = 4096;
    public const int MaxArguments = 16;

    private const string SyntaxExample =
        "expected [NAME=]BINARY:SYMBOL[+OFF][%return] or BINARY:0xOFFSET, e.g. './prog:work', 'libc:malloc%return', " +
        "'fast=./prog:parse_*', './prog:0x1139 len=arg2:u32 path=arg1:string'";

    private const string ArgExample = "e.g. 'len=arg2:u32', 'path=arg1:string:128', 'flags=%rcx:x64'";

    // Names that collide with the trace file's fixed columns (formats/Uprec.Trace) cannot name an argument.
    private static readonly HashSet<string> ReservedColumnNames = new(StringComparer.Ordinal)
    {
        "time", "pid", "tid", "ppid", "uid", "comm", "exe", "probe", "kind", "duration_ns", "retval", "cpu",
    };

    private static readonly HashSet<string> Registers = new(StringComparer.Ordinal)
    {
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    };

    public static ProbeSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string trimmed = text.Trim();
        if (trimmed.Length == 0)
        {
            throw Fail(text, "the probe spec is empty");
        }

        string[] tokens = trimmed.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        string location = tokens[0];

        // NAME= is recognised only before the first ':' so that '=' inside a symbol-less path is still an error
        // about the path, and only when the name part is an identifier (paths rarely are).
        string? name = null;
        int colon = location.IndexOf(':');
        int equals = location.IndexOf('=');
        if (equals >= 0 && (colon < 0 || equals < colon))
        {
            name = location[..equals];
            if (!IsProbeName(name))
            {
                throw Fail(text, $"'{name}' is not a valid probe name (letters, digits, '_', '.', '-'; not starting with a digit)");
            }
            location = location[(equals + 1)..];
        }

        if (location.Contains("::", StringComparison.Ordinal))
        {
            throw Fail(text, "'::' looks like a demangled C++ name; use the mangled name ('uprec list BINARY' shows them)");
        }

        // The last ':' separates binary and symbol
        // The last ':' separates binary and symbol: symbols never contain ':', paths occasionally do.
        int split = location.LastIndexOf(':');
        if (split < 0)
        {
            throw Fail(text, "missing ':' between the binary and the symbol");
        }
        string binary = location[..split];
        string target = location[(split + 1)..];
        if (binary.Length == 0)
        {
            throw Fail(text, "the binary before ':' is empty");
        }
        if (binary.Contains('\0'))
        {
            throw Fail(text, "the binary contains a NUL character");
        }

        bool isReturn = false;
        if (target.EndsWith(ReturnSuffix, StringComparison.Ordinal))
        {
            isReturn = true;
            target = target[..^ReturnSuffix.Length];
        }
        if (target.Contains('%'))
        {
            throw Fail(text, $"unknown suffix '{target[target.IndexOf('%')..]}' (only '%return' is supported)");
        }
        if (target.Length == 0)
        {
            throw Fail(text, "the symbol after ':' is empty");
        }

        string? symbol;
        long offset;
        bool isFileOffset;
        if (target.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            if (!TryParseHex(target.AsSpan(2), out offset))
            {
                throw Fail(text, $"'{target}' is not a valid hexadecimal file offset");
            }
            symbol = null;
            isFileOffset = true;
        }
        else
        {
            int plus = target.IndexOf('+');
            symbol = plus < 0 ? target : target[..plus];
            offset = 0;
            if (plus >= 0)
            {
                string offText = target[(plus + 1)..];
                if (!TryParseNumber(offText, out offset))
                {
                    throw Fail(text, $"'+{offText}' is not a valid offset (decimal or 0x hex)");
                }
            }
            if (symbol.Length == 0)
            {
                throw Fail(text, "the symbol before '+' is empty");
            }
            if (char.IsAsciiDigit(symbol[0]))
            {
                throw Fail(text, $"'{symbol}' starts with a digit, so it is no symbol; a file offset needs the 0x prefix (e.g. '{binary}:0x{symbol}' if it is hex)");
            }
            string? problem = CheckSymbol(symbol);
            if (problem is not null)
            {
                throw Fail(text, problem);
            }
            isFileOffset = false;
        }

        var args = new List<ArgSpec>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string token in tokens.AsSpan(1))
        {
            ArgSpec arg = ParseArg(text, token);
            if (!seen.Add(arg.Name))
            {
                throw Fail(text, $"argument name '{arg.Name}' is used twice");
            }
            args.Add(arg);
        }
        if (args.Count > MaxArguments)
        {
            throw Fail(text, $"{args.Count} arguments captured; at most {MaxArguments} per probe");
        }

        return new ProbeSpec(text, name, binary, symbol, offset, isFileOffset, isReturn, args);
    }

    /// <summary>Parses one capture, <c>name=argN[:type]</c> or <c>name=%reg[:type]</c>; type <c>string[:N]</c> bounds the length.</summary>
    private static ArgSpec ParseArg(string text, string token)
    {
        int equals = token.IndexOf('=');
        if (equals <= 0)
        {
            throw ArgFail(text, $"argument '{token}' is malformed");
        }
        string name = token[..equals];
        if (!IsIdentifier(name))
        {
            throw ArgFail(text, $"argument name '{name}' must be an identifier (letters, digits, '_'; not starting with a digit)");
        }
        if (ReservedColumnNames.Contains(name) || name.StartsWith("arg", StringComparison.Ordinal) && name.Length > 3
            && name[3..].All(char.IsAsciiDigit))
        {
            throw ArgFail(text, $"argument name '{name}' is reserved (it names a trace column or a filter field); choose another");
        }

        string[] parts = token[(equals + 1)..].Split(':');
        string source = parts[0];
        int argIndex = 0;
        string? register = null;
        if (source.StartsWith('%'))
        {
            register = source[1..];
            if (!Registers.Contains(register))
            {
                throw ArgFail(text, $"'{source}' is not a 64-bit general-purpose register (e.g. %rdi, %rdx, %r8)");
            }
        }
        else if (source.Length == 4 && source.StartsWith("arg", StringComparison.Ordinal) && source[3] is >= '1' and <= '6')
        {
            argIndex = source[3] - '0';
        }
        else
        {
            throw ArgFail(text, $"'{source}' in argument '{token}' must be arg1..arg6 or a register such as %rdx");
        }

        ArgType type = ArgType.U64;
        int maxString = 0;
        if (parts.Length >= 2)
        {
            if (!TryParseType(parts[1], out type))
            {
                throw ArgFail(text, $"unknown type '{parts[1]}' in argument '{token}' (u8, u16, u32, u64, s8, s16, s32, s64, x64, string)");
            }
            if (type == ArgType.String)
            {
                maxString = DefaultMaxStringLength;
                if (parts.Length == 3)
                {
                    if (!int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out maxString)
                        || maxString < 1 || maxString > MaxStringLengthLimit)
                    {
                        throw ArgFail(text, $"string length '{parts[2]}' in argument '{token}' must be 1..{MaxStringLengthLimit}");
                    }
                }
            }
        }
        if (parts.Length > (type == ArgType.String ? 3 : 2))
        {
            throw ArgFail(text, $"argument '{token}' has too many ':' parts");
        }
        return new ArgSpec(name, argIndex, register, type, maxString);
    }

    private static bool TryParseType(string text, out ArgType type)
    {
        switch (text)
        {
            case "u8": type = ArgType.U8; return true;
            case "u16": type = ArgType.U16; return true;
            case "u32": type = ArgType.U32; return true;
            case "u64": type = ArgType.U64; return true;
            case "s8": type = ArgType.S8; return true;
            case "s16": type = ArgType.S16; return true;
            case "s32": type = ArgType.S32; return true;
            case "s64": type = ArgType.S64; return true;
            case "x64": type = ArgType.X64; return true;
            case "string": type = ArgType.String; return true;
            default: type = default; return false;
        }
    }

    /// <summary>Returns why <paramref name="symbol"/> cannot be a symbol or glob, or null when it can.</summary>
    private static string? CheckSymbol(string symbol)
    {
        foreach (char c in symbol)
        {
            // Mangled C++ names and versioned names ("memcpy@GLIBC_2.2.5") use only these characters.
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '$' or '@' or '*' or '?' or '[' or ']' or '!' or '-'))
            {
                return $"'{symbol}' is not a valid symbol: character '{c}' is not allowed (use the mangled name for C++)";
            }
        }
        return Glob.Validate(symbol) is { } globError ? $"'{symbol}' is not a valid glob: {globError}" : null;
    }

    private static bool IsIdentifier(string s) =>
        s.Length > 0 && !char.IsAsciiDigit(s[0]) && s.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    private static bool IsProbeName(string s) =>
        s.Length > 0 && !char.IsAsciiDigit(s[0]) && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-');

    private static bool TryParseNumber(string text, out long value)
    {
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            return TryParseHex(text.AsSpan(2), out value);
        }
        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    private static bool TryParseHex(ReadOnlySpan<char> digits, out long value) =>
        long.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value) && value >= 0
        && digits.Length > 0;

    internal static string FormatHex(long value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    private static ProbeSpecException Fail(string text, string problem, string example = SyntaxExample) =>
        new($"bad probe '{text.ReplaceLineEndings(" ")}': {problem}; {example}");

    private static ProbeSpecException ArgFail(string text, string problem) =>
        Fail(text, problem, "arguments are name=argN or name=%reg with an optional :type, " + ArgExample);
}
