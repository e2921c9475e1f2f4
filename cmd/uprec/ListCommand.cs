using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Uprec.Symbols;

namespace Uprec.Cli;

public enum ListFormat { Table, Json }

/// <summary>What <c>uprec list</c> was asked for.</summary>
public sealed record ListArgs(string Binary, string? Glob, ListFormat Format);

/// <summary><c>uprec list BINARY [GLOB]</c>: the functions a probe can name, with the file offsets probes are keyed by.</summary>
public static class ListCommand
{
    private static readonly Argument<string> BinaryArgument = new("BINARY")
    {
        Description = "An executable or shared library: a path, a program on PATH, or a library short name (libc, libpthread, libm.so.6)",
    };

    private static readonly Argument<string?> GlobArgument = new("GLOB")
    {
        Description = "Only functions whose name matches this glob (*, ?, [a-z]); quote it so the shell does not expand it",
        Arity = ArgumentArity.ZeroOrOne,
    };

    private static readonly Option<string> FormatOption = new("--format")
    {
        Description = "Output format: table (default) or json",
        DefaultValueFactory = _ => "table",
    };

    public static Command Create()
    {
        FormatOption.AcceptOnlyFromAmong("table", "json");
        var command = new Command("list",
            """
            List the probe-able functions of a binary: file offset, size, binding and name, sorted by offset.
            The offset is what BINARY:0xOFFSET probes take; SYMBOL+OFF must stay below the size.

            Examples:
              uprec list ./server                 every function of ./server
              uprec list ./server 'handle_*'      only names matching the glob
              uprec list libc 'malloc*'           a library by short name
              uprec list ./server --format json   machine-readable
            """)
        {
            BinaryArgument,
            GlobArgument,
            FormatOption,
        };
        command.SetAction(parsed => CliErrors.Guard(() =>
        {
            var args = new ListArgs(
                parsed.GetValue(BinaryArgument)!,
                parsed.GetValue(GlobArgument),
                parsed.GetValue(FormatOption) == "json" ? ListFormat.Json : ListFormat.Table);
            return Run(args, Console.Out);
        }));
        return command;
    }

    /// <summary>Resolves the binary, lists its functions and renders them to <paramref name="output"/>.</summary>
    public static int Run(ListArgs args, TextWriter output)
    {
        string path = BinaryLocator.Locate(args.Binary);
        ElfImage image = ElfImage.Load(path);
        IReadOnlyList<ElfSymbol> functions = SymbolCatalog.List(image, args.Glob);
        if (args.Format == ListFormat.Json)
        {
            WriteJson(image, functions, output);
        }
        else
        {
            WriteTable(image, functions, output);
        }
        return ExitCodes.Ok;
    }

    private static void WriteTable(ElfImage image, IReadOnlyList<ElfSymbol> functions, TextWriter output)
    {
        string kind = image.Soname is not null ? "shared library" : image.IsPie ? "PIE executable" : "non-PIE executable";
        string tables = image.HasSymtab ? (image.HasDynsym ? ".symtab+.dynsym" : ".symtab") : ".dynsym only";
        output.WriteLine($"# {image.Path}: {kind}, {functions.Count} function(s), symbols from {tables}");
        int offsetWidth = Math.Max(8, functions.Max(f => Hex(f.FileOffset).Length));
        output.WriteLine($"# {"OFFSET".PadLeft(offsetWidth - 2)} {"SIZE",8}  {"BIND",-6} NAME");
        foreach (ElfSymbol f in functions)
        {
            string size = f.Size.ToString(CultureInfo.InvariantCulture);
            string note = f.IsIndirect ? "  (ifunc resolver: runs once at load, not per call)" : "";
            output.WriteLine($"{Hex(f.FileOffset).PadLeft(offsetWidth)} {size,8}  {Bind(f),-6} {f.Name}{note}");
        }
    }

    private static void WriteJson(ElfImage image, IReadOnlyList<ElfSymbol> functions, TextWriter output)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("binary", image.Path);
            json.WriteBoolean("pie", image.IsPie);
            json.WriteStartArray("functions");
            foreach (ElfSymbol f in functions)
            {
                json.WriteStartObject();
                json.WriteString("name", f.Name);
                json.WriteNumber("offset", f.FileOffset);
                json.WriteNumber("size", f.Size);
                json.WriteNumber("vaddr", f.Value);
                json.WriteString("binding", Bind(f));
                json.WriteBoolean("ifunc", f.IsIndirect);
                json.WriteString("table", f.FromDynsym ? "dynsym" : "symtab");
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        output.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
    }

    private static string Hex(long value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    private static string Bind(ElfSymbol f) => f.Binding switch
    {
        SymbolBinding.Local => "local",
        SymbolBinding.Weak => "weak",
        _ => "global",
    };
}
