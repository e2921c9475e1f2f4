using System.Globalization;
using System.Text.Json;

namespace Uprec.Symbols;

public enum ListFormat { Table, Json }

/// <summary>What <c>uprec list</c> was asked for.</summary>
public sealed record ListRequest(string Binary, string? Glob, ListFormat Format);

/// <summary>
/// The engine of <c>uprec list</c>: locate the binary, select its functions, render them. Writes only to the
/// given TextWriter, so tests see exactly what the user sees.
/// </summary>
public static class FunctionList
{
    public static void Run(ListRequest request, TextWriter output)
    {
        string path = BinaryLocator.Locate(request.Binary);
        ElfImage image = ElfImage.Load(path);
        IReadOnlyList<ElfSymbol> functions = SymbolCatalog.List(image, request.Glob);
        if (request.Format == ListFormat.Json)
        {
            WriteJson(image, functions, output);
        }
        else
        {
            WriteTable(image, functions, output);
        }
    }

    /// <summary>
    /// A perf-like table: a '#' header naming the file, then one row per function, offset right-aligned in hex,
    /// size in decimal, binding, name. IFUNC resolvers are flagged, since probing one does not count calls.
    /// </summary>
    public static void WriteTable(ElfImage image, IReadOnlyList<ElfSymbol> functions, TextWriter output)
    {
        string kind = image.Soname is not null ? "shared library" : image.IsPie ? "PIE executable" : "non-PIE executable";
        string tables = image.HasSymtab ? (image.HasDynsym ? ".symtab+.dynsym" : ".symtab") : ".dynsym only";
        output.WriteLine($"# {image.Path}: {kind}, {functions.Count} function(s), symbols from {tables}");
        int offsetWidth = Math.Max(8, functions.Count == 0 ? 0 : functions.Max(f => Hex(f.FileOffset).Length));
        output.WriteLine($"# {"OFFSET".PadLeft(offsetWidth - 2)} {"SIZE",8}  {"BIND",-6} NAME");
        foreach (ElfSymbol f in functions)
        {
            string size = f.Size.ToString(CultureInfo.InvariantCulture);
            string note = f.IsIndirect ? "  (ifunc resolver: runs once at load, not per call)" : "";
            output.WriteLine($"{Hex(f.FileOffset).PadLeft(offsetWidth)} {size,8}  {Bind(f),-6} {f.Name}{note}");
        }
    }

    /// <summary>{"binary","pie","functions":[{"name","offset","size","vaddr","binding","ifunc","table"}]} with integer numbers.</summary>
    public static void WriteJson(ElfImage image, IReadOnlyList<ElfSymbol> functions, TextWriter output)
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
