namespace Uprec.EndToEnd.Tests;

/// <summary>
/// Probes on functions whose first instruction must be relocated or emulated when run out of
/// line (testdata/firstinsn.c). The program checks its own results and folds them into a
/// checksum; identical stdout traced and untraced means every relocation was right.
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed class FirstInstructionTests(TestPrograms programs) : IDisposable
{
    private readonly TempDirectory _dir = new("uprec-e2e");

    /// <summary>Every probed function in firstinsn.c with its first instruction.</summary>
    public static readonly string[] Functions =
    [
        "fi_rip_mov",        // mov eax, [rip+x]
        "fi_rip_lea",        // lea rax, [rip+x]
        "fi_jmp8",           // jmp rel8
        "fi_jmp32",          // jmp rel32
        "fi_call",           // call rel32 (callee checks its return address)
        "fi_push",           // push rdi
        "fi_syscall_getpid", // mov eax, 39; tail-jumps into fi_syscall
        "fi_syscall",        // syscall
        "fi_ret1",           // ret (1 byte, fi_after_ret1 follows immediately)
        "fi_after_ret1",
        "fi_loop",           // loop back-edge lands at offset 2
        "fi_jcc8_entry",
        "fi_jcc8",           // jz rel8
        "fi_jcc32_entry",
        "fi_jcc32",          // jnz rel32
        "fi_jrcxz",          // jrcxz rel8
        "fi_offset",
    ];

    public static TheoryData<string, Linkage> EachFunction()
    {
        var data = new TheoryData<string, Linkage>();
        foreach (Linkage linkage in Enum.GetValues<Linkage>())
        {
            foreach (string function in Functions)
            {
                data.Add(function, linkage);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(EachFunction))]
    public void One_probe_counts_every_call_and_keeps_the_output(string function, Linkage linkage)
    {
        string binary = programs.Path("firstinsn", linkage);

        Recording r = Uprec.Record(_dir, [$"{binary}:{function}"], binary);

        Assert.Equal(r.Truth.Count(function), r.Report.Count(function));
        Assert.Single(r.Report.Probes);
    }

    [Theory]
    [InlineData(Linkage.Pie)]
    [InlineData(Linkage.NoPie)]
    public void All_probes_at_once_count_exactly(Linkage linkage)
    {
        string binary = programs.Path("firstinsn", linkage);
        List<string> specs = Functions.Select(f => $"{binary}:{f}").ToList();
        // The offset comes from the program's own label arithmetic, not from this test.
        long delta = GroundTruth.Parse(Processes.Run(binary, []).Stdout).OffsetOf("fi_offset");
        specs.Add($"fi_offset_loop={binary}:fi_offset+{delta}");

        Recording r = Uprec.Record(_dir, specs, binary);

        foreach (string function in Functions)
        {
            Assert.True(r.Truth.Count(function) == r.Report.Count(function),
                $"{function}: program says {r.Truth.Count(function)}, report says {r.Report.Count(function)}");
        }
        Assert.Equal(r.Truth.Count($"fi_offset+{delta}"), r.Report.Count("fi_offset_loop"));
        Assert.Equal(Functions.Length + 1, r.Report.Probes.Count);
    }

    public void Dispose() => _dir.Dispose();
}
