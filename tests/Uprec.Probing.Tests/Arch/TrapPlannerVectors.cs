using System.Globalization;
using Uprec.Probing.Arch;

namespace Uprec.Probing.Tests.Arch;

/// <summary>One row of TrapPlannerVectors.txt: <c>bytes | ip | slot | expected</c>, with the line it came from.</summary>
public sealed record TrapPlanVector(int Line, byte[] Code, ulong Ip, ulong Slot, string Expected)
{
    public const string FileName = "TrapPlannerVectors.txt";

    public override string ToString() => $"line {Line}: {Convert.ToHexString(Code)} @ {Ip:X}";

    public static IEnumerable<TrapPlanVector> Load()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Arch", FileName);
        int line = 0;
        foreach (var raw in File.ReadLines(path))
        {
            line++;
            var text = raw.Trim();
            if (text.Length == 0 || text.StartsWith('#'))
                continue;
            var fields = text.Split('|');
            if (fields.Length != 4)
                throw new FormatException($"{FileName}:{line}: expected 4 fields separated by '|', got {fields.Length}");
            yield return new TrapPlanVector(
                line,
                Convert.FromHexString(fields[0].Replace(" ", "", StringComparison.Ordinal).Trim()),
                ulong.Parse(fields[1].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                ulong.Parse(fields[2].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                fields[3].Trim());
        }
    }

    /// <summary>Renders a plan in the vector file's vocabulary.</summary>
    public static string Describe(TrapPlan plan, ulong slot) => plan switch
    {
        EmulatePlan => "emulate",
        UnsupportedPlan u => "unsupported: " + u.Reason,
        OutOfLinePlan o => SlotDisassembly.Render(o.SlotCode, slot),
        _ => throw new InvalidOperationException(plan.GetType().Name),
    };
}
