namespace Uprec.Probing.Arch;

/// <summary>Code at its address in the target: a whole function (symbol address and size), or one .cold fragment of it.</summary>
public sealed record CodeRange(ulong Address, byte[] Code)
{
    /// <summary>The first address after the code.</summary>
    public ulong End => Address + (ulong)Code.Length;
}

/// <summary>
/// Whether a probe site can take the in-process hit path (its first bytes replaced by a <c>jmp rel32</c> to a
/// trampoline): a closed set of outcomes, chosen once per site by <see cref="PatchSiteAnalyzer.Analyze"/>.
/// </summary>
public abstract record PatchDecision;

/// <summary>
/// The site can be patched: the <paramref name="DisplacedLength"/> bytes at the site hold exactly the
/// <paramref name="Displaced"/> instructions (decoded at their original addresses), which the trampoline runs
/// through <see cref="PatchSiteAnalyzer.Relocate"/>. Only the first <see cref="PatchSiteAnalyzer.JumpLength"/>
/// bytes are overwritten; the rest stay as they are.
/// </summary>
public sealed record PatchablePlan(int DisplacedLength, IReadOnlyList<Iced.Intel.Instruction> Displaced) : PatchDecision;

/// <summary>The site must use the trap path; <paramref name="Reason"/> is one short lower-case phrase for users.</summary>
public sealed record RefusedPatch(string Reason) : PatchDecision;
