using System.Diagnostics;
using Iced.Intel;
using Uprec.Probing.Arch;
using Uprec.Symbols;
using Xunit.Abstractions;

namespace Uprec.Probing.Tests.Arch;

/// <summary>
/// Analyses the entry of every function of this machine's libc (real compiler output plus hand-written
/// assembly). Hand-made cases cover the rules; this covers what compilers emit, and that every accepted
/// plan really relocates.
/// </summary>
public class PatchSiteSweepTests(ITestOutputHelper output)
{
    const string Libc = "/lib/x86_64-linux-gnu/libc.so.6";
    const ulong LoadBias = 0x7F00_0000_0000;

    // The reason's leading words, which name the rule; the rest names the instruction or the byte.
    static string Rule(string reason)
    {
        foreach (var known in new[]
        {
            "function too short", "the function leaves within", "a branch in the function", "a branch in a .cold fragment",
            "a call in the patch returns", "the function has an indirect jump", "the function takes the address",
            "the patched bytes hold", "cannot decode the function",
        })
        {
            if (reason.StartsWith(known, StringComparison.Ordinal))
                return known;
        }
        return reason;
    }

    [Fact]
    public void Every_libc_function_entry_gets_a_decision_and_every_plan_relocates()
    {
        Assert.True(File.Exists(Libc), $"{Libc} is missing: this test expects Debian/Ubuntu's x86-64 libc");
        var image = ElfImage.Load(Libc);
        var file = File.ReadAllBytes(Libc);
        var seen = new HashSet<ulong>();
        var refused = new Dictionary<string, int>();
        int accepted = 0;
        var clock = Stopwatch.StartNew();
        foreach (var symbol in image.Functions)
        {
            // Aliases share an address; a size 0 symbol has no extent to analyse.
            if (symbol.Size == 0 || symbol.FileOffset < 0 || symbol.FileOffset + (long)symbol.Size > file.Length || !seen.Add(symbol.Value))
                continue;
            var function = new CodeRange(LoadBias + symbol.Value, file.AsSpan((int)symbol.FileOffset, (int)symbol.Size).ToArray());
            switch (PatchSiteAnalyzer.Analyze(function, function.Address, []))
            {
                case PatchablePlan plan:
                    accepted++;
                    AssertRelocates(symbol.Name, plan, function.Address);
                    break;
                case RefusedPatch r:
                    refused[Rule(r.Reason)] = refused.GetValueOrDefault(Rule(r.Reason)) + 1;
                    break;
            }
        }
        clock.Stop();
        int total = accepted + refused.Values.Sum();
        output.WriteLine($"{total} functions, {accepted} accepted ({100.0 * accepted / total:F1}%), {clock.Elapsed.TotalMilliseconds:F0} ms");
        foreach (var (rule, count) in refused.OrderByDescending(kv => kv.Value))
            output.WriteLine($"  {count,5}  {rule}");

        Assert.True(total > 1000, $"only {total} functions in {Libc}");
        // Only the rules' own refusals: an encoder failure inside one library (all within a few MB) is a bug.
        Assert.All(refused.Keys, rule => Assert.DoesNotContain("cannot be relocated", rule, StringComparison.Ordinal));
        Assert.True(accepted > total * 3 / 4, $"only {accepted} of {total} accepted: {string.Join(", ", refused)}");
    }

    [Fact]
    public void A_site_inside_every_libc_function_gets_a_decision_and_every_plan_relocates()
    {
        // Probes at SYMBOL+OFF: one instruction boundary per function, chosen by a fixed seed.
        var image = ElfImage.Load(Libc);
        var file = File.ReadAllBytes(Libc);
        var random = new Random(5);
        int accepted = 0, total = 0;
        foreach (var symbol in image.Functions.DistinctBy(f => f.Value))
        {
            if (symbol.Size < 16 || symbol.FileOffset < 0 || symbol.FileOffset + (long)symbol.Size > file.Length)
                continue;
            var function = new CodeRange(LoadBias + symbol.Value, file.AsSpan((int)symbol.FileOffset, (int)symbol.Size).ToArray());
            var boundaries = new List<ulong>();
            var decoder = Decoder.Create(64, new ByteArrayCodeReader(function.Code), function.Address);
            while (decoder.IP < function.End && !decoder.Decode().IsInvalid)
                boundaries.Add(decoder.IP);
            if (boundaries.Count < 2)
                continue;
            ulong site = boundaries[random.Next(boundaries.Count - 1)];
            total++;
            if (PatchSiteAnalyzer.Analyze(function, site, []) is PatchablePlan plan)
            {
                accepted++;
                Assert.Equal(site, plan.Displaced[0].IP);
                AssertRelocates($"{symbol.Name}+{site - function.Address:X}", plan, site);
            }
        }
        output.WriteLine($"{total} sites inside functions, {accepted} accepted");
        Assert.True(total > 1000, $"only {total} sites");
    }

    static void AssertRelocates(string name, PatchablePlan plan, ulong site)
    {
        foreach (var at in new[] { site + PatchSiteAnalyzer.ProvenReach, site - PatchSiteAnalyzer.ProvenReach })
        {
            var code = PatchSiteAnalyzer.Relocate(plan, site, at);
            var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), at);
            var first = decoder.Decode();
            Assert.False(first.IsInvalid, $"{name}: relocated code does not decode");
        }
    }
}
