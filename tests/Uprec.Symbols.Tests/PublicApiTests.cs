using System.Reflection;
using System.Text;

namespace Uprec.Symbols.Tests;

/// <summary>
/// The engine (lib/Uprec.Probing) and the CLI build against this library's public API; a change to it must be
/// deliberate. To accept a change, run the tests with UPREC_UPDATE_API=1 and commit PublicApi.txt.
/// </summary>
public sealed class PublicApiTests
{
    [Fact]
    public void Public_api_matches_the_snapshot()
    {
        string snapshotPath = Path.Combine(Repo.Root, "tests", "Uprec.Symbols.Tests", "PublicApi.txt");
        string actual = Describe(typeof(ElfImage).Assembly);
        if (Environment.GetEnvironmentVariable("UPREC_UPDATE_API") == "1")
        {
            File.WriteAllText(snapshotPath, actual);
        }
        Assert.Equal(File.ReadAllText(snapshotPath), actual);
    }

    [Fact]
    public void The_library_does_not_reference_native_interop()
    {
        // Layering: Symbols is pure managed parsing; all libc interop lives in Uprec.Native.
        Assert.DoesNotContain(typeof(ElfImage).Assembly.GetReferencedAssemblies(), a => a.Name == "Uprec.Native");
    }

    private static string Describe(Assembly assembly)
    {
        var lines = new List<string>();
        foreach (Type type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            string kind = type.IsEnum ? "enum" : type.IsValueType ? "struct" : type.IsInterface ? "interface"
                : type.IsAbstract && type.IsSealed ? "static class" : type.IsSealed ? "sealed class" : "class";
            lines.Add($"{kind} {type.FullName}");
            if (type.IsEnum)
            {
                lines.Add("  " + string.Join(", ", Enum.GetNames(type)));
                continue;
            }
            const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            var members = new List<string>();
            foreach (MemberInfo m in type.GetMembers(flags))
            {
                switch (m)
                {
                    case MethodInfo method when !method.IsSpecialName && !method.Name.StartsWith('<'):
                        members.Add($"  {(method.IsStatic ? "static " : "")}{Name(method.ReturnType)} {method.Name}({Params(method)})");
                        break;
                    case ConstructorInfo ctor:
                        members.Add($"  ctor({Params(ctor)})");
                        break;
                    case PropertyInfo p:
                        bool init = p.SetMethod?.ReturnParameter.GetRequiredCustomModifiers().Any(t => t.Name == "IsExternalInit") == true;
                        string accessors = (p.GetMethod?.IsPublic == true ? "get; " : "") + (p.SetMethod?.IsPublic == true ? (init ? "init; " : "set; ") : "");
                        members.Add($"  {((p.GetMethod ?? p.SetMethod)!.IsStatic ? "static " : "")}{Name(p.PropertyType)} {p.Name} {{ {accessors}}}");
                        break;
                    case FieldInfo f:
                        members.Add($"  {(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{Name(f.FieldType)} {f.Name}");
                        break;
                }
            }
            lines.AddRange(members.Order(StringComparer.Ordinal));
        }
        return string.Join("\n", lines) + "\n";
    }

    private static string Params(MethodBase m) =>
        string.Join(", ", m.GetParameters().Select(p => $"{Name(p.ParameterType)} {p.Name}"));

    private static string Name(Type t)
    {
        if (t.IsByRef)
        {
            return "ref " + Name(t.GetElementType()!);
        }
        if (t.IsArray)
        {
            return Name(t.GetElementType()!) + "[]";
        }
        if (!t.IsGenericType)
        {
            return t.Name;
        }
        var sb = new StringBuilder(t.Name[..t.Name.IndexOf('`')]);
        sb.Append('<').Append(string.Join(", ", t.GetGenericArguments().Select(Name))).Append('>');
        return sb.ToString();
    }
}
